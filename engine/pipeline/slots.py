"""A ring of fixed-size tensor slots in shared memory.

The broker creates one file under /dev/shm holding ``count`` slots of ``shape`` and
``dtype``; workers map it by name. Preprocess workers write a slot, device workers read
it, and the broker hands a slot out again only after the sink has consumed its result,
so memory stays bounded by the slot count whatever the datalist length.

A plain file mapped with numpy (not multiprocessing.shared_memory) keeps Python's
resource tracker out of the way: the broker alone owns the file and removes it when the
run ends; segments left by a run that was killed outright are swept at the next start.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import numpy as np

SHM_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
PREFIX = "vggengine"
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_NAME_RE = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_segments() -> list[str]:
    """Remove segments whose creating process no longer exists; returns their names."""
    removed = []
    for path in SHM_DIR.glob(f"{PREFIX}-*"):
        m = _NAME_RE.match(path.name)
        if m and not _pid_alive(int(m.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


class SlotRing:
    """``count`` slots of ``shape``/``dtype`` in one shared file; ``ring[i]`` is slot i."""

    def __init__(self, path: Path, count: int, shape, dtype, owner: bool):
        self.path = Path(path)
        self.count = count
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.owner = owner
        self.array = np.memmap(self.path, dtype=self.dtype, mode="r+", shape=(count, *self.shape))

    @classmethod
    def create(cls, count: int, shape, dtype) -> SlotRing:
        path = SHM_DIR / f"{PREFIX}-{os.getpid()}-{secrets.token_hex(4)}"
        nbytes = count * int(np.prod(shape)) * np.dtype(dtype).itemsize
        with open(path, "xb") as f:
            f.truncate(nbytes)
            os.posix_fallocate(f.fileno(), 0, nbytes)  # the pages exist before any slot is written
        return cls(path, count, shape, dtype, owner=True)

    @classmethod
    def attach(cls, spec: dict) -> SlotRing:
        """Map the ring of ``spec`` and touch every page of it, so the first batches pay no
        page faults (each costs microseconds in a VM, a whole slot's worth nearly a kernel run)."""
        ring = cls(Path(spec["path"]), spec["count"], spec["shape"], spec["dtype"], owner=False)
        np.asarray(ring.array).reshape(-1).view(np.uint8)[::PAGE_BYTES].max()
        return ring

    def spec(self) -> dict:
        return {"path": str(self.path), "count": self.count, "shape": list(self.shape), "dtype": self.dtype.str}

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def __getitem__(self, index: int) -> np.ndarray:
        return self.array[index]

    def close(self) -> None:
        """Unmap; the owner also removes the file."""
        mm = getattr(self.array, "_mmap", None)
        self.array = None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # a view is still alive somewhere; the mapping goes with the process
        if self.owner:
            self.path.unlink(missing_ok=True)
