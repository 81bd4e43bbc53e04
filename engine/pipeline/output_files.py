"""Raw output files (``output_XXXXXX.npz``, one per item) written on a thread of their own.

Creating a file costs far more CPU than everything else the broker does for an item, so
the broker's thread only queues each item's output rows; this thread writes them (the
file system calls release the GIL, so the two overlap). The queue is bounded, so a slow
disk holds the run back instead of filling memory. A write error is raised on the
broker's thread at the next ``put`` or at ``close``, which waits for every queued file.
"""
from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import numpy as np

QUEUED_ITEMS = 1024


class OutputFiles:
    def __init__(self, folder: Path, dtype: np.dtype):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        self._queue: queue.Queue = queue.Queue(QUEUED_ITEMS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_all, name="engine-output-files", daemon=True)
        self._thread.start()

    def put(self, seq: int, rows: list[np.ndarray]) -> None:
        """Queue item ``seq``'s rows (one per model output) for its file."""
        self._raise_error()
        self._queue.put((seq, rows))

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write_all(self) -> None:
        while (entry := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(*entry)
                except OSError as exc:
                    self._error = exc

    def _write(self, seq: int, rows: list[np.ndarray]) -> None:
        arrays = {f"output_{k}": row.reshape(1, *row.shape).astype(self.dtype) for k, row in enumerate(rows)}
        final = self.folder / f"output_{seq:06d}.npz"
        tmp = final.with_name(f".{final.name}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, final)
