"""Which devices this machine offers, and what ``--device auto|cpu|cuda`` resolves to."""
from __future__ import annotations

import functools
import importlib.util
import os
import platform

DEVICES = ("auto", "cpu", "cuda")


@functools.cache
def torch_cuda_available() -> bool:
    """True when torch is installed and sees a usable CUDA GPU."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


@functools.cache
def ort_providers() -> tuple[str, ...]:
    import onnxruntime

    return tuple(onnxruntime.get_available_providers())


def _nvidia_gpu_present() -> bool:
    """A GPU driven by the NVIDIA driver is present (without importing torch)."""
    gpus = "/proc/driver/nvidia/gpus"
    return os.path.isdir(gpus) and bool(os.listdir(gpus))


@functools.cache
def ort_cuda_available() -> bool:
    """onnxruntime-gpu is installed and there is a GPU for its CUDA provider."""
    return "CUDAExecutionProvider" in ort_providers() and (
        _nvidia_gpu_present() or torch_cuda_available()
    )


def available_devices(kind: str | None = None) -> list[str]:
    """``["cpu"]`` or ``["cpu", "cuda"]``; with ``kind`` ("ort"/"openvino"/"torch"), for that runtime."""
    if kind == "openvino":  # OpenVINO's CPU plugin only: its GPU plugin is for Intel GPUs
        return ["cpu"]
    if kind == "ort":
        cuda = ort_cuda_available()
    elif kind == "torch":
        cuda = torch_cuda_available()
    elif kind is None:
        cuda = ort_cuda_available() or torch_cuda_available()
    else:
        raise ValueError(f"backend kind {kind!r}: expected 'ort', 'openvino' or 'torch'")
    return ["cpu", "cuda"] if cuda else ["cpu"]


def resolve_device(device: str, kind: str | None = None) -> str:
    """``auto`` -> the best device present; ``cuda`` without a usable GPU -> RuntimeError.

    ``cuda:N`` is accepted and kept as given (the index selects the GPU).
    """
    base, _, index = device.partition(":")
    if base not in DEVICES or (index and (base != "cuda" or not index.isdigit())):
        raise ValueError(f"device {device!r}: expected one of auto, cpu, cuda, cuda:N")
    if base == "cpu":
        return device
    present = available_devices(kind)
    if base == "auto":
        return "cuda" if "cuda" in present else "cpu"
    if base == "cuda" and "cuda" not in present:
        if kind == "openvino":
            raise RuntimeError(f"device {device!r}: the openvino backend runs on the CPU (use --device cpu)")
        runtime = {"ort": "onnxruntime", "torch": "torch"}.get(kind, "onnxruntime or torch")
        raise RuntimeError(
            f"device {device!r}: no usable CUDA GPU for {runtime} on this machine "
            "(onnxruntime needs the onnxruntime-gpu package and an NVIDIA driver, torch a "
            "CUDA build; use --device cpu or --device auto)"
        )
    return device


@functools.cache
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
