"""One model version loaded and serving: its model, batcher, instance threads and statistics.

The preprocessing workers and the admission bound belong to the server and are shared by
every deployment; a deployment owns what is per model: the dynamic batcher, one thread per
instance (an onnxruntime or torch session each), its statistics, and a count of its images
in flight. :meth:`retire` drains: it refuses new requests, waits until the images in flight
are answered, then stops the instance threads and closes the sessions.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from engine.serving.batcher import DynamicBatcher
from engine.serving.execution import Executor
from engine.serving.jobs import Instance, Limits
from engine.serving.model import ServedModel
from engine.serving.stats import ModelStats


class Draining(Exception):
    """The model version is being unloaded: requests get UNAVAILABLE."""


@dataclass(frozen=True)
class Batching:
    """A deployment's batcher and instances, as its config (or the server's flags) set them."""

    max_batch: int
    max_queue_delay_us: int
    instances: int


class Deployment:
    def __init__(self, name: str, version: str, model: ServedModel, batching: Batching, limits: Limits):
        self.name = name
        self.version = version
        self.model = model
        self.batching = batching
        instances = [Instance(backend, np.empty((batching.max_batch, *model.input_shape), np.float32))
                     for backend in model.backends]
        self.batcher = DynamicBatcher(batching.max_batch, batching.max_queue_delay_us / 1e6, instances)
        self.stats = ModelStats()
        self.executor = Executor(model, self.batcher, limits, self.stats)
        self._lock = threading.Condition()
        self._in_flight = 0
        self._draining = False
        self._threads: list[threading.Thread] = []

    def labels(self) -> dict:
        return {"model": self.name, "version": self.version}

    def start(self, run_instance) -> None:
        """Start one thread per instance, each running ``run_instance(executor.instance_loop)``."""
        self._threads = [threading.Thread(target=run_instance, args=(self.executor.instance_loop,),
                                          name=f"instance-{self.name}-{self.version}-{i}", daemon=True)
                         for i in range(len(self.model.backends))]
        for thread in self._threads:
            thread.start()

    def acquire(self, images: int) -> None:
        """Count ``images`` in flight, or raise :class:`Draining`."""
        with self._lock:
            if self._draining:
                raise Draining(f"model {self.name!r} version {self.version} is being unloaded")
            self._in_flight += images

    def release(self, images: int = 1) -> None:
        with self._lock:
            self._in_flight -= images
            if not self._in_flight:
                self._lock.notify_all()

    def in_flight(self) -> int:
        return self._in_flight

    def draining(self) -> bool:
        return self._draining

    def retire(self, timeout_s: float) -> bool:
        """Drain, then stop the instance threads and close the sessions; False if the drain timed out."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._draining = True
            self.batcher.drain()
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            drained = not self._in_flight
        self.batcher.close()
        for thread in self._threads:
            thread.join(timeout=10)
        self.model.close()
        return drained
