"""A writer on a thread of its own behind a bounded queue, for the sink's files.

The broker's thread must not wait on a file system, so the sink's writers (the raw output
files, the results table) queue their work and one thread does it (file and Parquet calls
release the GIL, so the two overlap). The queue is bounded: a slow disk holds the run back
instead of filling memory. The first write error stops the writing and is raised on the
broker's thread at the next :meth:`WriterThread.put` or at :meth:`WriterThread.close`,
which waits for everything queued first.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class WriterThread:
    def __init__(self, name: str, write: Callable, *, queued: int, errors: tuple[type[BaseException], ...]):
        """``write(entry)`` runs on the thread for each queued entry; ``errors`` are what it
        may raise for a bad disk or file (anything else is a bug and ends the thread loudly)."""
        self._write = write
        self._errors = errors
        self._queue: queue.Queue = queue.Queue(queued)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_all, name=name, daemon=True)
        self._thread.start()

    def put(self, entry) -> None:
        self.raise_error()
        self._queue.put(entry)

    def close(self) -> None:
        """Write everything queued, then stop the thread; raise the first write error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.raise_error()

    def fail(self, error: BaseException) -> None:
        """Record ``error`` from the owner's own final writes (raised like a thread's)."""
        self._error = self._error or error

    def raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write_all(self) -> None:
        while (entry := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(entry)
                except self._errors as exc:
                    self._error = exc
