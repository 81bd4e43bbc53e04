"""Requests counted per front end (ZeroMQ, HTTP, gRPC): what ``ping`` and the stop line report.

``requests`` counts every request a front end read (ZeroMQ pings included); ``served`` and
``errors`` how they were answered, ``busy`` those refused for the admission bound, ``inline``
the ZeroMQ requests answered on the socket thread. A lock guards the counts: each front end
runs on its own thread.
"""
from __future__ import annotations

import collections
import threading

KEYS = ("requests", "served", "errors", "busy", "inline")


class Tally:
    def __init__(self):
        self._lock = threading.Lock()
        self._fronts: dict[str, collections.Counter] = {}

    def add(self, front: str, key: str, count: int = 1) -> None:
        with self._lock:
            self._fronts.setdefault(front, collections.Counter())[key] += count

    def totals(self) -> dict[str, int]:
        with self._lock:
            return {key: sum(counts[key] for counts in self._fronts.values()) for key in KEYS}

    def by_front(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {front: {key: counts[key] for key in KEYS} for front, counts in sorted(self._fronts.items())}
