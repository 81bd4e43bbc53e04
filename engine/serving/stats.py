"""Per model version statistics in Triton's terms: what the statistics extension and /metrics report.

Counted as Triton does:

- ``success`` / ``fail``: requests (a ZeroMQ request, a KServe request of N images), with
  their cumulative duration from receipt to reply; a request refused before it was queued
  (malformed, busy) counts as a failure of the model it named.
- ``queue``, ``compute_input`` (decode + the preprocessing kernel), ``compute_infer`` (the
  batch's run, as each image saw it) and ``compute_output`` (shaping the reply: ZeroMQ
  packing, the KServe output tensor): one count per image of a successful request,
  cumulative nanoseconds, all counted when the request is answered.
- ``inference_count`` (images) and ``execution_count`` (batches run), and per batch size the
  batch's input assembly, run and top-k times (``batch_stats``).

One lock guards the counts; every front end's threads record into the same object.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from engine.serving.jobs import Outcome

_US_TO_NS = 1000


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(ns)

    def as_dict(self) -> dict:
        return {"count": self.count, "ns": self.ns}


@dataclass
class BatchStat:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


_REQUEST_KINDS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


class ModelStats:
    def __init__(self):
        self._lock = threading.Lock()
        self.durations = {kind: Duration() for kind in _REQUEST_KINDS}
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.batches: dict[int, BatchStat] = {}

    def record_request(self, outcomes: list[Outcome], t_recv: float, t_output: float | None = None) -> None:
        """A request answered, from its images' ``outcomes``: ok when all are, its duration since
        ``t_recv``, reply shaping since ``t_output``. Everything is counted at once, under the lock,
        so a reader never sees one kind of count ahead of another (perf_analyzer checks them equal)."""
        now = time.perf_counter()
        ok = all(outcome.ok for outcome in outcomes)
        with self._lock:
            self.durations["success" if ok else "fail"].add((now - t_recv) * 1e9)
            if not ok:
                return
            self.last_inference_ms = int(time.time() * 1000)
            self.inference_count += len(outcomes)
            for outcome in outcomes:
                timing = outcome.timing_us
                self.durations["queue"].add(timing["queue"] * _US_TO_NS)
                self.durations["compute_input"].add(timing["preprocess"] * _US_TO_NS)
                self.durations["compute_infer"].add(timing["infer"] * _US_TO_NS)
            self.durations["compute_output"].add((now - (t_output or now)) * 1e9, len(outcomes))

    def record_refused(self) -> None:
        with self._lock:
            self.durations["fail"].add(0)

    def record_batch(self, size: int, input_ns: float, infer_ns: float, output_ns: float) -> None:
        with self._lock:
            self.execution_count += 1
            stat = self.batches.setdefault(size, BatchStat())
            stat.compute_input.add(input_ns)
            stat.compute_infer.add(infer_ns)
            stat.compute_output.add(output_ns)

    def batch_sizes(self) -> dict[int, int]:
        with self._lock:
            return {size: stat.compute_infer.count for size, stat in sorted(self.batches.items())}

    def triton(self, name: str, version: str) -> dict:
        """One entry of Triton's ``model_stats`` (the JSON the HTTP extension answers, the gRPC
        ``ModelStatistics`` message's fields)."""
        with self._lock:
            inference = {kind: d.as_dict() for kind, d in self.durations.items()}
            inference["cache_hit"] = inference["cache_miss"] = {"count": 0, "ns": 0}
            return {
                "name": name, "version": version, "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count, "execution_count": self.execution_count,
                "inference_stats": inference,
                "batch_stats": [{"batch_size": size, "compute_input": stat.compute_input.as_dict(),
                                 "compute_infer": stat.compute_infer.as_dict(),
                                 "compute_output": stat.compute_output.as_dict()}
                                for size, stat in sorted(self.batches.items())],
            }
