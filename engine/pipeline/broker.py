"""The broker: source, scheduler and home of the sink.

It binds one ROUTER socket; every worker (a preprocess process, or one instance thread of
a device process) connects a DEALER with its own identity. The broker decides what each
worker does next (the ZeroMQ guide's load-balancing broker), which is what lets it keep
exact books: it knows which items every worker holds, so when a worker process dies its
items are re-queued to a fresh one and nothing is lost or produced twice.

Credit-based backpressure: an item is only sent to preprocessing once it has a free
slot, and its slot comes back only when the sink has its result, so memory is bounded by
the slot count whatever the datalist length.

Everything here runs on the broker's one thread; the worker processes are the
supervisor's (engine/pipeline/supervisor.py), the clock is the meter's (meter.py).
"""
from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import zmq

from engine.pipeline import wire
from engine.pipeline.config import RunConfig, fit_warmup
from engine.pipeline.meter import Meter
from engine.pipeline.sink import Sink
from engine.pipeline.slots import SlotRing, sweep_stale_segments
from engine.pipeline.supervisor import Proc, Supervisor, Worker

SUPERVISE_EVERY_S = 0.2
DEVICE_QUEUE_DEPTH = 2  # batches queued per device instance, so it never waits on the broker
MAX_ITEM_DEATHS = 2  # an item in flight at this many worker deaths is failed, not retried


class RunStopped(RuntimeError):
    """The run cannot go on (a stage failed to start, too many worker deaths)."""


@dataclass(slots=True)
class Item:
    """One datalist entry on its way through: where its tensor is and what it took so far."""

    seq: int  # position in the run (iterations past the first pass included)
    path: str
    slot: int
    dispatched_at: float  # when it first went to preprocessing
    ready_at: float = 0.0  # when its tensor was in its slot
    load_us: int = 0
    preprocess_us: int = 0
    queue_us: int = 0  # from ready to sent to a device


