"""What every worker process does at start: stay out of the way of the broker's signals
and die with the broker, so no process outlives a run."""
from __future__ import annotations

import ctypes
import os
import signal
import threading

import zmq

from engine.pipeline import wire

PR_SET_PDEATHSIG = 1
POLL_MS = 500


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


def next_task(sock: zmq.Socket, broker_pid: int, stop: threading.Event | None = None):
    """The broker's next message for this worker; None once told to stop or the broker is gone."""
    while stop is None or not stop.is_set():
        if sock.poll(POLL_MS):
            message, _ = wire.recv(sock)
            return None if isinstance(message, wire.Stop) else message
        if not broker_alive(broker_pid):
            return None
    return None
