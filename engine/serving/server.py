"""The classification server: one ROUTER socket, a preprocessing pool shared by every model, and per
model version a dynamic batcher and its instances (:mod:`engine.serving.deployment`, held by a
:class:`~engine.serving.fleet.Fleet`).

Threads and who owns what:

- the socket thread (the caller of :meth:`Server.serve`) owns the ROUTER socket: it
  parses and validates requests, answers bad ones and pings at once, admits the rest
  (or answers "busy", :mod:`engine.serving.admission`), and forwards every reply that
  comes back over an inproc PULL socket (:mod:`engine.serving.zmq_replies`). It never
  decodes or runs the model, so it stays responsive.
- ``workers`` preprocessing threads decode the payload and run the fused resize/crop/
  normalize kernel (both release the GIL), then hand the tensor to the batcher.
- one thread per instance of each model version takes due batches from its batcher,
  runs the backend and softmax/top-k, and pushes the packed replies. When a worker's
  item makes a batch due while an instance is idle, the worker runs that batch itself
  (one thread hand-off fewer at low load). Both run :mod:`engine.serving.execution`.
- at low load (nothing else in flight, no queue delay) a request whose estimated service
  time is below ``inline_max_us`` runs on the socket thread itself, start to finish: two
  thread wake-ups fewer on the latency path (see :mod:`engine.serving.service_time`).

Every admitted request produces exactly one reply on the PUSH/PULL path, which is how
the socket thread counts requests in flight.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from functools import partial

import zmq

from engine.serving import protocol
from engine.serving.admission import Admission, Busy
from engine.serving.deployment import Draining
from engine.serving.execution import worker_loop
from engine.serving.fleet import Fleet, ModelNotFound
from engine.serving.jobs import Job, Limits
from engine.serving.metrics import ServingMetrics
from engine.serving.tally import Tally
from engine.serving.zmq_replies import REPLIES_ENDPOINT, push_socket, read_status, reply_frames

POLL_MS = 50
ROUTER_BURST = 256  # requests read per loop turn before replies are forwarded
ZEROMQ = "zeromq"


class Server:
    """Serve on an already bound ROUTER ``socket`` until :meth:`stop`; :attr:`fleet` (set before
    :meth:`serve`) holds the models, whose instance threads run :meth:`run_instance`."""

    def __init__(self, socket: zmq.Socket, *, fleet: Fleet | None = None, workers: int = 2,
                 limits: Limits | None = None, drain_timeout_s: float = 30.0, inline_max_us: float = 1000.0,
                 log=None):
        if workers < 1:
            raise ValueError(f"workers {workers}: must be >= 1")
        self.fleet = fleet
        self.router = socket
        self.limits = limits or Limits()
        self.drain_timeout_s = drain_timeout_s
        self.inline_max_us = inline_max_us
        self.log = log or (lambda msg: print(f"engine.serve: {msg}", file=sys.stderr, flush=True))
        self.context = socket.context
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)  # replies to vanished peers are dropped
        self.router.setsockopt(zmq.LINGER, 2000)
        self.pull = self.context.socket(zmq.PULL)
        self.pull.bind(REPLIES_ENDPOINT)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()  # admitted jobs for the workers; None stops one
        self.admission = Admission(self.limits)
        self.tally = Tally()
        self.metrics = ServingMetrics(lambda: self.fleet.deployments(), self.jobs.qsize)
        self._stop = threading.Event()
        self._workers = [
            threading.Thread(target=self.run_instance, args=(partial(worker_loop, self.jobs),),
                             name=f"preprocess-{i}", daemon=True)
            for i in range(workers)
        ]

    def attach(self, make_fleet) -> Fleet:
        """Set :attr:`fleet` to ``make_fleet(self.run_instance)``; if that raises, close what
        :meth:`serve` would have closed (the reply socket), so the ZeroMQ context can end."""
        try:
            self.fleet = make_fleet(self.run_instance)
        except BaseException:
            self.pull.close(linger=0)
            raise
        return self.fleet

    def close(self) -> None:
        """Release what :meth:`serve` releases when it ends (the models' threads and sessions, the
        reply socket) for a server that never served, e.g. when a front end could not bind."""
        if self.pull.closed:
            return
        if self.fleet is not None:
            self.fleet.close()
        self.pull.close(linger=0)

    def stop(self) -> None:
        """Ask :meth:`serve` to drain in-flight requests and return (safe from signal handlers)."""
        self._stop.set()

    def serve(self) -> None:
        for thread in self._workers:
            thread.start()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        drain_deadline = None
        try:
            while True:
                if self._stop.is_set() and drain_deadline is None:
                    drain_deadline = time.monotonic() + self.drain_timeout_s
                    for deployment in self.fleet.deployments():
                        deployment.batcher.drain()
                    self.log(f"stopping: draining {self.admission.in_flight()} requests in flight")
                if drain_deadline is not None:
                    if not self.admission.in_flight():
                        break
                    if time.monotonic() > drain_deadline:
                        self.log(f"drain timed out with {self.admission.in_flight()} requests unanswered")
                        break
                events = dict(poller.poll(POLL_MS))
                if self.pull in events:
                    self._forward_replies()
                if self.router in events:
                    self._read_requests()
        finally:
            self._shutdown()

    def stats(self) -> dict:
        """Requests of every front end (totals, and ``fronts`` per front end), in flight, queued, batches."""
        deployments = self.fleet.deployments()
        sizes: dict[str, int] = {}
        for deployment in deployments:
            for size, count in deployment.stats.batch_sizes().items():
                sizes[str(size)] = sizes.get(str(size), 0) + count
        return {
            **self.tally.totals(),
            "in_flight": self.admission.in_flight(),
            "queue_depth": self.jobs.qsize() + sum(d.batcher.depth() for d in deployments),
            "batch_sizes": dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
            "fronts": self.tally.by_front(),
        }

    # ---- replies -------------------------------------------------------------------
    def _forward_replies(self) -> None:
        while True:
            try:
                frames = self.pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._deliver(frames)

    def _deliver(self, frames: list) -> None:
        """Send one reply made by :func:`reply_frames` and retire its request."""
        seq, ok = read_status(frames[0])
        self.admission.retire(seq)
        self.tally.add(ZEROMQ, "served" if ok else "errors")
        self.router.send_multipart(frames[1:])

    def _reply(self, envelope: list, reply: bytes) -> None:
        self.router.send_multipart([*envelope, reply])

    def _finish(self, outcome) -> list | None:
        """Count ``outcome`` for its model; the ZeroMQ reply frames, or None once handed to a KServe front."""
        job = outcome.job
        deployment = job.deployment
        if job.respond is None:
            t_output = time.perf_counter()
            frames = reply_frames(outcome, deployment.model.class_names)
            deployment.stats.record_request([outcome], job.t_recv, t_output)
            deployment.release()
            return frames
        deployment.release()
        self.admission.retire(job.seq)
        job.respond(outcome)
        return None

    def run_instance(self, loop) -> None:
        """Run a worker or instance ``loop`` that sends ZeroMQ outcomes over its own PUSH socket."""
        push = push_socket(self.context)

        def send(outcome):
            frames = self._finish(outcome)
            if frames is not None:
                push.send_multipart(frames)

        try:
            loop(send)
        finally:
            push.close()

    def submit(self, jobs: list[Job]) -> None:
        """Queue jobs admitted by another front end (``respond`` set) for the workers."""
        for job in jobs:
            self.jobs.put(job)

    def stopping(self) -> bool:
        return self._stop.is_set()

    # ---- requests ------------------------------------------------------------------
    def _read_requests(self) -> None:
        for _ in range(ROUTER_BURST):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            t_recv = time.perf_counter()
            envelope, body = protocol.split_envelope(frames)
            envelope = [frame.bytes for frame in envelope]
            self.tally.add(ZEROMQ, "requests")
            try:
                if len(body) == 1:
                    self._reply(envelope, self._control(body[0]))
                else:
                    self._admit(envelope, body, t_recv)
            except protocol.ProtocolError as e:
                self.tally.add(ZEROMQ, "errors")
                self._reply(envelope, protocol.error_reply(e.request_id, str(e)))
            except Exception as e:  # a bug must cost one request, not the server
                self.tally.add(ZEROMQ, "errors")
                self.log(f"internal error on a request: {type(e).__name__}: {e}")
                self._reply(envelope, protocol.error_reply(None, f"internal server error ({type(e).__name__})"))

    def _control(self, frame) -> bytes:
        message = protocol.unpack_map(frame.buffer, "control message")
        op = message.get("op")
        if op != "ping":
            raise protocol.ProtocolError(
                f"single-frame message: op {op!r} is not a known control op ('ping'); "
                "a classification request has 2 frames [header, payload]",
                message.get("id") if isinstance(message.get("id"), protocol.SCALAR_TYPES) else None,
            )
        names = sorted({d.name for d in self.fleet.deployments()})
        return protocol.pong_reply(names[0] if len(names) == 1 else names, self.stats())

    def _admit(self, envelope: list, body: list, t_recv: float) -> None:
        limits, found = self.limits, []

        def classes_of(model, version):
            try:
                found.append(self.fleet.resolve(model, version))
            except ModelNotFound as e:
                raise protocol.ProtocolError(str(e)) from None
            return found[0].model.num_classes

        try:
            request = protocol.parse_request(
                [body[0].buffer, body[1].buffer] if len(body) == 2 else body,
                classes_of=classes_of, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels,
            )
            if self._stop.is_set():
                raise protocol.ProtocolError("server is shutting down", request.id)
            try:
                deployment = self.fleet.acquire(found[0], 1)
            except Draining as e:
                raise protocol.ProtocolError(str(e), request.id) from None
            if request.topk > deployment.model.num_classes:  # reloaded since resolved, with fewer classes
                deployment.release()
                raise protocol.ProtocolError(f"header: topk {request.topk} must be an integer in "
                                             f"1..{deployment.model.num_classes}", request.id)
        except protocol.ProtocolError:
            if found:
                found[0].stats.record_refused()
            raise
        try:
            seq = self.admission.admit(len(request.payload))
        except Busy as e:
            deployment.release()
            deployment.stats.record_refused()
            self.tally.add(ZEROMQ, "busy")
            raise protocol.ProtocolError(str(e), request.id) from None
        job = Job(seq, request, t_recv, envelope, deployment=deployment)
        if not self._serve_inline(job):
            self.jobs.put(job)

    def _serve_inline(self, job: Job) -> bool:
        """Answer ``job`` on this thread if the server is idle and the job is short.

        Only without a queue delay: then an idle server's batch of one is due at once
        either way, so running it here keeps the batching semantics.
        """
        executor = job.deployment.executor
        if self.admission.in_flight() != 1 or executor.batcher.max_delay_s > 0:
            return False
        estimate = executor.service_times.estimate_us(job.request.encoding, len(job.request.payload))
        if estimate is None or estimate > self.inline_max_us:
            return False
        instance = executor.batcher.try_claim()
        if instance is None:
            return False
        self.tally.add(ZEROMQ, "inline")

        def send(outcome):
            self._deliver(self._finish(outcome))

        ready = executor.prepare(job, send)
        if ready is None:
            executor.batcher.release(instance)
        else:
            executor.run_batch([ready], instance, send)
        return True

    def _shutdown(self) -> None:
        for _ in self._workers:
            self.jobs.put(None)
        for thread in self._workers:
            thread.join(timeout=10)
        self.fleet.close()
        self._forward_replies()
        self.pull.close(linger=0)
