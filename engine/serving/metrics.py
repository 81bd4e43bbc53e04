"""Prometheus metrics under Triton's names, so dashboards built for Triton read this server.

Every outcome of every front end is recorded (success or failure, and for a success its
queue, preprocessing ("compute input"), inference and total durations, cumulative in
microseconds as Triton keeps them); requests refused before admission (malformed, busy)
count as failures. "Compute output" is what turning outcomes into a reply costs: the KServe
output tensor (probabilities or classification strings), or a ZeroMQ reply's packing.
The batch-size histogram, the batch count and the queue depth are read from the executor
when Prometheus scrapes, so the hot path does not pay for them.

Triton's counters carry no ``_total`` suffix; prometheus-client's ``Counter`` would add
one, so the samples are written as :class:`prometheus_client.core.Metric` s of type counter.
"""
from __future__ import annotations

import collections
import threading
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from engine.serving.jobs import Outcome

MODEL_VERSION = "1"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_DURATIONS = {  # Triton's name -> the outcome's timing key
    "nv_inference_request_duration_us": "total",
    "nv_inference_queue_duration_us": "queue",
    "nv_inference_compute_input_duration_us": "preprocess",
    "nv_inference_compute_infer_duration_us": "infer",
}
OUTPUT_DURATION = "nv_inference_compute_output_duration_us"
_HELP = {
    "nv_inference_request_success": "Number of successful inference requests",
    "nv_inference_request_failure": "Number of failed inference requests",
    "nv_inference_count": "Number of inferences performed (one per image)",
    "nv_inference_exec_count": "Number of model executions (batches)",
    **{name: f"Cumulative {key} duration in microseconds" for name, key in _DURATIONS.items()},
    OUTPUT_DURATION: "Cumulative output (reply shaping) duration in microseconds",
}


class ServingMetrics:
    def __init__(self, model: str, executor, admission):
        self.labels = {"model": model, "version": MODEL_VERSION}
        self.executor = executor
        self.admission = admission
        self._lock = threading.Lock()
        self._totals = collections.Counter()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            if not outcome.ok:
                self._totals["nv_inference_request_failure"] += 1
                return
            self._totals["nv_inference_request_success"] += 1
            self._totals["nv_inference_count"] += 1
            for name, key in _DURATIONS.items():
                self._totals[name] += outcome.timing_us[key]

    def record_output(self, t_start: float) -> None:
        """A reply was shaped from ``t_start`` (``time.perf_counter()``) until now."""
        elapsed_us = (time.perf_counter() - t_start) * 1e6
        with self._lock:
            self._totals[OUTPUT_DURATION] += elapsed_us

    def record_refused(self) -> None:
        """A request answered with an error before it was admitted."""
        with self._lock:
            self._totals["nv_inference_request_failure"] += 1

    def collect(self):
        """Called by the registry at scrape time."""
        sizes = {int(size): count for size, count in self.executor.batch_sizes().items()}
        with self._lock:
            totals = dict(self._totals)
        totals["nv_inference_exec_count"] = sum(sizes.values())
        for name, help_text in _HELP.items():
            yield self._one(name, help_text, "counter", totals.get(name, 0))
        yield self._one("nv_inference_pending_request_count", "Requests admitted and not yet answered",
                        "gauge", self.admission.in_flight())
        yield self._one("engine_queue_depth", "Requests waiting for a worker or a batch", "gauge",
                        self.executor.queue_depth())
        histogram = Metric("engine_batch_size", "Images per model execution", "histogram")
        running = 0
        for size in sorted(sizes):
            running += sizes[size]
            histogram.add_sample("engine_batch_size_bucket", {**self.labels, "le": str(float(size))}, running)
        histogram.add_sample("engine_batch_size_bucket", {**self.labels, "le": "+Inf"}, running)
        histogram.add_sample("engine_batch_size_count", self.labels, running)
        histogram.add_sample("engine_batch_size_sum", self.labels, sum(s * c for s, c in sizes.items()))
        yield histogram

    def _one(self, name: str, help_text: str, kind: str, value: float) -> Metric:
        metric = Metric(name, help_text, kind)
        metric.add_sample(name, self.labels, value)
        return metric

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
