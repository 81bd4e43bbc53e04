"""The work behind a request: decode and preprocess it, batch it, run the model, rank classes.

Every admitted job ends in exactly one :class:`Outcome`, handed to ``send`` on the thread
that made it: preprocessing failures on the worker, inference failures for each job of
the batch, results per job. Workers and instances call in here; the front ends (ZeroMQ,
HTTP, gRPC) only admit jobs and turn outcomes into replies.
"""
from __future__ import annotations

import queue
import time

import numpy as np

from engine.data.decode import DecodeError
from engine.data.fast_decode import Draft
from engine.serving.batcher import DynamicBatcher
from engine.serving.jobs import Job, Limits, Outcome, Ready
from engine.serving.model import ServedModel
from engine.serving.payload import decode_payload
from engine.serving.service_time import ServiceTimes
from engine.serving.stats import ModelStats


def worker_loop(jobs: queue.SimpleQueue, send) -> None:
    """A preprocessing thread shared by every model: take jobs until a None; each job's model
    version (``job.deployment``) preprocesses and batches it, and a batch its item makes due
    runs here at once."""
    while (job := jobs.get()) is not None:
        executor = job.deployment.executor
        ready = executor.prepare(job, send)
        if ready is None:
            continue
        claimed = executor.batcher.put(ready, ready_time=ready.t_pre_end)
        if claimed is not None:
            executor.run_batch(*claimed, send)


class Executor:
    """Preprocess, batch and infer for one model version; shared by every thread of one server."""

    def __init__(self, model: ServedModel, batcher: DynamicBatcher, limits: Limits, stats: ModelStats):
        self.model = model
        self.batcher = batcher
        self.limits = limits
        self.stats = stats
        self.service_times = ServiceTimes()
        self.draft = Draft.for_resize(model.config.resize) if limits.fast_decode else None

    def prepare(self, job: Job, send) -> Ready | None:
        """Decode and preprocess ``job``; on failure ``send`` its error outcome and return None."""
        t_start = time.perf_counter()
        request = job.request
        try:
            image = decode_payload(request, max_pixels=self.limits.max_pixels, draft=self.draft)
            tensor = np.empty(self.model.input_shape, np.float32)
            self.model.preprocess(image, tensor)
        except DecodeError as e:
            send(Outcome(job, error=str(e)))
            return None
        except Exception as e:  # a kernel failure must not kill the thread
            send(Outcome(job, error=f"preprocessing failed ({type(e).__name__}: {e})"))
            return None
        t_end = time.perf_counter()
        self.service_times.record_preprocess(request.encoding, len(request.payload), (t_end - t_start) * 1e6)
        return Ready(job, tensor, t_start, t_end)

    def instance_loop(self, send) -> None:
        """An instance thread: run due batches until the batcher closes."""
        while (claimed := self.batcher.next_batch()) is not None:
            self.run_batch(*claimed, send)

    def run_batch(self, items: list, instance, send) -> None:
        """Run one batch on ``instance``, hand the instance back, then ``send`` an outcome per
        item: released first, so a client that answers its reply at once finds the server
        idle (and can be served inline)."""
        try:
            outcomes = self._answer_batch(items, instance)
        finally:
            self.batcher.release(instance)
        for outcome in outcomes:
            send(outcome)

    def _answer_batch(self, items: list, instance) -> list[Outcome]:
        t_start = time.perf_counter()
        n = len(items)
        if n == 1:
            batch = items[0].tensor[None]
        else:
            batch = instance.batch[:n]
            for i, item in enumerate(items):
                batch[i] = item.tensor
        try:
            t_run = time.perf_counter()
            scores = instance.backend.run(batch)[0]
            t_rank = time.perf_counter()
            indices, probs = self.model.topk(scores, max(item.job.request.topk for item in items))
        except Exception as e:  # answer the whole batch, keep serving
            return [Outcome(item.job, error=f"inference failed ({type(e).__name__}: {e})", server_fault=True)
                    for item in items]
        t_end = time.perf_counter()
        self.stats.record_batch(n, (t_run - t_start) * 1e9, (t_rank - t_run) * 1e9, (t_end - t_rank) * 1e9)
        infer_us = (t_end - t_start) * 1e6
        if n == 1:
            self.service_times.record_infer(infer_us)
        return [_outcome(item, scores[i], indices[i], probs[i], infer_us, t_start) for i, item in enumerate(items)]


def _outcome(item: Ready, scores, indices, probs, infer_us: float, t_batch: float) -> Outcome:
    job = item.job
    if indices[0] < 0:
        return Outcome(job, error="the model produced non-finite scores (NaN or inf) for this input")
    k = job.request.topk
    now = time.perf_counter()
    timing = {
        "queue": round(((item.t_pre_start - job.t_recv) + (t_batch - item.t_pre_end)) * 1e6, 1),
        "preprocess": round((item.t_pre_end - item.t_pre_start) * 1e6, 1),
        "infer": round(infer_us, 1),
        "total": round((now - job.t_recv) * 1e6, 1),
    }
    return Outcome(job, scores=scores, indices=indices[:k], probs=probs[:k], timing_us=timing)
