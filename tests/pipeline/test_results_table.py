"""engine.pipeline.results_table with real pyarrow files: row groups of bounded size written
as batches arrive, part files and a manifest in a folder, null top-k for failed items,
what a cut-short run leaves (issue 29)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from engine.data.labels import LabelSource
from engine.pipeline import results_table
from engine.pipeline.results_table import COLUMNS, ResultsTable, TableSpec, write_part

CLASSES = 50


def _batch(rng, seqs):
    logits = rng.standard_normal((len(seqs), CLASSES)).astype(np.float32)
    ranked = np.argsort(-logits, axis=1)[:, :5]
    probs = np.sort(rng.random((len(seqs), 5)).astype(np.float32), axis=1)[:, ::-1]
    return np.asarray(seqs), ranked, probs, logits


def _spec(logits=None):
    return TableSpec(5, [f"class {c}" for c in range(CLASSES)], LabelSource(from_folders=True), logits)


def test_a_folder_table_in_parts_with_a_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr(results_table, "PART_ROWS", 700)
    monkeypatch.setattr(results_table, "ROW_GROUP_MAX_ROWS", 300)
    items = [f"/data/n01443537/img_{i}.jpg" for i in range(2000)]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "part-000009.parquet").write_text("a table of an earlier run")
    table = ResultsTable(str(tmp_path / "out"), _spec("float16"), items)
    rng = np.random.default_rng(0)
    sent = {}
    for start in range(0, 2000, 64):
        seqs = [s for s in range(start, min(start + 64, 2000)) if s != 77]
        batch = _batch(rng, seqs)
        sent.update(zip(seqs, batch[3], strict=True))
        table.put(*batch)
    table.put_error(77, "corrupt JPEG data")
    table.close()
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest == {"complete": True, "rows": 2000, "items": 2000,
                        "parts": ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_manifest.json", *manifest["parts"]]
    first = pq.ParquetFile(tmp_path / "out" / "part-000000.parquet")
    assert first.metadata.num_row_groups >= 2 and max(first.metadata.row_group(g).num_rows
                                                      for g in range(first.metadata.num_row_groups)) <= 300 + 64
    frame = pd.read_parquet(tmp_path / "out").sort_values("index").reset_index(drop=True)
    assert list(frame.columns) == [*COLUMNS, "logits"] and frame["index"].tolist() == list(range(2000))
    assert (frame["label"] == 1).all()
    failed = frame.loc[77]
    assert failed["error"] == "corrupt JPEG data" and failed["topk_index"] is None and failed["logits"] is None
    np.testing.assert_array_equal(frame.loc[5, "logits"], sent[5].astype(np.float16))
    assert list(frame.loc[5, "topk_name"]) == [f"class {c}" for c in frame.loc[5, "topk_index"]]


def test_a_cut_short_run_leaves_a_whole_file_saying_it_is_incomplete(tmp_path, capsys):
    items = [f"/x/{i}.png" for i in range(100)]
    table = ResultsTable(str(tmp_path / "r.parquet"), _spec(), items)
    table.put(*_batch(np.random.default_rng(1), list(range(40)))[:3], None)
    table.close()
    assert "40 of 100 items (the run did not finish; the table is readable" in capsys.readouterr().err
    assert pq.read_metadata(tmp_path / "r.parquet").metadata[b"engine.complete"] == b"false"
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 40
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]


def test_a_part_written_again_replaces_the_first_whole(tmp_path):
    spec = _spec("float32")
    items = [f"/x/{i}.png" for i in range(10)]
    for attempt in range(2):
        seqs, ranked, probs, logits = _batch(np.random.default_rng(attempt), list(range(10)))
        batches = [spec.rows(items[5:], seqs[5:], ranked[5:], probs[5:], logits[5:]),
                   spec.rows(items[:5], seqs[:5], ranked[:5], probs[:5], logits[:5])]
        assert write_part(tmp_path / "part-000003.parquet", spec, batches) == 10
    table = pq.read_table(tmp_path)
    assert table.column("index").to_pylist() == list(range(10))  # one part, sorted
    np.testing.assert_array_equal(np.stack(table.column("logits").to_numpy(zero_copy_only=False)), logits)
