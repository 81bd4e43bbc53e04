"""OpenVINO backend: the same ONNX files (fp32, a bf16 deploy folder, int8 QDQ) on the CPU.

Why a second CPU runtime: on CPUs with AVX512-BF16 or AMX, OpenVINO runs a float model in
bf16 at about twice onnxruntime's fp32 rate, and it runs the int8 QDQ files ``engine.build``
writes at least as fast as onnxruntime. OpenVINO also *chooses* bf16 by itself on such
CPUs; this backend never lets it: the inference precision is always set explicitly
(``INFERENCE_PRECISION_HINT``), read back from the compiled model, and a mismatch is an
error, so what ``describe()`` reports is what ran.

One compiled model and one infer request per instance, ``threads`` inference threads, one
stream, no core pinning (instances side by side in one process would be pinned onto the
same cores). OpenVINO releases the GIL while it infers, so instances can live in threads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.backends.base import FixedBatchBackend, rss_mb
from engine.backends.devices import cpu_model
from engine.data.dataconfig import ModelInfo
from engine.data.extras import require

# What --precision may ask of OpenVINO, and the element type of its inference precision hint.
PRECISIONS = ("fp32", "bf16")
PRECISION_METADATA_KEY = "engine.precision"  # the key engine.build writes (engine.backends.ort's)
# The documented bound of bf16 against onnxruntime fp32: the largest logit difference over the
# largest logit, on a batch. Measured here: 3e-3 (ResNet-50, random weights, photos), 3e-3 (the
# tests' tiny nets); 8e-3 on VGG11 in issue 28. docs/pipeline.md gives the figures per model.
BF16_REL_ERR_BOUND = 2e-2


def import_openvino():
    """The ``openvino`` module, or one line naming the extra that installs it (a MissingExtra)."""
    require("openvino", "the openvino backend")
    import openvino

    return openvino


def recorded_precision(ov_model, info: ModelInfo | None) -> str:
    """The precision engine.build gave the file: its ONNX metadata, else its model-info JSON, else fp32."""
    key = ["framework", PRECISION_METADATA_KEY]
    if ov_model.has_rt_info(key):
        return str(ov_model.get_rt_info(key).astype(str))
    if info is not None and info.extra.get("precision"):
        return str(info.extra["precision"])
    return "fp32"


def bf16_supported(core) -> bool:
    """The CPU runs bf16 natively (AVX512-BF16 or AMX), as OpenVINO sees it."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoBackend(FixedBatchBackend):
    """An OpenVINO compiled model on the CPU.

    Options:
      ``precision``: ``fp32`` or ``bf16``: the inference precision of the float operations
        (an int8 file's quantized layers run int8 either way). Default: the precision the
        file was built for (``bf16`` for a bf16 deploy folder), else ``fp32``.
      ``pinning``: pin the inference threads to cores (one instance that owns the machine).
    """

    def __init__(self, model_path, *, device: str = "cpu", threads: int = 1, precision: str | None = None,
                 pinning: bool = False):
        ov = import_openvino()
        import openvino.properties as props
        import openvino.properties.hint as hints

        model_path = Path(model_path)
        _check_arguments(model_path, device, threads, precision)
        self.model_path, self.device, self.threads = model_path, device, threads
        info_path = ModelInfo.path_for(model_path)
        self.info = ModelInfo.load(info_path) if info_path.is_file() else None
        core = ov.Core()
        try:
            model = core.read_model(str(model_path))
        except Exception as e:  # OpenVINO raises its own exception types
            raise RuntimeError(f"ONNX model {model_path}: OpenVINO could not read it ({e})") from None
        self.file_precision = recorded_precision(model, self.info)
        wanted = precision or ("bf16" if self.file_precision == "bf16" else "fp32")
        if wanted == "bf16" and not bf16_supported(core):
            raise RuntimeError(f"openvino backend: precision bf16: this CPU ({cpu_model()}) has no native bf16 "
                               "(AVX512-BF16 or AMX); use --precision fp32")
        self._read_io(model)
        element = ov.Type.bf16 if wanted == "bf16" else ov.Type.f32
        config = {hints.inference_precision: element, props.inference_num_threads: threads,
                  props.num_streams: 1, hints.performance_mode: hints.PerformanceMode.LATENCY,
                  hints.enable_cpu_pinning: bool(pinning)}
        rss_before = rss_mb()
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:
            raise RuntimeError(f"ONNX model {model_path}: OpenVINO could not compile it ({e})") from None
        self._memory_mb = rss_mb() - rss_before
        ran = self.compiled.get_property(hints.inference_precision)
        if ran != element:
            raise RuntimeError(f"openvino backend: asked for inference precision {element}, OpenVINO compiled "
                               f"{model_path} at {ran}")
        self.inference_precision = wanted
        self.precision = self.file_precision if self.file_precision in ("int8", "fp16") else wanted
        self.name = "openvino-cpu"
        self.version = ov.__version__
        self.request = self.compiled.create_infer_request()

    def _read_io(self, model) -> None:
        """Check the model has the one float32 (N, C, H, W) input the engine feeds, and record it."""
        if len(model.inputs) != 1:
            raise ValueError(f"ONNX model {self.model_path}: expected one input, found {len(model.inputs)}")
        port = model.inputs[0]
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4 or any(d.is_dynamic for d in list(shape)[1:]):
            raise ValueError(f"ONNX model {self.model_path}: input shape {shape} is not (N, C, H, W)")
        if port.get_element_type().get_type_name() != "f32":
            raise ValueError(f"ONNX model {self.model_path}: input type {port.get_element_type()}; "
                             "the engine feeds float32")
        self.input_name = port.get_any_name()
        self.input_shape = tuple(d.get_length() for d in list(shape)[1:])
        self.fixed_batch = None if shape[0].is_dynamic else shape[0].get_length()
        self.output_names = [o.get_any_name() for o in model.outputs]

    def _run_exact(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: batch}, share_inputs=True)
        return [np.array(result[o], dtype=np.float32) for o in self.compiled.outputs]

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": self.device,
            "device_name": cpu_model(),
            "providers": [f"OpenVINO {self.version.split('-')[0]} CPU"],
            "threads": self.threads,
            "memory_mb": round(self._memory_mb, 1),
            "precision": self.precision,
            "inference_precision": self.inference_precision,
            "model": str(self.model_path),
        }

    def close(self) -> None:
        self.request = None
        self.compiled = None


def _check_arguments(model_path: Path, device: str, threads: int, precision: str | None) -> None:
    """Refuse bad options before loading anything."""
    if not model_path.is_file():
        raise FileNotFoundError(f"ONNX model {model_path}: no such file")
    if threads < 1:
        raise ValueError(f"threads {threads}: must be >= 1")
    if device != "cpu":
        raise ValueError(f"openvino backend: device {device!r}: it runs on the CPU (use --device cpu)")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"openvino backend: precision {precision!r}, expected one of {', '.join(PRECISIONS)}")
