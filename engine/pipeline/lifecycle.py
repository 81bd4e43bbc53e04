"""What every worker process does at start: stay out of the way of the broker's signals
and die with the broker, so no process outlives a run."""
from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def become_worker() -> int:
    """Ignore Ctrl-C (the broker coordinates shutdown), ask the kernel to SIGKILL this
    process if the broker dies, and return the broker's pid for a liveness check."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the parent-pid poll in the worker loops covers it
    return os.getppid()


def broker_alive(broker_pid: int) -> bool:
    return os.getppid() == broker_pid
