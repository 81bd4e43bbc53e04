"""The machine a benchmark ran on: absolute figures mean nothing without it."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess

import psutil

from engine.backends.devices import cpu_model

PACKAGES = ("numpy", "numba", "onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "Pillow",
            "Pillow-SIMD", "opencv-python-headless", "pyzmq")


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "neon", "asimd")


def load_note(cores: int) -> str:
    """The load average at the end of a run, for a suite whose client and server share ``cores``."""
    return f"Load average at the end of the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {cores} cores."


def simd_flags() -> list[str]:
    """The SIMD extensions the kernels and baselines (pillow-simd, int8) care about."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    present = set(value.split())
                    return [flag for flag in SIMD_FLAGS if flag in present]
    except OSError:
        pass
    return []


def gpus_from_nvidia_smi() -> list[dict] | None:
    """One dict per GPU, [] when nvidia-smi runs and lists none, None when it cannot run."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            memory = float(parts[1]) if parts[1].replace(".", "", 1).isdigit() else None
            gpus.append({"name": parts[0], "memory_mb": memory, "driver": parts[2]})
    return gpus


def gpus_from_torch() -> list[dict]:
    """GPUs torch sees; [] when torch is absent or sees none."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [{"name": torch.cuda.get_device_name(i),
             "memory_mb": torch.cuda.get_device_properties(i).total_memory / 2**20, "driver": None}
            for i in range(torch.cuda.device_count())]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine_info(probe_torch: bool = True) -> dict:
    """CPU model and cores, memory, GPUs, host, OS, Python and key package versions, date.

    GPUs come from nvidia-smi; where it is absent, from torch when ``probe_torch``
    (importing torch takes seconds, which a smoke run skips).
    """
    gpus = gpus_from_nvidia_smi()
    if gpus is None:
        gpus = gpus_from_torch() if probe_torch else []
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_simd": simd_flags(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": usable,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def describe(machine: dict) -> str:
    """One line: ``Intel Xeon ..., 2 cores usable (2 logical), 7.8 GB, no GPU``."""
    gpus = machine.get("gpus") or []
    gpu_text = ", ".join(g["name"] for g in gpus) if gpus else "no GPU"
    return (f"{machine.get('cpu_model', 'unknown CPU')}, {machine.get('cores_usable')} cores usable "
            f"({machine.get('cores_logical')} logical), {machine.get('memory_gb')} GB, {gpu_text}")
