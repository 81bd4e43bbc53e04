"""The broker: source, scheduler, supervisor and home of the sink.

It binds one ROUTER socket; every worker (a preprocess process, or one instance thread of
a device process) connects a DEALER with its own identity. The broker decides what each
worker does next (the ZeroMQ guide's load-balancing broker), which is what lets it keep
exact books: it knows which items every worker holds, so when a worker process dies its
items are re-queued to a fresh one and nothing is lost or produced twice.

Credit-based backpressure: an item is only sent to preprocessing once it has a free
slot, and its slot comes back only when the sink has its result, so memory is bounded by
the slot count whatever the datalist length.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import zmq

from engine.pipeline import wire
from engine.pipeline.config import RunConfig
from engine.pipeline.device_worker import device_main
from engine.pipeline.preprocess_worker import preprocess_main
from engine.pipeline.sink import Sink
from engine.pipeline.slots import SlotRing, sweep_stale_segments

SUPERVISE_EVERY_S = 0.2
DEVICE_QUEUE_DEPTH = 2  # batches queued per device instance, so it never waits on the broker
MAX_ITEM_DEATHS = 2  # an item in flight at this many worker deaths is failed, not retried
STOP_GRACE_S = 5.0


class RunStopped(RuntimeError):
    """The run cannot go on (a stage failed to start, too many worker deaths)."""


def work_in_window(spans, start: float, stop: float) -> float:
    """Items processed inside [start, stop]: each ``(started, done, items)`` span counts for
    the share of its time that lies inside, a point (``started == done``) in full when
    start < done <= stop."""
    work = 0.0
    for started, done, items in spans:
        if done <= started:
            work += items if start < done <= stop else 0
        else:
            work += items * max(0.0, min(done, stop) - max(started, start)) / (done - started)
    return work


@dataclass
class Worker:
    identity: bytes
    role: str  # "pre" or "dev"
    proc: Proc
    ready: bool = False
    inflight: dict = field(default_factory=dict)  # task id -> items
    backend: dict | None = None
    sent_at: dict = field(default_factory=dict)  # device task id -> when it was sent
    last_done: float = 0.0  # when this device instance last returned a batch

    def load(self) -> int:
        return sum(len(items) for items in self.inflight.values())

    def finish_batch(self, task_id: int, now: float) -> float:
        """Retire device task ``task_id``, returned at ``now``; returns when it started on the
        device: a queued batch starts when the instance's previous one is done."""
        self.inflight.pop(task_id, None)
        started = max(self.sent_at.pop(task_id, now), self.last_done)
        self.last_done = now
        return started


@dataclass
class Proc:
    role: str
    index: int
    generation: int
    process: mp.Process
    workers: list[Worker] = field(default_factory=list)


@dataclass
class Timings:
    """Per-item and per-batch durations in microseconds, appended as results arrive."""

    e2e: list = field(default_factory=list)
    load: list = field(default_factory=list)
    preprocess: list = field(default_factory=list)
    queue: list = field(default_factory=list)
    infer_batch: list = field(default_factory=list)
    infer_item: list = field(default_factory=list)
    postprocess: list = field(default_factory=list)
    batch_sizes: Counter = field(default_factory=Counter)


