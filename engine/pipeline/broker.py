"""The broker: source, scheduler and home of the sink.

It binds one ROUTER socket; every worker (a preprocess process, or one instance thread of
a device process) connects a DEALER with its own identity. The broker decides what each
worker does next (the ZeroMQ guide's load-balancing broker), which is what lets it keep
exact books: it knows which items every worker holds, so when a worker process dies its
items are re-queued to a fresh one and nothing is lost or produced twice.

Work goes out in groups, so the broker's cost is per message, not per item: the slot ring
is cut into blocks of one batch of consecutive slots (engine/pipeline/blocks.py); items
enter the block being filled in datalist order, a preprocess worker gets several of its
positions in one task, and a full block goes to a device instance as one message naming
its first slot, which the instance runs in place. The device instance ranks its logits
too, so a result comes back as one batch of top-k classes.

Credit-based backpressure: items enter preprocessing only while a block is free, and a
block comes back only when the sink has its results, so memory is bounded by the slot
count whatever the datalist length.

Everything here runs on the broker's one thread; the worker processes are the
supervisor's (engine/pipeline/supervisor.py), the clock is the meter's (meter.py).
"""
from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path

import zmq

from engine.models.preprocessing import Preprocessing, announce
from engine.pipeline import wire
from engine.pipeline.blocks import Block, Task
from engine.pipeline.config import RunConfig, fit_warmup
from engine.pipeline.interrupts import stop_on_signals
from engine.pipeline.meter import Meter, MeterReadings
from engine.pipeline.sink import Sink
from engine.pipeline.slots import SlotRing, sweep_stale_segments
from engine.pipeline.supervisor import Proc, Supervisor, Worker

SUPERVISE_EVERY_S = 0.2
DEVICE_QUEUE_DEPTH = 2  # batches queued per device instance, so it never waits on the broker
MAX_ITEM_DEATHS = 2  # an item in flight at this many worker deaths is failed, not retried


class RunStopped(RuntimeError):
    """The run cannot go on (a stage failed to start, too many worker deaths)."""


class ListFeed:
    """A run's items: a list, passed over ``iterations`` times (sequence number ``seq`` is
    item ``seq % len(items)``)."""

    def __init__(self, items: list, iterations: int = 1):
        self.items = items
        self.total = len(items) * iterations

    def item(self, seq: int):
        return self.items[seq % len(self.items)]


