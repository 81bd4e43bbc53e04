"""The one small interface every inference runtime sits behind.

A backend loads a model once, then runs float32 batches ``(N, 3, H, W)`` and returns one
float32 array per model output, each with the batch as its first axis. The pipeline's
device stage, the benchmarks, the build's accuracy check and the auto-tuner all talk to
runtimes through this class only.
"""
from __future__ import annotations

import abc

import numpy as np


def rss_mb() -> float:
    """This process's resident memory in MiB (a backend's footprint is the rise across its load)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class Backend(abc.ABC):
    """A loaded model on one device.

    Subclasses set ``name`` (``ort-cpu``, ``ort-cuda``, ``ort-tensorrt``, ``torch-cpu``,
    ``torch-cuda``), ``input_name``, ``output_names``, ``input_shape`` (``(C, H, W)``)
    and ``precision`` (``fp32``, ``fp16``, ``bf16``, ``int8``).
    """

    name: str
    input_name: str
    output_names: list[str]
    input_shape: tuple[int, int, int]
    precision: str

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run a float32 ``(N, C, H, W)`` batch; one float32 ``(N, ...)`` array per output."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """Device name, provider(s), threads, memory used (MB, None when unknown), precision."""

    def input_buffer(self, batch: int, dtype=np.float32) -> np.ndarray:
        """A ``(batch, C, H, W)`` array to gather batches into; a GPU backend gives
        page-locked memory, which its copy to the device reads directly."""
        return np.empty((batch, *self.input_shape), dtype)

    def warmup(self, batch_size: int, iterations: int = 2) -> None:
        """Run a few zero batches so allocation and kernel selection happen before timing."""
        if batch_size < 1:
            raise ValueError(f"warmup batch size {batch_size}: must be >= 1")
        batch = np.zeros((batch_size, *self.input_shape), np.float32)
        for _ in range(iterations):
            self.run(batch)

    def close(self) -> None:  # noqa: B027 - optional: a backend holding nothing keeps this default
        """Release the model and its memory; the backend cannot run afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """The batch as a C-contiguous float32 array, or a ValueError saying what is wrong."""
        if not isinstance(batch, np.ndarray):
            raise TypeError(f"{self.name}: batch must be a numpy array, got {type(batch).__name__}")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"{self.name}: batch shape {batch.shape} does not match the model input "
                f"(N, {', '.join(map(str, self.input_shape))})"
            )
        if batch.shape[0] < 1:
            raise ValueError(f"{self.name}: empty batch")
        if batch.dtype != np.float32:
            raise ValueError(f"{self.name}: batch dtype {batch.dtype}, expected float32")
        return np.ascontiguousarray(batch)


class FixedBatchBackend(Backend):
    """A backend whose model may have been exported with a fixed batch (the seed's export
    fixed it at 1): ``run`` feeds ``_run_exact`` chunks of ``fixed_batch`` items, the last
    one padded and the padding dropped. ``fixed_batch`` None (a dynamic batch), or equal to
    the batch: one call."""

    fixed_batch: int | None

    @abc.abstractmethod
    def _run_exact(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run a checked batch of exactly the size the model takes."""

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = self.check_batch(batch)
        n, step = batch.shape[0], self.fixed_batch
        if step is None or n == step:
            return self._run_exact(batch)
        parts = []
        for start in range(0, n, step):
            chunk = batch[start:start + step]
            if chunk.shape[0] < step:
                chunk = np.concatenate([chunk, np.zeros((step - chunk.shape[0], *batch.shape[1:]), batch.dtype)])
            parts.append(self._run_exact(chunk))
        return [np.concatenate([p[i] for p in parts])[:n] for i in range(len(self.output_names))]