class Broker:
    def __init__(self, cfg: RunConfig, items: list[str], sink: Sink, progress=None):
        self.cfg = cfg
        self.items = items
        self.sink = sink
        self.progress = progress
        self.total = len(items) * cfg.iterations
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint, self._ipc_path = self._bind()
        sweep_stale_segments()
        crop = cfg.data_config.crop
        self.ring = SlotRing.create(cfg.slots, (3, crop, crop), cfg.slot_dtype)
        self.supervisor = Supervisor(cfg, self.endpoint, self.ring.spec())
        warmup, self.warmup_notice = fit_warmup(cfg.warmup, self.total)
        if self.warmup_notice:
            print(f"engine: notice: {self.warmup_notice}", file=sys.stderr, flush=True)
        self.meter = Meter(warmup)
        self.free_slots = deque(range(cfg.slots))
        self.next_seq = 0
        self.requeued: deque[Item] = deque()  # back from a dead preprocess worker: no slot yet
        self.ready: deque[Item] = deque()  # preprocessed, waiting for a device batch
        self.deaths_seen: Counter = Counter()  # seq -> worker deaths it was in flight at
        self.task_ids = iter(range(1 << 62))
        self.stop_reason: str | None = None
        self.exit_signal: int | None = None
        self.backends: list[dict] = []

    # ---- what the command and the report read ------------------------------------
    @property
    def finished(self) -> int:
        return self.meter.finished

    @property
    def failed(self) -> int:
        return self.meter.failed

    @property
    def throughput(self) -> float:
        return self.meter.throughput(self.supervisor.device_last_done())

    @property
    def measured_seconds(self) -> float:
        return self.meter.seconds(self.supervisor.device_last_done())

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

    def _start_all(self) -> None:
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

    # ---- scheduling ------------------------------------------------------------
    def _input_left(self) -> bool:
        return bool(self.requeued) or self.next_seq < self.total

    def _more_input_coming(self) -> bool:
        return self._input_left() or any(w.inflight for w in self.supervisor.ready("pre"))

    def _next_item(self) -> Item:
        slot = self.free_slots.popleft()
        if self.requeued:
            item = self.requeued.popleft()
            item.slot = slot
            return item
        seq = self.next_seq
        self.next_seq += 1
        return Item(seq, self.items[seq % len(self.items)], slot, time.perf_counter())

    def _dispatch_preprocess(self) -> None:
        capacity = 2 * self.cfg.chunk
        while self.free_slots and self._input_left():
            worker = min(self.supervisor.ready("pre"), key=Worker.load, default=None)
            if worker is None or worker.load() >= capacity:
                return
            items = []
            while len(items) < self.cfg.chunk and self.free_slots and self._input_left():
                items.append(self._next_item())
            task_id = next(self.task_ids)
            worker.inflight[task_id] = items
            wire.send(self.sock, {"type": "task", "id": task_id,
                                  "items": [[it.seq, it.path, it.slot] for it in items]}, identity=worker.identity)

    def _dispatch_device(self) -> None:
        """Full batches go to any instance with room in its queue; a partial batch goes only
        to an idle instance, once its oldest item has waited the batch delay or no more
        input is coming."""
        for worker in sorted(self.supervisor.ready("dev"), key=lambda w: len(w.inflight)):
            while self.ready and len(worker.inflight) < DEVICE_QUEUE_DEPTH:
                full = len(self.ready) >= self.cfg.batch
                waited = time.perf_counter() - self.ready[0].ready_at >= self.cfg.batch_delay_ms / 1000
                if not full and (worker.inflight or (self._more_input_coming() and not waited)):
                    break
                self._send_batch(worker)

    def _send_batch(self, worker: Worker) -> None:
        now = time.perf_counter()
        items = [self.ready.popleft() for _ in range(min(self.cfg.batch, len(self.ready)))]
        for item in items:
            item.queue_us = round((now - item.ready_at) * 1e6)
        task_id = next(self.task_ids)
        worker.inflight[task_id] = items
        worker.sent_at[task_id] = now
        wire.send(self.sock, {"type": "batch", "id": task_id, "items": [[it.seq, it.slot] for it in items]},
                  identity=worker.identity)

    # ---- messages ----------------------------------------------------------------
    def _handle(self, identity: bytes, header: dict, arrays: list) -> None:
        worker = self.supervisor.workers.get(identity)
        if worker is None:
            return  # a message from a worker already declared dead: its items were re-queued
        kind = header["type"]
        if kind == "hello":
            worker.ready = True
            if worker.role == "dev":
                self.backends.append(header.get("backend"))
        elif kind == "fatal":
            self.stop_reason = f"{identity.decode()}: {header['error']}"
        elif kind == "pre_done":
            self._preprocessed(worker, header)
        elif kind == "dev_done":
            now = time.perf_counter()
            items = worker.inflight.get(header["id"], [])
            self._finish_batch(items, header, arrays, worker.finish_batch(header["id"], now), now)
        elif kind == "dev_error":
            now = time.perf_counter()
            items = worker.inflight.get(header["id"], [])
            self.meter.span(worker.finish_batch(header["id"], now), now, len(items))
            for item in items:
                self._finish_error(item, header["error"], counted=True)

    def _preprocessed(self, worker: Worker, header: dict) -> None:
        by_seq = {item.seq: item for item in worker.inflight.pop(header["id"], [])}
        now = time.perf_counter()
        for seq, _slot, load_us, pre_us in header["done"]:
            item = by_seq[seq]
            item.ready_at, item.load_us, item.preprocess_us, item.queue_us = now, load_us, pre_us, 0
            self.ready.append(item)
        for seq, _slot, reason in header["errors"]:
            self._finish_error(by_seq[seq], reason)

    def _finish_batch(self, items: list[Item], header: dict, arrays: list, started: float, done: float) -> None:
        n = len(items)
        self.meter.span(started, done, n)
        t0 = time.perf_counter()
        ok = self.sink.results([item.seq for item in items], arrays)
        t1 = time.perf_counter()
        tm = self.meter.timings
        tm.infer_batch.append(header["infer_us"])
        tm.batch_sizes[n] += 1
        post_us = (t1 - t0) * 1e6 / n
        measuring = self.meter.measuring
        for item, good in zip(items, ok):
            self.free_slots.append(item.slot)
            if good and measuring:
                tm.load.append(item.load_us)
                tm.preprocess.append(item.preprocess_us)
                tm.queue.append(item.queue_us)
                tm.infer_item.append(header["infer_us"] / n)
                tm.postprocess.append(post_us)
                tm.e2e.append((t1 - item.dispatched_at) * 1e6)
        self.meter.finish(n, ok.count(False), at=done)

    def _finish_error(self, item: Item, reason: str, *, counted: bool = False) -> None:
        """``counted``: the item is already in a device batch's span."""
        self.sink.error(item.seq, reason)
        if not counted:
            now = time.perf_counter()
            self.meter.span(now, now, 1)
        self.free_slots.append(item.slot)
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
            for items in worker.inflight.values():
                for item in items:
                    self.deaths_seen[item.seq] += 1
                    if self.deaths_seen[item.seq] >= MAX_ITEM_DEATHS:
                        self._finish_error(item, f"a worker died {MAX_ITEM_DEATHS} times while holding this "
                                                 f"item (last exit code {exit_code})")
                    elif proc.role == "pre":
                        self.free_slots.append(item.slot)
                        self.requeued.append(item)
                        requeued += 1
                    else:  # the preprocessed tensor is still in its slot: back to the front of the queue
                        item.ready_at = time.perf_counter()
                        self.ready.appendleft(item)
                        requeued += 1
        return requeued

    # ---- the run -------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        self.exit_signal = signum
        self.stop_reason = f"interrupted by {signal.Signals(signum).name}"

    def run(self) -> None:
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._start_all()
            print(f"engine: workers: {self.supervisor.pids()}", file=sys.stderr, flush=True)
            self._loop()
        finally:
            if self.meter.t_end is None:
                self.meter.stop(time.perf_counter())
            for s, h in handlers.items():
                signal.signal(s, h)
            self.shutdown()

    def _loop(self) -> None:
        self.meter.start(last_check := time.perf_counter())
        while self.finished < self.total and not self.stop_reason:
            self._dispatch_preprocess()
            self._dispatch_device()
            if self.sock.poll(self._poll_timeout_ms()):
                for _ in range(64):
                    self._handle(*wire.recv(self.sock, with_identity=True))
                    if not self.sock.poll(0):
                        break
            now = time.perf_counter()
            if now - last_check >= SUPERVISE_EVERY_S:
                last_check = now
                self._supervise()
                if self.progress:
                    self.progress(self)
        self.meter.stop(time.perf_counter())
        if self.progress:
            self.progress(self)

    def _poll_timeout_ms(self) -> int:
        """Sleep until the next message, except when a partial batch may become due: waking
        the broker more often than that steals cycles from the device threads."""
        if self.ready and any(len(w.inflight) == 0 for w in self.supervisor.ready("dev")):
            waited_ms = (time.perf_counter() - self.ready[0].ready_at) * 1000
            return max(1, int(self.cfg.batch_delay_ms - waited_ms) + 1)
        return int(SUPERVISE_EVERY_S * 1000)

    def shutdown(self) -> None:
        """Stop every worker, wait briefly, then force; remove the socket and the ring."""
        for worker in self.supervisor.workers.values():
            try:
                wire.send(self.sock, {"type": "stop"}, identity=worker.identity)
            except zmq.ZMQError:
                pass
        self.supervisor.join_all()
        self.sock.close()
        self.ctx.term()
        self.ring.close()
        if self._ipc_path:
            Path(self._ipc_path).unlink(missing_ok=True)
