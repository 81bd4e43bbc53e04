"""The classification server: one ROUTER socket, a preprocessing pool, a dynamic batcher.

Threads and who owns what:

- the socket thread (the caller of :meth:`Server.serve`) owns the ROUTER socket: it
  parses and validates requests, answers bad ones and pings at once, admits the rest
  (or answers "busy"), and forwards every reply that comes back over an inproc PULL
  socket. It never decodes or runs the model, so it stays responsive.
- ``workers`` preprocessing threads decode the payload and run the fused resize/crop/
  normalize kernel (both release the GIL), then hand the tensor to the batcher.
- one thread per model instance takes due batches from the :class:`DynamicBatcher`,
  runs the backend and softmax/top-k, and pushes the packed replies. When a worker's
  item makes a batch due while an instance is idle, the worker runs that batch itself
  (one thread hand-off fewer at low load).
- at low load (nothing else in flight, no queue delay) a request whose estimated service
  time is below ``inline_max_us`` runs on the socket thread itself, start to finish: two
  thread wake-ups fewer on the latency path (see :mod:`engine.serving.service_time`).

ZeroMQ sockets are not thread safe, so every worker and instance thread has its own
PUSH socket into the socket thread. Every admitted request produces exactly one reply
on that path, which is how the socket thread counts requests in flight.
"""
from __future__ import annotations

import collections
import queue
import struct
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import zmq

from engine.data.decode import DecodeError
from engine.serving import protocol
from engine.serving.batcher import DynamicBatcher
from engine.serving.model import ServedModel
from engine.serving.payload import decode_payload
from engine.serving.service_time import ServiceTimes

REPLIES_ENDPOINT = "inproc://engine.serve.replies"
_STATUS = struct.Struct("<Q?")  # request sequence number, ok
POLL_MS = 50
ROUTER_BURST = 256  # requests read per loop turn before replies are forwarded


@dataclass
class Limits:
    max_bytes: int = 64 * 2**20
    max_pixels: int = 40_000_000
    max_inflight: int = 64
    max_inflight_bytes: int = 1 << 30


@dataclass
class _Job:
    seq: int
    envelope: list
    request: protocol.Request
    t_recv: float


@dataclass
class _Instance:
    """A backend session and the batch buffer it runs from."""

    backend: object
    batch: np.ndarray


@dataclass
class _Ready:
    job: _Job
    tensor: np.ndarray
    t_pre_start: float
    t_pre_end: float