class Broker(MeterReadings):
    def __init__(self, cfg: RunConfig, feed, sink: Sink, progress=None):
        """``feed``: the items by sequence number (``total`` and ``item(seq)``; a
        :class:`ListFeed`, or a stream that grows while the broker runs)."""
        self.cfg = cfg
        self.feed = feed
        self.sink = sink
        self.progress = progress
        preprocessing = Preprocessing(cfg.data_config, Path(cfg.model_path).name)
        preprocessing.check_output_dtype(cfg.slot_dtype)
        announce(preprocessing.notice)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint, self._ipc_path = self._bind()
        sweep_stale_segments()
        self.ring = SlotRing.create(cfg.slots, tuple(cfg.data_config.input_size), cfg.slot_dtype)
        self.supervisor = Supervisor(cfg, self.endpoint, self.ring.spec(), sink.ranking())
        warmup, self.warmup_notice = fit_warmup(cfg.warmup, self.total)
        if self.warmup_notice:
            print(f"engine: notice: {self.warmup_notice}", file=sys.stderr, flush=True)
        self.meter = Meter(warmup)
        self.free_blocks = deque(Block(i, i * cfg.batch) for i in range(cfg.slots // cfg.batch))
        self.filling: Block | None = None  # the block new items enter
        self.next_seq = 0
        self.requeued: deque[Task] = deque()  # back from a dead preprocess worker
        self.ready: deque[Block] = deque()  # preprocessed and closed, waiting for a device instance
        self.deaths_seen: Counter = Counter()  # seq -> worker deaths it was in flight at
        self.task_ids = iter(range(1 << 62))
        self.stop_reason: str | None = None
        self.exit_signal: int | None = None
        self.backends: list[dict] = []
        self._last_supervised = 0.0

    @property
    def total(self) -> int:
        """Items entered so far (a stream's feed grows)."""
        return self.feed.total

    def device_last_done(self) -> list[float]:
        return self.supervisor.device_last_done()

    # ---- sockets -------------------------------------------------------------------
    def _bind(self) -> tuple[str, str | None]:
        if self.cfg.transport == "tcp":
            if self.cfg.tcp_port:
                endpoint = f"tcp://{self.cfg.tcp_host}:{self.cfg.tcp_port}"
                self.sock.bind(endpoint)
            else:
                port = self.sock.bind_to_random_port(f"tcp://{self.cfg.tcp_host}")
                endpoint = f"tcp://{self.cfg.tcp_host}:{port}"
            return endpoint, None
        path = Path(tempfile.gettempdir()) / f"vggengine-{os.getpid()}-{secrets.token_hex(4)}.sock"
        endpoint = f"ipc://{path}"
        self.sock.bind(endpoint)
        return endpoint, str(path)

    def start(self) -> None:
        """Start every worker process and wait until each has said hello."""
        self.supervisor.start_all()
        deadline = time.monotonic() + self.cfg.worker_start_timeout_s
        while not self.supervisor.all_ready():
            if self.stop_reason:
                raise RunStopped(self.stop_reason)
            if time.monotonic() > deadline:
                raise RunStopped(f"workers did not start within {self.cfg.worker_start_timeout_s:.0f} s")
            if self.sock.poll(100):
                self._handle(*wire.recv(self.sock, with_identity=True))
            failed = self.supervisor.exited_while_starting()
            if failed:
                raise RunStopped(failed)

    # ---- blocks --------------------------------------------------------------------
    def _close(self, block: Block) -> None:
        """No more items enter ``block``; it is ready once nothing of it is in preprocessing."""
        block.closed = True
        if block is self.filling:
            self.filling = None
        self._maybe_ready(block)

    def _maybe_ready(self, block: Block) -> None:
        if block.closed and not block.pending:
            if block.valid:
                self.ready.append(block)
            else:
                self._free(block)

    def _free(self, block: Block) -> None:
        block.reset()
        self.free_blocks.append(block)

    # ---- scheduling ------------------------------------------------------------
    def _new_task(self) -> Task | None:
        """The next preprocess task: a re-queued one, else the next items into the filling
        block (None when no block is free)."""
        if self.requeued:
            return self.requeued.popleft()
        block = self.filling
        if block is None:
            if not self.free_blocks:
                return None
            block = self.filling = self.free_blocks.popleft()
        count = min(self.cfg.chunk, self.cfg.batch - len(block), self.total - self.next_seq)
        task = Task(block, block.add(self.next_seq, count, time.perf_counter()))
        self.next_seq += count
        block.pending += 1
        if len(block) == self.cfg.batch or self.next_seq == self.total:
            self._close(block)
        return task

    def _dispatch_preprocess(self) -> None:
        capacity = 2 * self.cfg.chunk
        while self.requeued or self.next_seq < self.total:
            worker = min(self.supervisor.ready("pre"), key=Worker.load, default=None)
            if worker is None or worker.load() >= capacity:
                return
            task = self._new_task()
            if task is None:
                return
            task_id = next(self.task_ids)
            worker.inflight[task_id] = task
            wire.send(self.sock, wire.Task(task_id, task.slots(), [self.feed.item(seq) for seq in task.seqs()]),
                      identity=worker.identity)

    def _short_batch_wait_s(self) -> float | None:
        """How long the filling block's first items have waited, when it could go short:
        nothing of it is in preprocessing. None when it cannot."""
        block = self.filling
        if block is None or not len(block) or block.pending:
            return None
        return time.perf_counter() - block.first_ready_at

    def _dispatch_device(self) -> None:
        """Ready blocks (full, or the last of the input) go to any instance with room in its
        queue; the filling block goes short only to an idle instance, once its first items
        have waited the batch delay."""
        for worker in sorted(self.supervisor.ready("dev"), key=lambda w: len(w.inflight)):
            while len(worker.inflight) < DEVICE_QUEUE_DEPTH:
                if not self.ready and not worker.inflight:
                    waited = self._short_batch_wait_s()
                    if waited is not None and waited >= self.cfg.batch_delay_ms / 1000:
                        self._close(self.filling)
                if not self.ready:
                    break
                self._send_batch(worker, self.ready.popleft())

    def _send_batch(self, worker: Worker, block: Block) -> None:
        now = time.perf_counter()
        task_id = next(self.task_ids)
        worker.inflight[task_id] = block
        worker.sent_at[task_id] = now
        block.queue_us = (now * block.ready_items - block.ready_sum) * 1e6
        wire.send(self.sock, wire.Batch(task_id, block.first_slot, len(block)), identity=worker.identity)

    # ---- messages ----------------------------------------------------------------
    def _handle(self, identity: bytes, message: wire.Message, arrays: list) -> None:
        worker = self.supervisor.workers.get(identity)
        if worker is None:
            return  # a message from a worker already declared dead: its items were re-queued
        match message:
            case wire.Hello(backend=backend):
                self.supervisor.mark_ready(worker)
                if worker.role == "dev":
                    self.backends.append(backend)
            case wire.Fatal(error=error):
                self.stop_reason = f"{identity.decode()}: {error}"
            case wire.PreDone():
                self._preprocessed(worker.inflight.pop(message.id), message)
            case wire.DevDone() | wire.DevError():
                now = time.perf_counter()
                block = worker.inflight[message.id]
                started = worker.finish_batch(message.id, now)
                if isinstance(message, wire.DevDone):
                    self._finish_batch(block, message, arrays, started, now)
                else:
                    self._fail_batch(block, message.error, started, now)

    def _preprocessed(self, task: Task, done: wire.PreDone) -> None:
        block = task.block
        for slot, reason in done.errors:
            position = slot - block.first_slot
            block.holes.add(position)
            self._finish_error(block.seqs[position], reason)
        block.returned(len(task) - len(done.errors), time.perf_counter(), done.load_us, done.pre_us)
        self._maybe_ready(block)

    def _finish_batch(self, block: Block, header: wire.DevDone, arrays: list, started: float, done: float) -> None:
        ranked, probs, *outputs = arrays
        seqs, sent_at, rows = block.seqs, block.sent_at, block.rows()
        if rows is not None:
            ranked, probs, outputs = ranked[rows], probs[rows], [o[rows] for o in outputs]
            seqs, sent_at = [seqs[p] for p in rows], [sent_at[p] for p in rows]
        n = len(seqs)
        self.meter.span(started, done, n)
        t0 = time.perf_counter()
        failed = self.sink.results(seqs, ranked, probs, outputs)
        t1 = time.perf_counter()
        self.meter.batch(n, header.infer_us)
        if self.meter.measuring:
            stages = self.meter.stages
            stages.add("decode", block.load_us, block.ready_items)
            stages.add("preprocess", block.preprocess_us, block.ready_items)
            stages.add("queue_wait", block.queue_us, block.ready_items)
            stages.add("inference", header.infer_us, n)
            stages.add("postprocess", header.post_us + (t1 - t0) * 1e6, n)
            self.meter.latencies(t1, sent_at)
        self.meter.finish(n, failed, at=done)
        self._free(block)

    def _fail_batch(self, block: Block, reason: str, started: float, done: float) -> None:
        self.meter.span(started, done, block.valid)
        for position, seq in enumerate(block.seqs):
            if position not in block.holes:
                self._finish_error(seq, reason, counted=True)
        self._free(block)

    def _finish_error(self, seq: int, reason: str, *, counted: bool = False) -> None:
        """``counted``: the item is already in a device batch's span."""
        self.sink.error(seq, reason)
        if not counted:
            now = time.perf_counter()
            self.meter.span(now, now, 1)
        self.meter.finish(1, 1)

    # ---- supervision -------------------------------------------------------------
    def _supervise(self) -> None:
        self.supervisor.sample_memory()
        for proc, code in self.supervisor.take_dead():
            requeued = self._reclaim(proc, code)
            self.supervisor.restarts += 1
            if self.supervisor.restarts > self.supervisor.max_restarts:
                self.stop_reason = (f"worker processes died {self.supervisor.restarts} times (last: {proc.role} "
                                    f"worker {proc.index}, exit code {code}); stopping")
                return
            print(f"engine: {proc.role} worker {proc.index} (pid {proc.process.pid}) died with exit code {code}; "
                  f"re-queued {requeued} item(s), starting a fresh one", file=sys.stderr, flush=True)
            self.supervisor.start(proc.role, proc.index, proc.generation + 1)

    def _reclaim(self, proc: Proc, exit_code: int) -> int:
        """Take back every item the dead process held; returns how many were re-queued."""
        requeued = 0
        for worker in proc.workers:
            for held in worker.inflight.values():
                if proc.role == "pre":
                    requeued += self._requeue_task(held, exit_code)
                else:
                    requeued += self._requeue_block(held, exit_code)
        return requeued

    def _survivors(self, block: Block, positions: list[int], exit_code: int) -> list[int]:
        """Count one more worker death for the items at ``positions``; fail those at the
        limit and return the positions of the others."""
        alive = []
        for position in positions:
            seq = block.seqs[position]
            self.deaths_seen[seq] += 1
            if self.deaths_seen[seq] >= MAX_ITEM_DEATHS:
                block.holes.add(position)
                self._finish_error(seq, f"a worker died {MAX_ITEM_DEATHS} times while holding this item "
                                        f"(last exit code {exit_code})")
            else:
                alive.append(position)
        return alive

    def _requeue_task(self, task: Task, exit_code: int) -> int:
        """A dead preprocess worker's task goes out again, to the same slots."""
        task.positions = self._survivors(task.block, task.positions, exit_code)
        if task.positions:
            self.requeued.append(task)
        else:
            task.block.pending -= 1
            self._maybe_ready(task.block)
        return len(task.positions)

    def _requeue_block(self, block: Block, exit_code: int) -> int:
        """A dead device instance's batch is still in its slots: back to the front of the queue."""
        alive = self._survivors(block, [p for p in range(len(block)) if p not in block.holes], exit_code)
        if alive:
            self.ready.appendleft(block)
        else:
            self._free(block)
        return len(alive)

    # ---- the run -------------------------------------------------------------------
    def run(self) -> None:
        try:
            with stop_on_signals(self):
                self.start()
                print(f"engine: workers: {self.supervisor.pids()}", file=sys.stderr, flush=True)
                self._loop()
        finally:
            self.meter.stop(time.perf_counter())
            self.shutdown()

    def _loop(self) -> None:
        self.meter.start(time.perf_counter())
        while self.finished < self.total and not self.stop_reason:
            self.turn()
        self.meter.stop(time.perf_counter())
        if self.progress:
            self.progress(self)

    def turn(self) -> None:
        """One turn of the loop: hand out work, handle what came back, and every
        ``SUPERVISE_EVERY_S`` look after the worker processes and the progress callback."""
        self._dispatch_preprocess()
        self._dispatch_device()
        if self.sock.poll(self._poll_timeout_ms()):
            self._drain()
        self.supervise_when_due()

    def supervise_when_due(self) -> None:
        now = time.perf_counter()
        if now - self._last_supervised >= SUPERVISE_EVERY_S:
            self._last_supervised = now
            self._supervise()
            if self.progress:
                self.progress(self)

    def _drain(self, most: int = 64) -> None:
        """Handle the messages waiting, ``most`` at a time, so the loop gets to dispatch."""
        for _ in range(most):
            try:
                message = wire.recv(self.sock, with_identity=True, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle(*message)

    def _poll_timeout_ms(self) -> int:
        """Sleep until the next message, except when a short batch may become due: waking
        the broker more often than that steals cycles from the device threads."""
        waited = self._short_batch_wait_s()
        if waited is not None and any(not w.inflight for w in self.supervisor.ready("dev")):
            return max(1, int(self.cfg.batch_delay_ms - waited * 1000) + 1)
        return int(SUPERVISE_EVERY_S * 1000)

    def shutdown(self) -> None:
        """Stop every worker, wait briefly, then force; remove the socket and the ring.
        The memory is sampled once more first: a run shorter than one supervision period
        has a peak too."""
        self.supervisor.sample_memory()
        for worker in self.supervisor.workers.values():
            try:
                wire.send(self.sock, wire.Stop(), identity=worker.identity)
            except zmq.ZMQError:
                pass
        self.supervisor.join_all()
        self.sock.close()
        self.ctx.term()
        self.ring.close()
        if self._ipc_path:
            Path(self._ipc_path).unlink(missing_ok=True)
