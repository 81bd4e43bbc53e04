"""onnxruntime backend: CPU, CUDA and TensorRT execution providers.

One ``InferenceSession`` per instance. On the CPU a session gets ``threads`` intra-op
threads and one inter-op thread with sequential execution, so several instances running
side by side (the engine's ``-i``) split the cores instead of fighting over them;
onnxruntime releases the GIL while it runs, so instances can live in threads of one
process.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.backends.base import FixedBatchBackend, rss_mb
from engine.backends.devices import cpu_model
from engine.data.dataconfig import ModelInfo

PRECISION_METADATA_KEY = "engine.precision"
EXECUTION_PROVIDERS = ("cuda", "tensorrt")


class OrtBackend(FixedBatchBackend):
    """An onnxruntime session on ``device`` ("cpu", "cuda" or "cuda:N").

    Options:
      ``threads``: intra-op threads (CPU).
      ``spinning``: let idle intra-op threads spin (fastest for one instance that owns its
        cores; turn off when instances x threads exceeds the cores).
      ``arena``: onnxruntime's CPU memory arena (faster repeat allocations, more memory).
      ``provider``: on CUDA, ``"cuda"`` (default) or ``"tensorrt"``.
      ``fp16``: with TensorRT, build fp16 engines (``trt_fp16_enable``); the CUDA provider
        runs fp16 only from an fp16 ONNX made by ``engine.build``.
      ``trt_cache_dir``: where TensorRT engines are cached (default: beside the model).
      ``profile``: a path prefix for onnxruntime's profiler, which then times every kernel
        run (see :meth:`kernel_seconds`).
    """

    def __init__(
        self,
        model_path,
        *,
        device: str = "cpu",
        threads: int = 1,
        spinning: bool = True,
        arena: bool = True,
        provider: str = "cuda",
        fp16: bool = False,
        trt_cache_dir=None,
        profile=None,
    ):
        import onnxruntime as ort

        model_path = Path(model_path)
        base, device_id = _check_arguments(model_path, device, threads, provider)
        self.model_path = model_path
        self.threads = threads
        self.device = device
        info_path = ModelInfo.path_for(model_path)
        self.info = ModelInfo.load(info_path) if info_path.is_file() else None

        opts = _session_options(ort, threads=threads, spinning=spinning, arena=arena, profile=profile)
        self.name, providers = _providers_for(base, device_id, provider, fp16, trt_cache_dir, model_path)
        self.session, self._memory_mb = self._open_session(ort, opts, providers, on_cpu=base == "cpu")
        self._read_input()
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.precision = self._precision(fp16)

    def _open_session(self, ort, opts, providers: list, *, on_cpu: bool):
        """The session and the resident memory it took (CPU only), refusing a silent provider fallback."""
        missing = [p for p, _ in providers if p not in ort.get_available_providers()]
        if missing:
            raise RuntimeError(
                f"{self.name}: onnxruntime {ort.__version__} lacks {missing[0]} "
                "(install onnxruntime-gpu for CUDA/TensorRT, or use --device cpu)"
            )
        if not on_cpu and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu finds CUDA and cuDNN in the nvidia-* wheels (torch's CUDA
            # build brings them) only when asked to, or when torch was imported first.
            ort.preload_dlls()
        rss_before = rss_mb()
        try:
            session = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise RuntimeError(f"ONNX model {self.model_path}: onnxruntime could not load it ({e})") from None
        memory_mb = rss_mb() - rss_before if on_cpu else None
        self.providers = session.get_providers()
        if providers[0][0] not in self.providers:
            # onnxruntime falls back to the next provider (at last the CPU) when one
            # cannot start, with only a log line: a --device cuda run would go on on the CPU.
            raise RuntimeError(
                f"{self.name}: onnxruntime {ort.__version__} could not start {providers[0][0]} "
                f"and ran {', '.join(self.providers)} instead: a GPU, the CUDA and cuDNN libraries this "
                "onnxruntime-gpu build needs (pip install 'onnxruntime-gpu[cuda,cudnn]'), or for "
                "TensorRT its libraries, are missing")
        return session, memory_mb

    def _read_input(self) -> None:
        """Check the model has the one float32 (N, C, H, W) input the engine feeds, and record it."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"ONNX model {self.model_path}: expected one input, found {len(inputs)}")
        model_input = inputs[0]
        shape = list(model_input.shape)
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
            raise ValueError(f"ONNX model {self.model_path}: input shape {shape} is not (N, C, H, W)")
        if model_input.type != "tensor(float)":
            raise ValueError(
                f"ONNX model {self.model_path}: input type {model_input.type}; the engine feeds float32"
            )
        self.input_name = model_input.name
        self.input_shape = tuple(shape[1:])
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def _precision(self, fp16: bool) -> str:
        """The model's precision: its ONNX metadata, else its model-info JSON; fp16 for TensorRT's fp16 engines."""
        metadata = self.session.get_modelmeta().custom_metadata_map
        precision = metadata.get(PRECISION_METADATA_KEY)
        if precision is None and self.info is not None:
            precision = self.info.extra.get("precision")
        if self.name == "ort-tensorrt" and fp16:
            precision = "fp16"
        if precision == "bf16":  # onnxruntime would run it at fp32 and call it bf16
            raise ValueError(f"ONNX model {self.model_path}: engine.build made it for bf16, which onnxruntime does "
                             "not run; use --backend openvino")
        return precision or "fp32"

    def _run_exact(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_name: batch})
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": self.device,
            "device_name": cpu_model() if self.device == "cpu" else self.device,
            "providers": list(self.providers),
            "threads": self.threads,
            "memory_mb": None if self._memory_mb is None else round(self._memory_mb, 1),
            "precision": self.precision,
            "model": str(self.model_path),
        }

    def kernel_seconds(self) -> dict[str, float]:
        """Seconds spent in the kernels of each operator type (as onnxruntime names them
        after its graph optimizations, e.g. QLinearConv) over every run so far. Ends the
        profiling; needs the ``profile`` option."""
        if not self.session.get_session_options().enable_profiling:
            raise RuntimeError(f"{self.name}: kernel_seconds needs the backend opened with profile=PREFIX")
        events = json.loads(Path(self.session.end_profiling()).read_text())
        seconds: dict[str, float] = {}
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                op = event["args"]["op_name"]
                seconds[op] = seconds.get(op, 0.0) + event["dur"] / 1e6
        return seconds

    def close(self) -> None:
        self.session = None


