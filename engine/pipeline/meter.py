"""The run's clock and stopwatch: when timing starts (after the warm-up), which work falls
inside the timed window, and the stage durations and latencies kept once it runs, and the broker's own CPU time.

Owned by the broker's thread; the broker tells it what finished and when.
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np


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


class StageTimes:
    """Summed microseconds and item counts per pipeline stage, for per-item means."""

    def __init__(self):
        self.total_us: Counter = Counter()
        self.items: Counter = Counter()

    def add(self, stage: str, total_us: float, items: int) -> None:
        self.total_us[stage] += total_us
        self.items[stage] += items

    def mean(self, stage: str) -> float | None:
        return self.total_us[stage] / self.items[stage] if self.items[stage] else None


class Meter:
    """Counts finished items, starts the clock once ``warmup`` of them are through and
    keeps one ``(started, done, items)`` span per device batch or failed item."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.finished = 0
        self.failed = 0
        self.stages = StageTimes()
        self.e2e_us: list[np.ndarray] = []  # per item, one array per batch
        self.batch_us: list[int] = []  # the model's time per batch
        self.batch_sizes: Counter = Counter()
        self.cpu_s = 0.0  # the broker process's CPU time over the run (every thread of it)
        self.cpu_before_s = 0.0  # ... before it: imports, reading the datalist, starting the workers
        self.spans: list[tuple[float, float, int]] = []
        self.t_measure = 0.0
        self.t_end: float | None = None  # None while the run goes on
        self.measured_from = 0  # items finished when the clock started (0: from the start)

    @property
    def measuring(self) -> bool:
        """Whether the clock runs: per-item timings are kept only from then on."""
        return self.warmup == 0 or self.measured_from > 0

    @property
    def warmup_items(self) -> int:
        """Items finished before the clock started (batches may overshoot ``warmup``)."""
        return self.measured_from

    def start(self, now: float) -> None:
        """The run's start: the clock's start too, unless a warm-up comes first."""
        self.t_measure = now
        self.cpu_before_s = time.process_time()
        self.cpu_s = -self.cpu_before_s

    def stop(self, now: float) -> None:
        """Stops the clock; the first call counts (a run's clean-up stops it again, in case
        its loop did not get to)."""
        if self.t_end is not None:
            return
        self.t_end = now
        self.cpu_s += time.process_time()

    def batch(self, items: int, model_us: int) -> None:
        self.batch_us.append(model_us)
        self.batch_sizes[items] += 1

    def latencies(self, done: float, sent_at: list[float]) -> None:
        """End-to-end latencies of items sent to preprocessing at ``sent_at``, done at ``done``."""
        self.e2e_us.append((done - np.asarray(sent_at)) * 1e6)

    def span(self, started: float, done: float, items: int) -> None:
        self.spans.append((started, done, items))

    def finish(self, items: int, failed: int, at: float | None = None) -> None:
        """``items`` more finished, ``failed`` of them failed; the clock starts once the
        warm-up is through, at ``at`` (the completion that got it through, default now)."""
        self.finished += items
        self.failed += failed
        if not self.measuring and self.finished >= self.warmup:
            self.measured_from = self.finished
            self.t_measure = at or time.perf_counter()

    def timed_window(self, device_last_done: list[float]) -> tuple[float, float]:
        """The clock's start and end. After the run the end is the earliest last batch of
        the device instances that worked after the start (``device_last_done``: each
        instance's last completion): from then on some instance had no more work, and the
        others' last batches alone would read low."""
        stop = self.t_end or time.perf_counter()
        if self.t_end:
            lasts = [t for t in device_last_done if t > self.t_measure]
            if len(lasts) > 1:
                stop = min(lasts)
        return self.t_measure, stop

    @property
    def measured_items(self) -> int:
        return self.finished - self.measured_from

    def seconds(self, device_last_done: list[float]) -> float:
        """Seconds of the timed window (so far, while it runs)."""
        start, stop = self.timed_window(device_last_done)
        return max(1e-9, stop - start)

    def throughput(self, device_last_done: list[float]) -> float:
        """Items per second. After the run: the work inside the timed window, each batch
        counted for the share of its device time inside it (a batch already running when
        the clock started, or still running when it stopped, counts in part); counting
        such batches whole made short runs with several instances read up to a batch per
        instance high or low. While it runs: items finished over the time so far."""
        if not self.t_end:
            return self.measured_items / self.seconds(device_last_done)
        start, stop = self.timed_window(device_last_done)
        return work_in_window(self.spans, start, stop) / max(1e-9, stop - start)


class MeterReadings:
    """What engine.run, the progress bar and the report read off a run, the local broker's
    or the cluster driver's alike: both keep a ``meter`` and say when their device stages
    last finished work."""

    meter: Meter

    def device_last_done(self) -> list[float]:
        raise NotImplementedError

    @property
    def finished(self) -> int:
        return self.meter.finished

    @property
    def failed(self) -> int:
        return self.meter.failed

    @property
    def throughput(self) -> float:
        return self.meter.throughput(self.device_last_done())

    @property
    def measured_seconds(self) -> float:
        return self.meter.seconds(self.device_last_done())
