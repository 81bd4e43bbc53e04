"""The driver of a cluster run: one actor per node, shards out, results into the job's sink.

Ray orchestrates and the nodes do the work: each node's actor (engine/cluster/node_actor.py)
keeps the local pipeline up across shards, so pixels stay in that node's shared memory and
only ranked classes (and the raw outputs when they are written) come back. The driver
keeps the exact books: a shard counts once, when its result is taken; a shard held by an
actor that died (killed, or its node removed) goes out again to another, so every item
ends exactly once. The driver's sink writes what a local run writes, and its meter keeps
the live accuracy and throughput the progress bar shows.

It reads like the local broker to engine.run and the report (``finished``, ``throughput``,
``meter``, ``supervisor``, ``stop_reason``, ``exit_signal``, ...).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from engine.cluster.model_package import ModelPackage
from engine.cluster.node_actor import CONTROL, NodeRunner
from engine.cluster.node_books import NodeBooks
from engine.cluster.shard_result import ShardResult
from engine.cluster.shards import Shard, cut
from engine.pipeline.config import RunConfig, fit_warmup
from engine.pipeline.interrupts import stop_on_signals
from engine.pipeline.meter import Meter, MeterReadings
from engine.pipeline.sink import Sink
from engine.pipeline.slots import PREFIX, SHM_DIR, sweep_stale_segments

if TYPE_CHECKING:  # pyarrow, which it imports, is needed only by a job with --results
    from engine.cluster.node_table import NodeTable

SHARDS_IN_FLIGHT = 2  # per actor: one running, one queued, so a node never waits on the driver
MAX_SHARD_TRIES = 3  # a shard whose actor died this many times fails its items
WAIT_S = 0.2
CLOSE_TIMEOUT_S = 15.0
SWEEP_TIMEOUT_S = 10.0
SWEEP_ROUNDS = 6


NODE_ACTOR = ray.remote(max_concurrency=SHARDS_IN_FLIGHT, concurrency_groups={CONTROL: 2})(NodeRunner)


@dataclass
class ClusterBooks:
    """What the report reads where a local run has its supervisor."""

    restarts: int = 0  # actors replaced plus pipeline workers replaced inside them
    peak_rss_bytes: int = 0  # the largest node's (each node is its own host)


@ray.remote(num_cpus=0)
def _sweep_segments() -> list[str]:
    """Remove the /dev/shm segments of processes gone from this node, giving actors just
    killed a moment to exit."""
    removed = sweep_stale_segments()
    for _ in range(SWEEP_ROUNDS):
        if not any(SHM_DIR.glob(f"{PREFIX}-*")):
            break
        time.sleep(0.5)
        removed += sweep_stale_segments()
    return removed


class ClusterRun(MeterReadings):
    def __init__(self, cfg: RunConfig, items: list[str], sink: Sink, *, shard_size: int, threads_given: bool,
                 progress=None, table: NodeTable | None = None):
        """``table``: the nodes write the results table (engine/cluster/node_table.py)."""
        self.cfg, self.items, self.sink, self.progress = cfg, items, sink, progress
        self.table = table
        self.part_book = None
        self.shard_size, self.threads_given = shard_size, threads_given
        self.total = len(items)
        self.queue: deque[Shard] = deque()  # cut once the actors are known
        self.shard_count = 0
        warmup, self.warmup_notice = fit_warmup(cfg.warmup, self.total)
        if self.warmup_notice:
            print(f"engine: notice: {self.warmup_notice}", file=sys.stderr, flush=True)
        self.meter = Meter(warmup)
        self.supervisor = ClusterBooks()
        self.nodes: list[NodeBooks] = []
        self.backends: list[dict] = []
        self.stop_reason: str | None = None
        self.exit_signal: int | None = None
        self.last_error: str | None = None
        self.package_ref = None

    def device_last_done(self) -> list[float]:
        return [n.last_done for n in self.nodes if n.last_done]

    def cluster_figures(self) -> dict:
        """The report's ``cluster`` and ``nodes`` entries."""
        shards = sum(n.shards for n in self.nodes)
        return {"cluster": {"shard_size": self.shard_size, "shards": self.shard_count,
                            "shards_done": shards, "actors_started": len(self.nodes),
                            "actors_lost": sum(1 for n in self.nodes if n.lost),
                            "bytes_returned": sum(n.bytes_returned for n in self.nodes),
                            "overhead_ms_per_shard": 1000 * sum(n.overhead_s for n in self.nodes) / max(1, shards)},
                "nodes": [n.figures() for n in self.nodes]}

    # ---- actors --------------------------------------------------------------------
    def _node_config(self, cpus: int) -> RunConfig:
        threads = self.cfg.threads if self.threads_given else max(1, cpus // self.cfg.instances)
        return dataclasses.replace(self.cfg, threads=threads)

    def _start_actor(self, node: str, cpus: int, gpus: int, generation: int = 0) -> None:
        actor = NODE_ACTOR.options(
            num_cpus=cpus, num_gpus=gpus, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(self._node_config(cpus), self.package_ref, self._ranking(), self.table)
        self.nodes.append(NodeBooks(node, cpus, gpus, actor, actor.ready.remote(), generation))

    def _ranking(self) -> dict:
        """What the device instances send back: the sink's ask, plus the logits a node's table holds."""
        ranking = dict(self.sink.ranking())
        if self.table is not None and self.table.spec.logits:
            ranking["outputs"] = True
        return ranking

    def _alive_nodes(self) -> dict[str, dict]:
        """Alive nodes that can run the job: a CPU at least, and a GPU for a CUDA job."""
        gpu = self.cfg.device.startswith("cuda")
        return {n["NodeID"]: n["Resources"] for n in ray.nodes()
                if n["Alive"] and n["Resources"].get("CPU", 0) >= 1 and (not gpu or n["Resources"].get("GPU", 0) >= 1)}

    def start_actors(self) -> None:
        self.package_ref = ray.put(ModelPackage.read(self.cfg.model_path))
        gpu = self.cfg.device.startswith("cuda")
        for node, res in self._alive_nodes().items():
            self._start_actor(node, int(res["CPU"]), int(res.get("GPU", 0)) if gpu else 0)
        if not self.nodes:
            raise RuntimeError("the cluster has no alive node with a CPU" + (" and a GPU" if gpu else ""))

    def _lose(self, books: NodeBooks, error: BaseException) -> None:
        """Give the actor up: its shards go out again; a fresh actor on its node if the node is still alive."""
        books.lost = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        self.last_error = books.lost
        ray.kill(books.actor, no_restart=True)
        requeued = list(books.inflight.values())
        books.inflight.clear()
        for shard in requeued:
            shard.tries += 1
            if shard.tries >= MAX_SHARD_TRIES:
                self._fail_shard(shard, f"the actors holding it died {shard.tries} times (last: {books.lost})")
            else:
                self.queue.appendleft(shard)
        self.supervisor.restarts += 1
        alive = self._alive_nodes()
        again = books.node in alive and books.generation + 1 < MAX_SHARD_TRIES and not self.stop_reason
        print(f"engine: node {books.node[:12]} lost its actor ({books.lost}); re-queued {len(requeued)} shard(s)"
              + ("; starting a fresh actor there" if again else ""), file=sys.stderr, flush=True)
        if again:
            res = alive[books.node]
            self._start_actor(books.node, books.cpus, books.gpus if res.get("GPU", 0) else 0, books.generation + 1)

    # ---- results -------------------------------------------------------------------
    def _fail_shard(self, shard: Shard, reason: str) -> None:
        now = time.perf_counter()
        for seq in shard.seqs(range(len(shard.items))):
            self.sink.error(seq, reason)
        if self.part_book is not None:
            self.part_book.fail_shard(shard.index, shard.items, shard.start, reason)
        self.meter.span(now, now, len(shard.items))
        self.meter.finish(len(shard.items), len(shard.items), at=now)

    def _take(self, books: NodeBooks, shard: Shard, result: ShardResult) -> None:
        now = time.perf_counter()
        if result.tally is None:
            failed = self.sink.results(shard.seqs(result.positions), result.ranked, result.probs, result.outputs)
            n = len(result.positions) + len(result.errors)
        else:
            self.sink.add_tally(result.tally.done, result.tally.labelled, result.tally.top1, result.tally.top5)
            failed, n = 0, result.tally.done + result.tally.failed
        for position, reason in result.errors:
            self.sink.error(shard.start + position, reason)
        failed += len(result.errors)
        if self.part_book is not None:
            self.part_book.took(shard.index, result.part)
        started = max(shard.sent_at, books.last_done)
        books.took(result, n, failed, now - started)
        books.last_done = now
        self.meter.span(started, now, n)
        self.meter.finish(n, failed, at=now)
        if self.meter.measuring:
            figures = result.figures
            for stage, total_us in figures.stage_us.items():
                self.meter.stages.add(stage, total_us, figures.stage_items[stage])
            self.meter.batch_us.extend(figures.batch_us)
            self.meter.batch_sizes.update(figures.batch_sizes)
            self.meter.latencies(now, [shard.sent_at] * n)
        self.supervisor.restarts = sum(1 for b in self.nodes if b.lost) + sum(b.restarts for b in self.nodes)
        self.supervisor.peak_rss_bytes = max(self.supervisor.peak_rss_bytes, books.peak_rss_bytes)

    def _answered(self, ref) -> None:
        for books in self.nodes:
            if books.ready_ref is not None and ref == books.ready_ref:
                try:
                    books.info = ray.get(ref)
                    books.ready_ref = None
                    self.backends.extend(books.info["backends"])
                except ray.exceptions.RayError as e:
                    self._lose(books, e)
                return
            shard = books.inflight.pop(ref, None)
            if shard is not None:
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:
                    books.inflight[ref] = shard
                    self._lose(books, e)
                    return
                self._take(books, shard, result)
                return

    # ---- the run -------------------------------------------------------------------
    def _dispatch(self) -> None:
        for books in sorted((b for b in self.nodes if b.ready), key=lambda b: len(b.inflight)):
            while self.queue and len(books.inflight) < SHARDS_IN_FLIGHT:
                shard = self.queue.popleft()
                shard.sent_at = time.perf_counter()
                books.inflight[books.actor.run_shard.remote(shard.index, shard.items, shard.start)] = shard

    def _waiting(self) -> list:
        refs = []
        for books in self.nodes:
            if books.lost is None:
                refs.extend([books.ready_ref] if books.ready_ref is not None else books.inflight)
        return refs

    def run(self) -> None:
        with stop_on_signals(self):
            try:
                if self.table is not None:
                    from engine.cluster.node_table import PartBook

                    self.table.prepare()
                    self.part_book = PartBook(self.table, self.total)
                self.start_actors()
                self.queue.extend(cut(self.items, self.shard_size, smallest=self.cfg.batch, nodes=len(self.nodes)))
                self.shard_count = len(self.queue)
                self._loop()
            finally:
                self.meter.stop(time.perf_counter())
                self.shutdown()
                if self.part_book is not None:
                    self.part_book.close()

    def _loop(self) -> None:
        self.meter.start(last_progress := time.perf_counter())
        while self.finished < self.total and not self.stop_reason:
            self._dispatch()
            refs = self._waiting()
            if not refs:
                self.stop_reason = f"no node is left to run the job (last: {self.last_error})"
                break
            done, _ = ray.wait(refs, num_returns=1, timeout=WAIT_S)
            if done:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in done:
                self._answered(ref)
            if self.progress and time.perf_counter() - last_progress >= WAIT_S:
                last_progress = time.perf_counter()
                self.progress(self)
        self.meter.stop(time.perf_counter())
        if self.progress:
            self.progress(self)

    def shutdown(self) -> None:
        """Stop every actor's pipeline (its worker processes and its ring), then the actors;
        then sweep /dev/shm on every node for rings of actors that could not close."""
        live = [b for b in self.nodes if b.lost is None]
        for books in live:
            books.actor.stop.remote()
        closing = [b.actor.close.remote() for b in live if b.ready_ref is None]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for books in live:
            ray.kill(books.actor, no_restart=True)
        sweeps = [_sweep_segments.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                  .remote() for node in self._alive_nodes()]
        if sweeps:
            ray.wait(sweeps, num_returns=len(sweeps), timeout=SWEEP_TIMEOUT_S)
