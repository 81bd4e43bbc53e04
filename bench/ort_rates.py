"""onnxruntime speed figures of several models, measured in alternating rounds.

On a machine shared with other work, timing one model after another lets a burst of
background load hit one side of a ratio only; taking turns lets it hit all of them.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine.backends import open_backend


def inference_rates(models: dict, batch: int, rounds: int, threads: int) -> dict:
    """Inference-only images/s of each model: sessions stay open and take turns, two runs
    per turn, and each model keeps its best turn (see :func:`alternate`)."""
    backends = {k: open_backend("ort", m, threads=threads) for k, m in models.items()}
    x = np.random.default_rng(0).standard_normal((batch, *next(iter(backends.values())).input_shape))
    x = x.astype(np.float32)
    for b in backends.values():
        b.run(x)

    def turn(backend) -> float:
        t0 = time.perf_counter()
        backend.run(x)
        backend.run(x)
        return 2 * batch / (time.perf_counter() - t0)

    rates = alternate(turn, backends, rounds)
    for b in backends.values():
        b.close()
    return rates


WEIGHTED_KERNELS = ("Conv", "FusedConv", "QLinearConv", "ConvInteger", "Gemm", "FusedGemm", "QGemm",
                    "MatMul", "FusedMatMul", "MatMulInteger", "QLinearMatMul")


def kernel_split(models: dict, batch: int, runs: int, folder: Path, threads: int) -> dict:
    """Per model, seconds per image in the convolution/matrix kernels and in all other
    kernels over ``runs`` batches (onnxruntime's profiler; the runs alternate between models)."""
    backends = {k: open_backend("ort", m, threads=threads, profile=folder / f"profile_{k}") for k, m in models.items()}
    x = np.random.default_rng(0).standard_normal((batch, *next(iter(backends.values())).input_shape))
    x = x.astype(np.float32)
    for _ in range(runs):
        for b in backends.values():
            b.run(x)
    split = {}
    for key, backend in backends.items():
        seconds = backend.kernel_seconds()
        weighted = sum(t for op, t in seconds.items() if op in WEIGHTED_KERNELS)
        split[key] = {"weighted": weighted / (runs * batch),
                      "other": (sum(seconds.values()) - weighted) / (runs * batch)}
        backend.close()
    return split


def alternate(measure, models: dict, rounds: int, pick=max) -> dict:
    """Best (``pick=max``) of ``rounds`` for each model, measured in turn so background
    load hits all. Interference only ever slows a short timed run down, so the best
    round is the least disturbed one; whole engine runs use the median (their clock
    starts after the warm-up items, and items already in flight then inflate a round).
    """
    seen = {k: [] for k in models}
    for _ in range(rounds):
        for key, model in models.items():
            seen[key].append(measure(model))
    return ({k: float(pick(v)) for k, v in seen.items()}
            | {f"{k}_rounds": [round(r, 2) for r in v] for k, v in seen.items()})
