"""Dynamic batching with Triton's semantics, over a pool of model instances.

Ready items wait in one FIFO shared by every instance. A batch is due as soon as
``max_batch`` items are waiting, or when the oldest waiting item has waited
``max_delay`` seconds, whichever comes first; with a delay of 0 it is due at once with
whatever is waiting. A due batch goes to an idle instance.

Two kinds of thread run batches: one thread per instance (:meth:`next_batch`), which
also waits out the delays, and the thread that queues an item (:meth:`put`): when its
item makes a batch due and an instance is idle, it gets the batch back and runs it
itself, which saves a thread hand-off on the latency path. Whoever runs a batch hands
its instance back with :meth:`release`.

The queue itself is unbounded: the server bounds it by admitting at most a fixed
number of requests in flight.
"""
from __future__ import annotations

import collections
import threading
import time


class DynamicBatcher:
    def __init__(self, max_batch: int, max_delay_s: float, instances: list):
        if max_batch < 1:
            raise ValueError(f"max batch {max_batch}: must be >= 1")
        if max_delay_s < 0:
            raise ValueError(f"max queue delay {max_delay_s}: must be >= 0")
        if not instances:
            raise ValueError("a batcher needs at least one instance")
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._idle = list(instances)
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._draining = False

    def _due(self) -> float:
        """Seconds until the waiting items form a due batch (<= 0: due now; inf: empty)."""
        if not self._items:
            return float("inf")
        if len(self._items) >= self.max_batch or self._draining or self._closed:
            return 0.0
        return self._items[0][0] + self.max_delay_s - time.perf_counter()

    def _take(self) -> tuple[list, object]:
        count = min(self.max_batch, len(self._items))
        batch = [self._items.popleft()[1] for _ in range(count)]
        instance = self._idle.pop()
        if self._items:
            self._cond.notify_all()
        return batch, instance

    def put(self, item, ready_time: float | None = None) -> tuple[list, object] | None:
        """Queue an item; ``ready_time`` (``time.perf_counter()``) starts its delay clock.

        Returns ``(batch, instance)`` when the caller should run a batch now (and then
        :meth:`release` the instance), else None.
        """
        entry = (time.perf_counter() if ready_time is None else ready_time, item)
        with self._cond:
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._items.append(entry)
            if self._idle and self._due() <= 0:
                return self._take()
            if len(self._items) == 1 or len(self._items) >= self.max_batch:
                self._cond.notify_all()
            return None

    def next_batch(self) -> tuple[list, object] | None:
        """Block until a batch is due and an instance idle; return both (oldest items first).

        Returns None once the batcher is closed and drained.
        """
        with self._cond:
            while True:
                if self._closed and not self._items:
                    return None
                wait = self._due()
                if wait <= 0 and self._idle:
                    return self._take()
                self._cond.wait(None if wait == float("inf") or wait <= 0 else wait)

    def try_claim(self):
        """An idle instance for a caller that runs one item itself, or None.

        Only when nothing is queued, so a claim never overtakes waiting items.
        """
        with self._cond:
            if self._idle and not self._items and not self._closed:
                return self._idle.pop()
            return None

    def release(self, instance) -> None:
        """Hand back an instance after running a batch on it."""
        with self._cond:
            self._idle.append(instance)
            self._cond.notify_all()

    def depth(self) -> int:
        return len(self._items)

    def drain(self) -> None:
        """Stop waiting for batches to fill: from now on queued items go out at once."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop accepting items; instance threads flush what is queued, then get None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
