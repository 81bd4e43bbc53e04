"""Ctrl-C and SIGTERM during a run: recorded on the run (its ``exit_signal`` and
``stop_reason``), so its loop stops at the next turn and what was done is flushed; the
previous handlers come back when the run is through."""
from __future__ import annotations

import signal
from contextlib import contextmanager


@contextmanager
def stop_on_signals(run):
    def on_signal(signum, _frame) -> None:
        run.exit_signal = signum
        run.stop_reason = f"interrupted by {signal.Signals(signum).name}"

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
