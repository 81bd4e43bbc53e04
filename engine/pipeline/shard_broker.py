"""A broker that stays up for a stream of shards of a datalist, each handed in by another
thread and answered when its last item is through.

A cluster node (engine/cluster/node_actor.py) runs many small shards of one job. Starting
the preprocess and device processes (and opening the model) for each would cost more than
a shard's work, and running shards one after another would drain the pipeline at every
boundary; so this broker starts its processes once and runs on a thread of its own, and a
shard handed in while another is running joins the same stream of sequence numbers: its
items enter the blocks right after the last one's. The local broker's loop, books and
fault handling are the local broker's own (this class drives a :class:`Broker`, turn by
turn, on its thread): a worker process that dies mid-shard is replaced and its items
re-queued, so every shard still ends with each of its items once. A shard's items are
dropped once it is through, so a broker that streams for days holds only the open ones.

``engine.Classifier`` streams its input through the same broker, a batch-sized shard at a
time.

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

from engine.pipeline.broker import SUPERVISE_EVERY_S, Broker, RunStopped
from engine.pipeline.config import RunConfig

STOP_REQUESTED = "stopped by its owner"
# The latest device batches whose timings a stream keeps (engine.Classifier's latency
# percentiles); older ones are dropped, so a broker that streams for days stays bounded.
KEEP_BATCHES = 4096
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
    items: list  # paths, or encoded in-memory items (engine/data/payloads.py)
    sink: object  # results(positions, ranked, probs, outputs) and error(position, reason)
    through: int = 0  # items with a result or an error
    taken_at: float = 0.0  # when it joined the stream
    done: threading.Event = field(default_factory=threading.Event)
    wants_figures: bool = True  # the owner reads ``figures`` (a cluster node does; a Classifier does not)
    figures: ShardFigures | None = None
    failure: str | None = None

    @property
    def end(self) -> int:
        return self.start + len(self.items)


class ShardRouter:
    """The broker's feed and sink: the open shards' items by sequence number, and each
    batch's rows passed to the shards they belong to."""

    def __init__(self, ranking: dict):
        self._ranking = ranking
        self.open: list[OpenShard] = []
        self.total = 0  # sequence numbers handed out

    def add(self, shard: OpenShard) -> None:
        shard.start = self.total
        self.total += len(shard.items)
        self.open.append(shard)

    def _shard_of(self, seq: int) -> OpenShard | None:
        for shard in self.open:
            if shard.start <= seq < shard.end:
                return shard
        return None

    def item(self, seq: int):
        shard = self._shard_of(seq)
        return shard.items[seq - shard.start]

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
        shard = self._shard_of(seq)
        if shard is not None:
            shard.sink.error(seq - shard.start, reason)
            shard.through += 1


