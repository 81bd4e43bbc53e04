"""The records a request becomes on its way through the server, and the server's limits."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.serving import protocol


@dataclass
class Limits:
    """Per-request and in-flight bounds: what one client may send and what the server holds at once."""

    max_bytes: int = 64 * 2**20
    max_pixels: int = 40_000_000
    max_inflight: int = 64
    max_inflight_bytes: int = 1 << 30
    fast_decode: bool = False  # --fast-decode: JPEGs far above a model's resize target decoded at a reduced scale


@dataclass
class Job:
    """An admitted request: ``seq`` counts it in flight until its one reply is delivered.

    ``deployment`` is the model version it goes to. ``envelope`` holds a ZeroMQ request's
    routing frames; ``respond``, set by the HTTP and gRPC front ends, takes the job's
    :class:`Outcome` on the thread that made it instead.
    """

    seq: int
    request: protocol.Request
    t_recv: float
    envelope: list = field(default_factory=list)
    respond: object = None
    deployment: object = None


@dataclass
class Instance:
    """A backend session and the batch buffer it runs from."""

    backend: object
    batch: np.ndarray


@dataclass
class Ready:
    """A preprocessed job waiting for its batch."""

    job: Job
    tensor: np.ndarray
    t_pre_start: float
    t_pre_end: float


@dataclass
class Outcome:
    """What became of one job: an error message, or its model output row and best classes."""

    job: Job
    error: str | None = None
    scores: np.ndarray | None = None  # the model's output row for this job
    indices: np.ndarray | None = None  # best classes first
    probs: np.ndarray | None = None
    timing_us: dict | None = None
    server_fault: bool = False  # the error is the server's (inference failed), not the input's

    @property
    def ok(self) -> bool:
        return self.error is None
