"""Dynamic batching with Triton's semantics.

Ready items wait in one FIFO shared by every model instance. An idle instance takes a
batch as soon as ``max_batch`` items are waiting, or when the oldest waiting item has
waited ``max_delay`` seconds, whichever comes first; with a delay of 0 it takes whatever
is waiting at once. The queue itself is unbounded: the server bounds it by admitting at
most a fixed number of requests in flight.
"""
from __future__ import annotations

import collections
import threading
import time


class DynamicBatcher:
    def __init__(self, max_batch: int, max_delay_s: float):
        if max_batch < 1:
            raise ValueError(f"max batch {max_batch}: must be >= 1")
        if max_delay_s < 0:
            raise ValueError(f"max queue delay {max_delay_s}: must be >= 0")
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._draining = False

    def put(self, item, ready_time: float | None = None) -> None:
        """Queue an item; ``ready_time`` (``time.perf_counter()``) starts its delay clock."""
        entry = (time.perf_counter() if ready_time is None else ready_time, item)
        with self._cond:
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._items.append(entry)
            if len(self._items) == 1 or len(self._items) >= self.max_batch:
                self._cond.notify_all()

    def next_batch(self) -> list:
        """Block until a batch is due and return its items, oldest first.

        Returns an empty list once the batcher is closed and drained.
        """
        with self._cond:
            while True:
                if not self._items:
                    if self._closed:
                        return []
                    self._cond.wait()
                    continue
                remaining = self._items[0][0] + self.max_delay_s - time.perf_counter()
                if len(self._items) >= self.max_batch or remaining <= 0 or self._closed or self._draining:
                    break
                self._cond.wait(remaining)
            count = min(self.max_batch, len(self._items))
            batch = [self._items.popleft()[1] for _ in range(count)]
            if self._items:
                self._cond.notify_all()
            return batch

    def depth(self) -> int:
        return len(self._items)

    def drain(self) -> None:
        """Stop waiting for batches to fill: from now on queued items go out at once."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop accepting items; waiting instances flush what is queued, then get []."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
