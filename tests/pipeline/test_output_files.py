"""The output-file thread: every queued item's file written at close, a write error raised
on the caller's thread."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.pipeline.output_files import OutputFiles


def test_every_queued_file_is_written_by_close(tmp_path):
    files = OutputFiles(tmp_path / "out", np.float16)
    rows = {seq: [np.arange(10, dtype=np.float32) + seq, np.full(3, seq, np.float32)] for seq in range(200)}
    for seq, item_rows in rows.items():
        files.put(seq, item_rows)
    files.close()
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"output_{seq:06d}.npz" for seq in range(200)], "no temporary files left either"
    got = np.load(tmp_path / "out" / "output_000123.npz")
    assert got["output_0"].dtype == np.float16 and got["output_0"].shape == (1, 10)
    np.testing.assert_array_equal(got["output_0"][0], rows[123][0].astype(np.float16))
    np.testing.assert_array_equal(got["output_1"][0], [123, 123, 123])


def test_a_write_error_reaches_the_caller(tmp_path):
    files = OutputFiles(tmp_path / "out", np.float32)
    shutil.rmtree(tmp_path / "out")
    files.put(0, [np.zeros(4, np.float32)])
    with pytest.raises(OSError, match="output_000000"):
        files.close()