class ShardBroker:
    def __init__(self, cfg: RunConfig, ranking: dict):
        """``ranking``: what the device instances send back for every shard. ``cfg.warmup``
        should be 0: the owner keeps the job's clock."""
        self.router = ShardRouter(ranking)
        self.broker = Broker(cfg, self.router, self.router)
        self._incoming: queue.Queue[OpenShard] = queue.Queue()
        self._started = threading.Event()
        self._start_error: str | None = None
        self._thread = threading.Thread(target=self._serve, name="engine-shard-broker", daemon=True)
        self._last_through = 0.0
        self._seen = (Counter(), Counter(), 0, Counter())  # stage us, stage items, batches, batch sizes

    @property
    def backends(self) -> list[dict]:
        return self.broker.backends

    @property
    def supervisor(self):
        return self.broker.supervisor

    @property
    def meter(self):
        return self.broker.meter

    @property
    def stop_reason(self) -> str | None:
        return self.broker.stop_reason

    # ---- the owner's side (any thread) ---------------------------------------------
    def serve(self) -> None:
        """Start the worker processes on the broker's thread; returns once each has said hello."""
        self._thread.start()
        self._started.wait()
        if self._start_error:
            raise RunStopped(self._start_error)

    def submit(self, items: list, sink, *, figures: bool = True) -> OpenShard:
        """Hand ``items`` in without waiting; the shard's ``done`` is set once all are through
        (its ``failure`` says why when the broker stopped first; its ``figures`` are the
        broker's since the last shard, when asked for)."""
        shard = OpenShard(0, items, sink, wants_figures=figures)
        if self.broker.stop_reason:
            shard.failure = self.broker.stop_reason
            shard.done.set()
        else:
            self._incoming.put(shard)
        return shard

    def run_shard(self, items: list, sink) -> ShardFigures:
        """Run ``items`` through, their results and errors into ``sink``; raises
        :class:`RunStopped` when the broker stopped first."""
        shard = self.submit(items, sink)
        shard.done.wait()
        if shard.failure:
            raise RunStopped(shard.failure)
        return shard.figures

    def request_stop(self) -> None:
        """Stop at the loop's next turn; shards not through fail with :class:`RunStopped`."""
        self.broker.stop_reason = self.broker.stop_reason or STOP_REQUESTED

    def close(self) -> None:
        """Stop, then wait for the broker's thread to stop the worker processes and remove the ring."""
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(CLOSE_WAIT_S)

    # ---- the broker's thread -------------------------------------------------------
    def _serve(self) -> None:
        broker = self.broker
        try:
            broker.start()
        except RunStopped as e:
            self._start_error = str(e)
        self._started.set()
        try:
            if not self._start_error:
                self._stream()
        finally:
            for shard in self.router.open:
                shard.failure = broker.stop_reason or "the broker stopped"
                shard.done.set()
            self._fail_incoming(broker.stop_reason or "the broker stopped")
            broker.meter.stop(time.perf_counter())
            broker.shutdown()

    def _fail_incoming(self, reason: str) -> None:
        while True:
            try:
                shard = self._incoming.get_nowait()
            except queue.Empty:
                return
            shard.failure = reason
            shard.done.set()

    def _stream(self) -> None:
        broker = self.broker
        broker.meter.start(time.perf_counter())
        self._last_through = time.perf_counter()
        while not broker.stop_reason:
            self._take_incoming(wait=broker.finished >= self.router.total)
            if broker.finished < self.router.total:
                broker.turn()
                self._answer_through()
            else:
                broker.supervise_when_due()

    def _take_incoming(self, wait: bool) -> None:
        """New shards join the stream: their items get the next sequence numbers."""
        try:
            shard = self._incoming.get(timeout=SUPERVISE_EVERY_S) if wait else self._incoming.get_nowait()
        except queue.Empty:
            return
        while shard is not None:
            shard.taken_at = time.perf_counter()
            self.router.add(shard)
            try:
                shard = self._incoming.get_nowait()
            except queue.Empty:
                shard = None

    def _answer_through(self) -> None:
        for shard in [s for s in self.router.open if s.through >= len(s.items)]:
            self.router.open.remove(shard)
            if shard.wants_figures:
                shard.figures = self._figures_since_last(shard.taken_at)
            shard.done.set()
        self._bound_meter()

    def _bound_meter(self) -> None:
        """Once twice :data:`KEEP_BATCHES` batches are kept, drop all but the latest
        :data:`KEEP_BATCHES` (a stream's clock and shard figures do not need them)."""
        meter = self.broker.meter
        drop = len(meter.batch_us) - KEEP_BATCHES
        if drop < KEEP_BATCHES:
            return
        del meter.batch_us[:drop]
        del meter.e2e_us[:max(0, len(meter.e2e_us) - KEEP_BATCHES)]
        del meter.spans[:max(0, len(meter.spans) - KEEP_BATCHES)]
        stage_us, stage_items, batches, sizes = self._seen
        self._seen = (stage_us, stage_items, max(0, batches - drop), sizes)

    def _figures_since_last(self, taken_at: float) -> ShardFigures:
        meter, supervisor = self.broker.meter, self.broker.supervisor
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
