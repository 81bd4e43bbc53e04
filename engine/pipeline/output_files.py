"""Raw output files (``output_XXXXXX.npz``, one per item) written on a thread of their own.

Creating a file costs far more CPU than everything else the broker does for an item, so
the broker's thread only queues each item's output rows for a :class:`WriterThread`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data.atomic import replaced_when_written
from engine.pipeline.writer_thread import WriterThread

QUEUED_ITEMS = 1024


class OutputFiles:
    def __init__(self, folder: Path, dtype: np.dtype):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        self._writer = WriterThread("engine-output-files", lambda entry: self._write(*entry), queued=QUEUED_ITEMS,
                                    errors=(OSError,))

    def put(self, seq: int, rows: list[np.ndarray]) -> None:
        """Queue item ``seq``'s rows (one per model output) for its file."""
        self._writer.put((seq, rows))

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        self._writer.close()

    def _write(self, seq: int, rows: list[np.ndarray]) -> None:
        arrays = {f"output_{k}": row.reshape(1, *row.shape).astype(self.dtype) for k, row in enumerate(rows)}
        with replaced_when_written(self.folder / f"output_{seq:06d}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
