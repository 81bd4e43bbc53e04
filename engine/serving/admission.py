"""Which requests the server takes on: at most so many requests and payload bytes in flight.

Every admitted request holds a sequence number until its one reply is delivered; a
request past either bound is refused at once ("busy"), so the queues stay bounded. A
lock guards the counts, as several front ends (each on its own thread) admit and retire.
"""
from __future__ import annotations

import threading

from engine.serving.jobs import Limits


class Busy(Exception):
    """The server holds as much as its limits allow; the message says how much."""


class Admission:
    def __init__(self, limits: Limits):
        self.limits = limits
        self._lock = threading.Lock()
        self._seq = 0
        self._inflight: dict[int, int] = {}  # seq -> payload bytes
        self._inflight_bytes = 0

    def admit(self, size: int) -> int:
        """Count a request of ``size`` payload bytes in flight and return its sequence number, or raise Busy."""
        limits = self.limits
        with self._lock:
            if len(self._inflight) >= limits.max_inflight or (
                self._inflight and self._inflight_bytes + size > limits.max_inflight_bytes
            ):
                raise Busy(
                    f"busy: {len(self._inflight)} requests ({self._inflight_bytes} bytes) in flight, "
                    f"limits {limits.max_inflight} requests / {limits.max_inflight_bytes} bytes; retry later"
                )
            self._seq += 1
            self._inflight[self._seq] = size
            self._inflight_bytes += size
            return self._seq

    def retire(self, seq: int) -> None:
        """The request's reply went out: it no longer counts."""
        with self._lock:
            self._inflight_bytes -= self._inflight.pop(seq)

    def in_flight(self) -> int:
        return len(self._inflight)
