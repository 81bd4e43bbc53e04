"""One writer per output folder: a lock file that a second run finds taken.

Two runs writing ``output_000000.npz ...`` into one folder at once would interleave
their files with no error anywhere. The first run holds an exclusive ``flock`` on
``<folder>/.engine.lock`` for as long as it lives (the kernel drops it when the process
ends, however it ends, so a killed run never leaves a stale lock); a second run is
refused up front with the holder's pid.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from engine.data.arg_checks import UsageError

LOCK_NAME = ".engine.lock"


class FolderLock:
    """An exclusive lock on ``folder`` held until :meth:`release` or the process ends."""

    def __init__(self, flag: str, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise UsageError(f"{flag} {folder}: another run (pid {holder}) is writing into this folder; "
                             "wait for it or choose another folder") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
