"""Prometheus metrics under Triton's names, so dashboards built for Triton read this server.

Every series carries ``model`` and ``version`` labels, one set per model version loaded, read
at scrape time from each version's :class:`~engine.serving.stats.ModelStats` (the numbers the
statistics extension reports): request success and failure counts, images inferred, batches
run, and cumulative queue, compute input (decode + preprocessing), compute infer, compute
output (reply shaping) and request durations in microseconds, as Triton keeps them. Gauges:
requests pending per model, items waiting for a batch per model, and jobs waiting for a
preprocessing worker (shared by every model, so unlabelled).

Triton's counters carry no ``_total`` suffix; prometheus-client's ``Counter`` would add
one, so the samples are written as :class:`prometheus_client.core.Metric` s of type counter.
prometheus-client (the serve extra) is imported at the first scrape, which only the HTTP
front (``--http``, the same extra) makes: a ZeroMQ-only server runs on the core install.
"""
from __future__ import annotations

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_DURATIONS = {  # Triton's name -> the statistics kind(s) it sums
    "nv_inference_request_duration_us": ("success", "fail"),
    "nv_inference_queue_duration_us": ("queue",),
    "nv_inference_compute_input_duration_us": ("compute_input",),
    "nv_inference_compute_infer_duration_us": ("compute_infer",),
    "nv_inference_compute_output_duration_us": ("compute_output",),
}


class ServingMetrics:
    """``deployments()``: the loaded model versions; ``jobs_waiting()``: the shared workers' queue."""

    def __init__(self, deployments, jobs_waiting):
        self.deployments = deployments
        self.jobs_waiting = jobs_waiting
        self.registry = None  # made at the first scrape

    def collect(self):
        """Called by the registry at scrape time."""
        from prometheus_client.core import Metric

        rows = [(dep.labels(), dep.stats.triton(dep.name, dep.version), dep) for dep in self.deployments()]
        counters = {
            "nv_inference_request_success": ("Number of successful inference requests",
                                             lambda s: s["inference_stats"]["success"]["count"]),
            "nv_inference_request_failure": ("Number of failed inference requests",
                                             lambda s: s["inference_stats"]["fail"]["count"]),
            "nv_inference_count": ("Number of inferences performed (one per image)", lambda s: s["inference_count"]),
            "nv_inference_exec_count": ("Number of model executions (batches)", lambda s: s["execution_count"]),
        }
        for name, kinds in _DURATIONS.items():
            counters[name] = (f"Cumulative {'+'.join(kinds)} duration in microseconds",
                              lambda s, kinds=kinds: sum(s["inference_stats"][k]["ns"] for k in kinds) / 1000)
        for name, (help_text, value) in counters.items():
            metric = Metric(name, help_text, "counter")
            for labels, stats, _ in rows:
                metric.add_sample(name, labels, value(stats))
            yield metric
        pending = Metric("nv_inference_pending_request_count", "Requests admitted and not yet answered", "gauge")
        depth = Metric("engine_queue_depth", "Preprocessed images waiting for a batch", "gauge")
        for labels, _, dep in rows:
            pending.add_sample(pending.name, labels, dep.in_flight())
            depth.add_sample(depth.name, labels, dep.batcher.depth())
        yield pending
        yield depth
        waiting = Metric("engine_preprocess_queue_depth", "Jobs waiting for a preprocessing worker (all models)",
                         "gauge")
        waiting.add_sample(waiting.name, {}, self.jobs_waiting())
        yield waiting
        yield self._histogram(rows)

    @staticmethod
    def _histogram(rows):
        from prometheus_client.core import Metric

        histogram = Metric("engine_batch_size", "Images per model execution", "histogram")
        for labels, stats, _ in rows:  # the same snapshot as the counters
            sizes = {row["batch_size"]: row["compute_infer"]["count"] for row in stats["batch_stats"]}
            running = 0
            for size in sorted(sizes):
                running += sizes[size]
                histogram.add_sample("engine_batch_size_bucket", {**labels, "le": str(float(size))}, running)
            histogram.add_sample("engine_batch_size_bucket", {**labels, "le": "+Inf"}, running)
            histogram.add_sample("engine_batch_size_count", labels, running)
            histogram.add_sample("engine_batch_size_sum", labels, sum(s * c for s, c in sizes.items()))
        return histogram

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self.registry is None:  # two first scrapes at once make two registries; one is kept
            registry = CollectorRegistry()
            registry.register(self)
            self.registry = registry
        return generate_latest(self.registry)
