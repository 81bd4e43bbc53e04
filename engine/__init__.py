"""Streaming inference engine for ImageNet classifiers.

The Python API (docs/api.md)::

    import engine

    with engine.Classifier(onnx="m.onnx", batch_size=8) as clf:
        for r in clf.stream(items):          # paths, bytes, arrays, PIL images
            print(r.index, r.topk, r.error)
    report = engine.run(datalist="npz_datalist.txt", onnx="m.onnx", path_output="out")
    for indices, batch in engine.preprocess(items, model="resnet18.a1_in1k", library="timm"):
        ...

``engine/<tool>.py`` are the commands (``python -m engine.<tool>``), thin layers over the
API in ``engine/api``; the machinery lives in the subsystem packages, and imports point
one way (checked by import-linter, ``.importlinter``):

    commands -> api -> cluster -> pipeline | serving | builder -> models | backends -> data -> kernels

The names below load on first use, so ``import engine`` (and every worker process that
imports a subsystem) stays cheap.
"""
from __future__ import annotations

import importlib

_API = {
    "Classifier": ("engine.api.classifier", "Classifier"),
    "Result": ("engine.api.classifier", "Result"),
    "preprocess": ("engine.api.preprocess", "preprocess"),
    "UsageError": ("engine.data.arg_checks", "UsageError"),
    "RunFailed": ("engine.api.job", "RunFailed"),
    "RunOptions": ("engine.api.options", "RunOptions"),
    "EngineOptions": ("engine.api.options", "EngineOptions"),
    "ModelOptions": ("engine.api.options", "ModelOptions"),
}
__all__ = [*_API, "run", "ray_data"]


def __getattr__(name: str):
    if name in ("run", "ray_data"):  # submodules: engine.run is the command, callable as the API's run
        return importlib.import_module(f"engine.{name}")
    if name in _API:
        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