class Broker:
    def __init__(self, cfg: RunConfig, items: list[str], sink: Sink, progress=None):
        self.cfg = cfg
        self.items = items
        self.sink = sink
        self.progress = progress
        self.total = len(items) * cfg.iterations
        self.mp = mp.get_context("spawn")
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint, self._ipc_path = self._bind()
        sweep_stale_segments()
        crop = cfg.data_config.crop
        self.ring = SlotRing.create(cfg.slots, (3, crop, crop), cfg.slot_dtype)
        self.free_slots = deque(range(cfg.slots))
        self.next_seq = 0
        self.requeued: deque[int] = deque()
        self.ready: deque[tuple[int, int, float]] = deque()  # (seq, slot, time it became ready)
        self.dispatched_at: dict[int, float] = {}
        self.item_timing: dict[int, tuple[int, int, int]] = {}
        self.deaths_seen: Counter = Counter()
        self.workers: dict[bytes, Worker] = {}
        self.procs: list[Proc] = []
        self.task_ids = iter(range(1 << 62))
        self.finished = 0
        self.failed = 0
        self.restarts = 0
        self.max_restarts = 2 * (cfg.workers + cfg.processes) + 2
        self.stop_reason: str | None = None
        self.exit_signal: int | None = None
        self.timings = Timings()
        self.backends: list[dict] = []
        self.t_measure = self.t_end = 0.0
        self.measured_from = 0  # items finished when the clock started (0: from the start)
        self.spans: list[tuple[float, float, int]] = []  # (started, done, items) per batch or failed item
        self.peak_rss_bytes = 0

    # ---- sockets and processes -------------------------------------------------
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

    def _start_proc(self, role: str, index: int, generation: int) -> Proc:
        if role == "pre":
            identities = [f"pre-{index}.{generation}".encode()]
            target, args = preprocess_main, (identities[0], self.endpoint, self.ring.spec(),
                                             self.cfg.data_config.to_dict(), self.cfg.max_pixels)
        else:
            identities = [f"dev-{index}-{i}.{generation}".encode() for i in range(self.cfg.instances)]
            backend_spec = {"kind": self.cfg.backend, "model_path": self.cfg.model_path,
                            "device": self.cfg.device, "threads": self.cfg.threads,
                            "options": self.cfg.backend_options}
            target, args = device_main, (identities, self.endpoint, self.ring.spec(), backend_spec, self.cfg.batch)
        process = self.mp.Process(target=target, args=args, name=f"engine-{role}-{index}", daemon=True)
        process.start()
        proc = Proc(role, index, generation, process)
        for ident in identities:
            worker = Worker(ident, role, proc)
            proc.workers.append(worker)
            self.workers[ident] = worker
        self.procs.append(proc)
        return proc

    def _start_all(self) -> None:
        for i in range(self.cfg.workers):
            self._start_proc("pre", i, 0)
        for p in range(self.cfg.processes):
            self._start_proc("dev", p, 0)
        deadline = time.monotonic() + self.cfg.worker_start_timeout_s
        while not all(w.ready for w in self.workers.values()):
            if self.stop_reason:
                raise RunStopped(self.stop_reason)
            if time.monotonic() > deadline:
                raise RunStopped(f"workers did not start within {self.cfg.worker_start_timeout_s:.0f} s")
            if self.sock.poll(100):
                self._handle(*wire.recv(self.sock, with_identity=True))
            for proc in self.procs:
                if proc.process.exitcode is not None:
                    raise RunStopped(f"{proc.role} worker {proc.index} exited with code {proc.process.exitcode} "
                                     "while starting")

    # ---- scheduling ------------------------------------------------------------
    def _pre_workers(self):
        return [w for w in self.workers.values() if w.role == "pre" and w.ready]

    def _dev_workers(self):
        return [w for w in self.workers.values() if w.role == "dev" and w.ready]

    def _more_input_coming(self) -> bool:
        return bool(self.requeued) or self.next_seq < self.total or any(w.inflight for w in self._pre_workers())

    def _dispatch_preprocess(self) -> None:
        capacity = 2 * self.cfg.chunk
        while self.free_slots and (self.requeued or self.next_seq < self.total):
            worker = min(self._pre_workers(), key=Worker.load, default=None)
            if worker is None or worker.load() >= capacity:
                return
            items = []
            while len(items) < self.cfg.chunk and self.free_slots and (self.requeued or self.next_seq < self.total):
                if self.requeued:
                    seq = self.requeued.popleft()
                else:
                    seq = self.next_seq
                    self.next_seq += 1
                    self.dispatched_at[seq] = time.perf_counter()
                items.append([seq, self.items[seq % len(self.items)], self.free_slots.popleft()])
            task_id = next(self.task_ids)
            worker.inflight[task_id] = items
            wire.send(self.sock, {"type": "task", "id": task_id, "items": items}, identity=worker.identity)

    def _dispatch_device(self) -> None:
        """Full batches go to any instance with room in its queue; a partial batch goes only
        to an idle instance, once its oldest item has waited the batch delay or no more
        input is coming."""
        for worker in sorted(self._dev_workers(), key=lambda w: len(w.inflight)):
            while self.ready and len(worker.inflight) < DEVICE_QUEUE_DEPTH:
                full = len(self.ready) >= self.cfg.batch
                waited = time.perf_counter() - self.ready[0][2] >= self.cfg.batch_delay_ms / 1000
                if not full and (worker.inflight or (self._more_input_coming() and not waited)):
                    break
                self._send_batch(worker)

    def _send_batch(self, worker: Worker) -> None:
        now = time.perf_counter()
        items = []
        for _ in range(min(self.cfg.batch, len(self.ready))):
            seq, slot, t_ready = self.ready.popleft()
            items.append([seq, slot])
            load_us, pre_us, _ = self.item_timing.get(seq, (0, 0, 0))
            self.item_timing[seq] = (load_us, pre_us, round((now - t_ready) * 1e6))
        task_id = next(self.task_ids)
        worker.inflight[task_id] = items
        worker.sent_at[task_id] = now
        wire.send(self.sock, {"type": "batch", "id": task_id, "items": items}, identity=worker.identity)

    # ---- messages ----------------------------------------------------------------
    def _handle(self, identity: bytes, header: dict, arrays: list) -> None:
        worker = self.workers.get(identity)
        if worker is None:
            return  # a message from a worker already declared dead: its items were re-queued
        kind = header["type"]
        if kind == "hello":
            worker.ready = True
            if worker.role == "dev":
                worker.backend = header.get("backend")
                self.backends.append(worker.backend)
        elif kind == "fatal":
            self.stop_reason = f"{identity.decode()}: {header['error']}"
        elif kind == "pre_done":
            worker.inflight.pop(header["id"], None)
            now = time.perf_counter()
            for seq, slot, load_us, pre_us in header["done"]:
                self.ready.append((seq, slot, now))
                self.item_timing[seq] = (load_us, pre_us, 0)
            for seq, slot, reason in header["errors"]:
                self._finish_error(seq, slot, reason)
        elif kind == "dev_done":
            now = time.perf_counter()
            self._finish_batch(header, arrays, worker.finish_batch(header["id"], now), now)
        elif kind == "dev_error":
            now = time.perf_counter()
            self.spans.append((worker.finish_batch(header["id"], now), now, len(header["items"])))
            for seq, slot in header["items"]:
                self._finish_error(seq, slot, header["error"], counted=True)

    def _finish_batch(self, header: dict, arrays: list, started: float, done: float) -> None:
        items = header["items"]
        self.spans.append((started, done, len(items)))
        t0 = time.perf_counter()
        ok = self.sink.results([seq for seq, _ in items], arrays)
        t1 = time.perf_counter()
        n = len(items)
        tm = self.timings
        tm.infer_batch.append(header["infer_us"])
        tm.batch_sizes[n] += 1
        post_us = (t1 - t0) * 1e6 / n
        for (seq, slot), good in zip(items, ok):
            self.free_slots.append(slot)
            self.finished += 1
            if not good:
                self.failed += 1
            load_us, pre_us, queue_us = self.item_timing.pop(seq, (0, 0, 0))
            t_dispatch = self.dispatched_at.pop(seq, None)
            if good and self.measuring:
                tm.load.append(load_us)
                tm.preprocess.append(pre_us)
                tm.queue.append(queue_us)
                tm.infer_item.append(header["infer_us"] / n)
                tm.postprocess.append(post_us)
                if t_dispatch is not None:
                    tm.e2e.append((t1 - t_dispatch) * 1e6)
        self._maybe_start_measuring(done)

    def _finish_error(self, seq: int, slot: int | None, reason: str, *, counted: bool = False) -> None:
        """``counted``: the item is already in a device batch's span."""
        self.sink.error(seq, reason)
        if not counted:
            now = time.perf_counter()
            self.spans.append((now, now, 1))
        if slot is not None:
            self.free_slots.append(slot)
        self.item_timing.pop(seq, None)
        self.dispatched_at.pop(seq, None)
        self.finished += 1
        self.failed += 1
        self._maybe_start_measuring()

    def _maybe_start_measuring(self, at: float | None = None) -> None:
        """Start the clock once ``--warmup`` items are through (batches may overshoot it),
        at ``at``: the completion that got them through."""
        if not self.measuring and self.finished >= self.cfg.warmup:
            self.measured_from = self.finished
            self.t_measure = at or time.perf_counter()

    # ---- supervision -------------------------------------------------------------
    def _sample_memory(self) -> None:
        """Track the peak resident memory of the whole run: broker plus every worker."""
        total = 0
        for p in [psutil.Process()] + [psutil.Process(proc.process.pid) for proc in self.procs if proc.process.pid]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak_rss_bytes = max(self.peak_rss_bytes, total)

    def _supervise(self) -> None:
        self._sample_memory()
        for proc in list(self.procs):
            code = proc.process.exitcode
            if code is None:
                continue
            self.procs.remove(proc)
            requeued = self._reclaim(proc, code)
            self.restarts += 1
            if self.restarts > self.max_restarts:
                self.stop_reason = (f"worker processes died {self.restarts} times (last: {proc.role} worker "
                                    f"{proc.index}, exit code {code}); stopping")
                return
            print(f"engine: {proc.role} worker {proc.index} (pid {proc.process.pid}) died with exit code {code}; "
                  f"re-queued {requeued} item(s), starting a fresh one", file=sys.stderr, flush=True)
            self._start_proc(proc.role, proc.index, proc.generation + 1)

    def _reclaim(self, proc: Proc, exit_code: int) -> int:
        """Take back every item the dead process held; returns how many were re-queued."""
        requeued = 0
        for worker in proc.workers:
            del self.workers[worker.identity]
            for items in worker.inflight.values():
                for item in items:
                    seq, slot = item[0], item[-1]
                    self.deaths_seen[seq] += 1
                    if self.deaths_seen[seq] >= MAX_ITEM_DEATHS:
                        self._finish_error(seq, slot, f"a worker died {MAX_ITEM_DEATHS} times while holding this "
                                                      f"item (last exit code {exit_code})")
                    elif proc.role == "pre":
                        self.free_slots.append(slot)
                        self.requeued.append(seq)
                        requeued += 1
                    else:  # the preprocessed tensor is still in its slot: back to the front of the queue
                        self.ready.appendleft((seq, slot, time.perf_counter()))
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
            pids = ", ".join(f"{proc.role}-{proc.index} pid {proc.process.pid}" for proc in self.procs)
            print(f"engine: workers: {pids}", file=sys.stderr, flush=True)
            self.t_measure = last_check = time.perf_counter()
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
            self.t_end = time.perf_counter()
            if self.progress:
                self.progress(self)
        finally:
            self.t_end = self.t_end or time.perf_counter()
            for s, h in handlers.items():
                signal.signal(s, h)
            self.shutdown()

    def _poll_timeout_ms(self) -> int:
        """Sleep until the next message, except when a partial batch may become due: waking
        the broker more often than that steals cycles from the device threads."""
        if self.ready and any(len(w.inflight) == 0 for w in self._dev_workers()):
            waited_ms = (time.perf_counter() - self.ready[0][2]) * 1000
            return max(1, int(self.cfg.batch_delay_ms - waited_ms) + 1)
        return int(SUPERVISE_EVERY_S * 1000)

    def shutdown(self) -> None:
        """Stop every worker, wait briefly, then force; remove the socket and the ring."""
        for worker in self.workers.values():
            try:
                wire.send(self.sock, {"type": "stop"}, identity=worker.identity)
            except zmq.ZMQError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            proc.process.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.process.is_alive():
                proc.process.kill()
                proc.process.join(2)
        self.sock.close()
        self.ctx.term()
        self.ring.close()
        if self._ipc_path:
            Path(self._ipc_path).unlink(missing_ok=True)

    @property
    def measuring(self) -> bool:
        """Whether the clock runs: per-item timings are kept only from then on."""
        return self.cfg.warmup == 0 or self.measured_from > 0

    def timed_window(self) -> tuple[float, float]:
        """The clock's start and end. After the run the end is the earliest last batch of
        the device instances that worked after the start: from then on some instance had
        no more work, and the others' last batches alone would read low."""
        stop = self.t_end or time.perf_counter()
        if self.t_end:
            lasts = [w.last_done for w in self.workers.values() if w.role == "dev" and w.last_done > self.t_measure]
            if len(lasts) > 1:
                stop = min(lasts)
        return self.t_measure, stop

    @property
    def measured_seconds(self) -> float:
        """Seconds of the timed window (so far, while it runs)."""
        start, stop = self.timed_window()
        return max(1e-9, stop - start)

    @property
    def measured_items(self) -> int:
        return self.finished - self.measured_from

    @property
    def throughput(self) -> float:
        """Items per second. After the run: the work inside the timed window, each batch
        counted for the share of its device time inside it (a batch already running when
        the clock started, or still running when it stopped, counts in part); counting
        such batches whole made short runs with several instances read up to a batch per
        instance high or low. While it runs: items finished over the time so far."""
        if not self.t_end:
            return self.measured_items / self.measured_seconds
        start, stop = self.timed_window()
        return work_in_window(self.spans, start, stop) / max(1e-9, stop - start)
