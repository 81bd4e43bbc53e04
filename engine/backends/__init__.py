"""Inference runtimes behind one interface (:class:`Backend`).

    backend = open_backend("ort", "vgg11_224.onnx", device="auto", threads=2)
    logits, = backend.run(batch)          # batch: float32 (N, 3, H, W)

``kind`` is ``"ort"`` (onnxruntime: CPU, CUDA, TensorRT), ``"openvino"`` (OpenVINO on the
CPU: the same ONNX files at fp32 or bf16, int8 QDQ files; an install extra) or ``"torch"``
(an ``nn.Module`` given as ``module=``, on the CPU or a CUDA GPU). Runtime modules are
imported only when used, so code that only needs onnxruntime never pays for importing torch.
"""
from __future__ import annotations

from engine.backends.base import Backend
from engine.backends.devices import available_devices, resolve_device

KINDS = ("ort", "openvino", "torch")

__all__ = ["Backend", "KINDS", "available_devices", "open_backend", "resolve_device"]


def open_backend(kind: str, model_path=None, *, device: str = "cpu", threads: int = 1, **options) -> Backend:
    """Load ``model_path`` into a ``kind`` backend on ``device`` (``auto`` picks the best).

    Options are passed to the backend class: :class:`engine.backends.ort.OrtBackend`,
    :class:`engine.backends.openvino_backend.OpenVinoBackend` or
    :class:`engine.backends.torch_backend.TorchBackend`.
    """
    if kind not in KINDS:
        raise ValueError(f"backend {kind!r}: expected one of {KINDS}")
    device = resolve_device(device, kind)
    if kind == "ort":
        from engine.backends.ort import OrtBackend

        if model_path is None:
            raise ValueError("ort backend: model_path (an .onnx file) is required")
        return OrtBackend(model_path, device=device, threads=threads, **options)
    if kind == "openvino":
        from engine.backends.openvino_backend import OpenVinoBackend

        if model_path is None:
            raise ValueError("openvino backend: model_path (an .onnx file) is required")
        return OpenVinoBackend(model_path, device=device, threads=threads, **options)
    from engine.backends.torch_backend import TorchBackend

    if model_path is not None:
        raise ValueError(f"torch backend: takes module=, not a model file ({model_path}); "
                         "engine.pipeline.model_backend.open_model_backend builds the module a model file names")
    return TorchBackend(device=device, threads=threads, **options)
