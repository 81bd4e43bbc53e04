"""Recent service times, to tell which requests are cheap enough to run on the socket thread.

At low load the server can answer a request on its socket thread instead of handing it
to a preprocessing worker and taking the reply back: that saves two thread wake-ups,
a large share of a sub-millisecond request (docs/ has the measurement). A long request
must not run there, since the socket thread reads nothing while it works, so the server
asks for an estimate first:

- inference: the median of the model's recent batch-of-one times;
- preprocessing: the median of recent times for the request's encoding, scaled up by
  how much larger the payload is than the median recent payload of that encoding (never
  scaled down: small images are upscaled to the crop and cost about the same). A stream
  of same-size frames gets its typical time; a much larger image is estimated large.

Medians, so that a cold first request or a descheduled one does not decide. With no
measurement yet there is no estimate and the request takes the worker path, which
measures it. Several threads record without a lock: deque appends are atomic.
"""
from __future__ import annotations

import collections
import statistics

WINDOW = 16  # recent samples kept per series


def _series() -> collections.deque:
    return collections.deque(maxlen=WINDOW)


class ServiceTimes:
    def __init__(self):
        self._infer_us = _series()
        self._preprocess = collections.defaultdict(_series)  # encoding -> (us, bytes) samples

    def record_preprocess(self, encoding: str, nbytes: int, us: float) -> None:
        self._preprocess[encoding].append((us, nbytes))

    def record_infer(self, us: float) -> None:
        """Record the model's time for a batch of one."""
        self._infer_us.append(us)

    def estimate_us(self, encoding: str, nbytes: int) -> float | None:
        """Expected preprocess + batch-of-one inference time, or None before both were measured."""
        samples = list(self._preprocess.get(encoding, ()))
        infer = list(self._infer_us)
        if not samples or not infer:
            return None
        typical_us = statistics.median(us for us, _ in samples)
        typical_bytes = statistics.median(size for _, size in samples)
        return typical_us * max(1.0, nbytes / max(typical_bytes, 1)) + statistics.median(infer)