def _check_arguments(model_path: Path, device: str, threads: int, provider: str) -> tuple[str, int]:
    """Refuse bad options before loading anything; returns the device's base name and index."""
    if not model_path.is_file():
        raise FileNotFoundError(f"ONNX model {model_path}: no such file")
    if threads < 1:
        raise ValueError(f"threads {threads}: must be >= 1")
    base, _, index = device.partition(":")
    if base not in ("cpu", "cuda"):
        raise ValueError(f"ort backend: device {device!r} must be cpu, cuda or cuda:N")
    if base == "cuda" and provider not in EXECUTION_PROVIDERS:
        raise ValueError(f"ort backend: provider {provider!r}, expected one of {EXECUTION_PROVIDERS}")
    return base, int(index) if index else 0


def _session_options(ort, *, threads: int, spinning: bool, arena: bool, profile):
    """Sequential execution on ``threads`` intra-op threads, so instances side by side split the cores."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = arena
    opts.enable_mem_pattern = True
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3
    if profile is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile)
    return opts


def _providers_for(base: str, device_id: int, provider: str, fp16: bool, trt_cache_dir,
                   model_path: Path) -> tuple[str, list]:
    """The backend's name and onnxruntime's provider list for the device, best provider first."""
    if base == "cpu":
        return "ort-cpu", [("CPUExecutionProvider", {})]
    if provider == "tensorrt":
        cache = Path(trt_cache_dir) if trt_cache_dir else model_path.parent / "trt_cache"
        trt = {
            "device_id": device_id,
            "trt_fp16_enable": bool(fp16),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
        }
        return "ort-tensorrt", [
            ("TensorrtExecutionProvider", trt),
            ("CUDAExecutionProvider", {"device_id": device_id}),
            ("CPUExecutionProvider", {}),
        ]
    return "ort-cuda", [
        ("CUDAExecutionProvider", {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE"}),
        ("CPUExecutionProvider", {}),
    ]