class Server:
    """Serve ``model`` on an already bound ROUTER ``socket`` until :meth:`stop`."""

    def __init__(self, model: ServedModel, socket: zmq.Socket, *, max_batch: int = 8,
                 max_queue_delay_us: int = 0, workers: int = 2, limits: Limits | None = None,
                 drain_timeout_s: float = 30.0, inline_max_us: float = 1000.0, log=None):
        if workers < 1:
            raise ValueError(f"workers {workers}: must be >= 1")
        self.model = model
        self.router = socket
        self.limits = limits or Limits()
        self.drain_timeout_s = drain_timeout_s
        self.inline_max_us = inline_max_us
        self.service_times = ServiceTimes()
        self.log = log or (lambda msg: print(f"engine.serve: {msg}", file=sys.stderr, flush=True))
        self.context = socket.context
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)  # replies to vanished peers are dropped
        self.router.setsockopt(zmq.LINGER, 2000)
        self.pull = self.context.socket(zmq.PULL)
        self.pull.bind(REPLIES_ENDPOINT)
        instances = [
            _Instance(backend, np.empty((max_batch, *model.input_shape), np.float32))
            for backend in model.backends
        ]
        self.batcher = DynamicBatcher(max_batch, max_queue_delay_us / 1e6, instances)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._seq = 0
        self._inflight: dict[int, int] = {}  # seq -> payload bytes
        self._inflight_bytes = 0
        self._stats = collections.Counter()
        self._batch_sizes = collections.Counter()
        self._batch_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._worker_loop, name=f"preprocess-{i}", daemon=True)
            for i in range(workers)
        ] + [
            threading.Thread(target=self._instance_loop, name=f"instance-{i}", daemon=True)
            for i in range(len(instances))
        ]

    # ---- socket thread -------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`serve` to drain in-flight requests and return (safe from signal handlers)."""
        self._stop.set()

    def serve(self) -> None:
        for thread in self._threads:
            thread.start()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        drain_deadline = None
        try:
            while True:
                if self._stop.is_set() and drain_deadline is None:
                    drain_deadline = time.monotonic() + self.drain_timeout_s
                    self.batcher.drain()
                    self.log(f"stopping: draining {len(self._inflight)} requests in flight")
                if drain_deadline is not None:
                    if not self._inflight:
                        break
                    if time.monotonic() > drain_deadline:
                        self.log(f"drain timed out with {len(self._inflight)} requests unanswered")
                        break
                events = dict(poller.poll(POLL_MS))
                if self.pull in events:
                    self._forward_replies()
                if self.router in events:
                    self._read_requests()
        finally:
            self._shutdown()

    def _forward_replies(self) -> None:
        while True:
            try:
                frames = self.pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._deliver(frames)

    def _deliver(self, frames: list) -> None:
        """Send one reply made by :func:`_result` or :func:`_error` and retire its request."""
        seq, ok = _STATUS.unpack(frames[0])
        self._inflight_bytes -= self._inflight.pop(seq)
        self._stats["served" if ok else "errors"] += 1
        self.router.send_multipart(frames[1:])

    def _read_requests(self) -> None:
        for _ in range(ROUTER_BURST):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            t_recv = time.perf_counter()
            envelope, body = protocol.split_envelope(frames)
            envelope = [frame.bytes for frame in envelope]
            self._stats["requests"] += 1
            try:
                if len(body) == 1:
                    self._reply(envelope, self._control(body[0]))
                else:
                    self._admit(envelope, body, t_recv)
            except protocol.ProtocolError as e:
                self._stats["errors"] += 1
                self._reply(envelope, protocol.error_reply(e.request_id, str(e)))
            except Exception as e:  # a bug must cost one request, not the server
                self._stats["errors"] += 1
                self.log(f"internal error on a request: {type(e).__name__}: {e}")
                self._reply(envelope, protocol.error_reply(None, f"internal server error ({type(e).__name__})"))

    def _reply(self, envelope: list, reply: bytes) -> None:
        self.router.send_multipart([*envelope, reply])

    def _control(self, frame) -> bytes:
        message = protocol.unpack_map(frame.buffer, "control message")
        op = message.get("op")
        if op != "ping":
            raise protocol.ProtocolError(
                f"single-frame message: op {op!r} is not a known control op ('ping'); "
                "a classification request has 2 frames [header, payload]",
                message.get("id") if isinstance(message.get("id"), protocol.SCALAR_TYPES) else None,
            )
        return protocol.pong_reply(self.model.name, self.stats())

    def _admit(self, envelope: list, body: list, t_recv: float) -> None:
        limits = self.limits
        request = protocol.parse_request(
            [body[0].buffer, body[1].buffer] if len(body) == 2 else body,
            num_classes=self.model.num_classes, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels,
        )
        if self._stop.is_set():
            raise protocol.ProtocolError("server is shutting down", request.id)
        size = len(request.payload)
        if len(self._inflight) >= limits.max_inflight or (
            self._inflight and self._inflight_bytes + size > limits.max_inflight_bytes
        ):
            self._stats["busy"] += 1
            raise protocol.ProtocolError(
                f"busy: {len(self._inflight)} requests ({self._inflight_bytes} bytes) in flight, "
                f"limits {limits.max_inflight} requests / {limits.max_inflight_bytes} bytes; retry later",
                request.id,
            )
        self._seq += 1
        self._inflight[self._seq] = size
        self._inflight_bytes += size
        job = _Job(self._seq, envelope, request, t_recv)
        if not self._serve_inline(job):
            self.jobs.put(job)

    def _serve_inline(self, job: _Job) -> bool:
        """Answer ``job`` on this thread if the server is idle and the job is short.

        Only without a queue delay: then an idle server's batch of one is due at once
        either way, so running it here keeps the batching semantics.
        """
        if len(self._inflight) != 1 or self.batcher.max_delay_s > 0:
            return False
        estimate = self.service_times.estimate_us(job.request.encoding, len(job.request.payload))
        if estimate is None or estimate > self.inline_max_us:
            return False
        instance = self.batcher.try_claim()
        if instance is None:
            return False
        self._stats["inline"] += 1
        ready = self._prepare(job, self._deliver)
        if ready is None:
            self.batcher.release(instance)
        else:
            self._run_batch([ready], instance, self._deliver)
        return True

    def stats(self) -> dict:
        with self._batch_lock:
            histogram = {str(size): count for size, count in sorted(self._batch_sizes.items())}
        return {
            "requests": self._stats["requests"],
            "served": self._stats["served"],
            "errors": self._stats["errors"],
            "busy": self._stats["busy"],
            "inline": self._stats["inline"],
            "in_flight": len(self._inflight),
            "queue_depth": self.jobs.qsize() + self.batcher.depth(),
            "batch_sizes": histogram,
        }

    def _shutdown(self) -> None:
        workers = [t for t in self._threads if t.name.startswith("preprocess")]
        for _ in workers:
            self.jobs.put(None)
        for thread in workers:
            thread.join(timeout=10)
        self.batcher.close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._forward_replies()
        self.pull.close(linger=0)

    # ---- worker threads ------------------------------------------------------------
    def _push_socket(self) -> zmq.Socket:
        push = self.context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(REPLIES_ENDPOINT)
        return push

    def _prepare(self, job: _Job, send) -> _Ready | None:
        """Decode and preprocess ``job``; on failure ``send`` its error reply and return None."""
        t_start = time.perf_counter()
        request = job.request
        try:
            image = decode_payload(request, max_pixels=self.limits.max_pixels)
            tensor = np.empty(self.model.input_shape, np.float32)
            self.model.preprocess(image, tensor)
        except DecodeError as e:
            send(_error(job, str(e)))
            return None
        except Exception as e:  # a kernel failure must not kill the thread
            send(_error(job, f"preprocessing failed ({type(e).__name__}: {e})"))
            return None
        t_end = time.perf_counter()
        self.service_times.record_preprocess(request.encoding, len(request.payload), (t_end - t_start) * 1e6)
        return _Ready(job, tensor, t_start, t_end)

    def _worker_loop(self) -> None:
        push = self._push_socket()
        try:
            while (job := self.jobs.get()) is not None:
                ready = self._prepare(job, push.send_multipart)
                if ready is None:
                    continue
                claimed = self.batcher.put(ready, ready_time=ready.t_pre_end)
                if claimed is not None:
                    self._run_batch(*claimed, push.send_multipart)
        finally:
            push.close()

    def _instance_loop(self) -> None:
        push = self._push_socket()
        try:
            while (claimed := self.batcher.next_batch()) is not None:
                self._run_batch(*claimed, push.send_multipart)
        finally:
            push.close()

    def _run_batch(self, items: list, instance: _Instance, send) -> None:
        """Run one batch on ``instance``, hand the instance back, then ``send`` a reply per
        item: released first, so a client that answers its reply at once finds the server
        idle (and can be served inline)."""
        try:
            replies = self._answer_batch(items, instance)
        finally:
            self.batcher.release(instance)
        for frames in replies:
            send(frames)

    def _answer_batch(self, items: list, instance: _Instance) -> list[list]:
        t_start = time.perf_counter()
        n = len(items)
        with self._batch_lock:
            self._batch_sizes[n] += 1
        if n == 1:
            batch = items[0].tensor[None]
        else:
            batch = instance.batch[:n]
            for i, item in enumerate(items):
                batch[i] = item.tensor
        try:
            logits = instance.backend.run(batch)[0]
            indices, probs = self.model.topk(logits, max(item.job.request.topk for item in items))
        except Exception as e:  # answer the whole batch, keep serving
            return [_error(item.job, f"inference failed ({type(e).__name__}: {e})") for item in items]
        infer_us = (time.perf_counter() - t_start) * 1e6
        if n == 1:
            self.service_times.record_infer(infer_us)
        names = self.model.class_names
        return [_result(item, indices[i], probs[i], names, infer_us, t_start) for i, item in enumerate(items)]


def _error(job: _Job, message: str) -> list:
    return [_STATUS.pack(job.seq, False), *job.envelope, protocol.error_reply(job.request.id, message)]


def _result(item: _Ready, indices, probs, names, infer_us: float, t_batch: float) -> list:
    job = item.job
    k = job.request.topk
    if indices[0] < 0:
        return _error(job, "the model produced non-finite scores (NaN or inf) for this input")
    topk = [
        {"class": int(c), "prob": float(p), "name": names[c]}
        for c, p in zip(indices[:k].tolist(), probs[:k].tolist())
    ]
    now = time.perf_counter()
    timing = {
        "queue": round(((item.t_pre_start - job.t_recv) + (t_batch - item.t_pre_end)) * 1e6, 1),
        "preprocess": round((item.t_pre_end - item.t_pre_start) * 1e6, 1),
        "infer": round(infer_us, 1),
        "total": round((now - job.t_recv) * 1e6, 1),
    }
    return [_STATUS.pack(job.seq, True), *job.envelope, protocol.ok_reply(job.request.id, topk, timing)]
