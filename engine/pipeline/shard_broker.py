"""A broker that stays up for a stream of shards of a datalist, each handed in by another
thread and answered when its last item is through.

A cluster node (engine/cluster/node_actor.py) runs many small shards of one job. Starting
the preprocess and device processes (and opening the model) for each would cost more than
a shard's work, and running shards one after another would drain the pipeline at every
boundary; so this broker starts its processes once and runs on a thread of its own, and a
shard handed in while another is running joins the same stream of sequence numbers: its
items enter the blocks right after the last one's. The local broker's loop, books and
fault handling are unchanged: a worker process that dies mid-shard is replaced and its
items re-queued, so every shard still ends with each of its items once.

A shard's items reach its own sink (``results``/``error`` with positions in the shard);
``run_shard`` returns the shard's figures once all its items are through. No signal
handlers are installed: the owner stops the broker with ``request_stop`` or ``close``.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import zmq

from engine.pipeline.broker import SUPERVISE_EVERY_S, Broker, RunStopped
from engine.pipeline.config import RunConfig

STOP_REQUESTED = "stopped by its owner"
CLOSE_WAIT_S = 15.0


@dataclass
class ShardFigures:
    """What the broker measured since the previous shard was through (so the figures of
    all shards add up to the broker's)."""

    seconds: float
    stage_us: dict[str, float]
    stage_items: dict[str, int]
    batch_us: list[int]
    batch_sizes: dict[int, int]
    restarts: int
    peak_rss_bytes: int


@dataclass
class OpenShard:
    start: int  # the broker's sequence number of its first item
    items: list[str]
    sink: object  # results(positions, ranked, probs, outputs) and error(position, reason)
    through: int = 0  # items with a result or an error
    taken_at: float = 0.0  # when it joined the stream
    done: threading.Event = field(default_factory=threading.Event)
    figures: ShardFigures | None = None
    failure: str | None = None

    @property
    def end(self) -> int:
        return self.start + len(self.items)


class ShardRouter:
    """The broker's sink: passes each batch's rows to the shards they belong to."""

    def __init__(self, ranking: dict):
        self._ranking = ranking
        self.open: list[OpenShard] = []

    def ranking(self) -> dict:
        return self._ranking

    def results(self, seqs: list[int], ranked: np.ndarray, probs: np.ndarray, outputs: list[np.ndarray]) -> int:
        seqs_a = np.asarray(seqs)
        for shard in self.open:
            rows = np.flatnonzero((seqs_a >= shard.start) & (seqs_a < shard.end))
            if len(rows):
                shard.sink.results([int(s) - shard.start for s in seqs_a[rows]], ranked[rows], probs[rows],
                                   [o[rows] for o in outputs])
                shard.through += len(rows)
        return int(np.count_nonzero(ranked[:, 0] < 0))

    def error(self, seq: int, reason: str) -> None:
        for shard in self.open:
            if shard.start <= seq < shard.end:
                shard.sink.error(seq - shard.start, reason)
                shard.through += 1
                return


class ShardBroker(Broker):
    def __init__(self, cfg: RunConfig, ranking: dict):
        """``ranking``: what the device instances send back for every shard. ``cfg.warmup``
        should be 0: the owner keeps the job's clock."""
        self.router = ShardRouter(ranking)
        super().__init__(cfg, [""], self.router)
        self.items, self.total = [], 0
        self._incoming: queue.Queue[OpenShard] = queue.Queue()
        self._started = threading.Event()
        self._start_error: str | None = None
        self._thread = threading.Thread(target=self._serve, name="engine-shard-broker", daemon=True)
        self._last_through = 0.0
        self._seen = (Counter(), Counter(), 0, Counter())  # stage us, stage items, batches, batch sizes

    # ---- the owner's side (any thread) ---------------------------------------------
    def serve(self) -> None:
        """Start the worker processes on the broker's thread; returns once each has said hello."""
        self._thread.start()
        self._started.wait()
        if self._start_error:
            raise RunStopped(self._start_error)

    def run_shard(self, items: list[str], sink) -> ShardFigures:
        """Run ``items`` through, their results and errors into ``sink``; raises
        :class:`RunStopped` when the broker stopped first."""
        shard = OpenShard(0, items, sink)
        self._incoming.put(shard)
        shard.done.wait()
        if shard.failure:
            raise RunStopped(shard.failure)
        return shard.figures

    def request_stop(self) -> None:
        """Stop at the loop's next turn; shards not through fail with :class:`RunStopped`."""
        self.stop_reason = self.stop_reason or STOP_REQUESTED

    def close(self) -> None:
        """Stop, then wait for the broker's thread to stop the worker processes and remove the ring."""
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(CLOSE_WAIT_S)

    # ---- the broker's thread -------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._start_all()
        except RunStopped as e:
            self._start_error = str(e)
        self._started.set()
        try:
            if not self._start_error:
                self._stream()
        finally:
            for shard in self.router.open:
                shard.failure = self.stop_reason or "the broker stopped"
                shard.done.set()
            self.meter.stop(time.perf_counter())
            self.shutdown()

    def _stream(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        self.meter.start(last_check := time.perf_counter())
        self._last_through = last_check
        while not self.stop_reason:
            self._take_incoming(wait=self.finished >= self.total)
            if self.finished < self.total:
                self._dispatch_preprocess()
                self._dispatch_device()
                if poller.poll(self._poll_timeout_ms()):
                    self._drain()
                self._answer_through()
            now = time.perf_counter()
            if now - last_check >= SUPERVISE_EVERY_S:
                last_check = now
                self._supervise()

    def _take_incoming(self, wait: bool) -> None:
        """New shards join the stream: their items get the next sequence numbers."""
        try:
            shard = self._incoming.get(timeout=SUPERVISE_EVERY_S) if wait else self._incoming.get_nowait()
        except queue.Empty:
            return
        while shard is not None:
            shard.start, shard.taken_at = self.total, time.perf_counter()
            self.items.extend(shard.items)
            self.total += len(shard.items)
            self.router.open.append(shard)
            try:
                shard = self._incoming.get_nowait()
            except queue.Empty:
                shard = None

    def _answer_through(self) -> None:
        for shard in [s for s in self.router.open if s.through >= len(s.items)]:
            self.router.open.remove(shard)
            shard.figures = self._figures_since_last(shard.taken_at)
            shard.done.set()

    def _figures_since_last(self, taken_at: float) -> ShardFigures:
        meter, supervisor = self.meter, self.supervisor
        stage_us, stage_items, batches, sizes = self._seen
        now = time.perf_counter()
        figures = ShardFigures(seconds=now - max(taken_at, self._last_through),
                               stage_us=dict(meter.stages.total_us - stage_us),
                               stage_items=dict(meter.stages.items - stage_items),
                               batch_us=meter.batch_us[batches:], batch_sizes=dict(meter.batch_sizes - sizes),
                               restarts=supervisor.restarts, peak_rss_bytes=supervisor.peak_rss_bytes)
        self._seen = (Counter(meter.stages.total_us), Counter(meter.stages.items), len(meter.batch_us),
                      Counter(meter.batch_sizes))
        self._last_through = now
        return figures
