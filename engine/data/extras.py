"""The optional parts of the install, and the one check a feature makes before using one.

``pip install vgg-stream-engine`` is the core: it runs ONNX models on the CPU (numpy, numba,
Pillow, OpenCV, onnxruntime, onnx, ZeroMQ). What only some users need is an extra, so a
user who classifies ONNX files does not install torch and its gigabytes:

- ``torch``: ``--model NAME`` (timm, torchvision and mmcls classifiers), ``engine.export``,
  the torch backend, and builds whose source is a zoo model;
- ``serve``: ``engine.serve``'s KServe v2 / Triton front ends (``--http``, ``--grpc``) and
  their ``/metrics``;
- ``ray``: ``engine.run --ray``;
- ``openvino``: ``--backend openvino`` (and bf16 deploy folders);
- ``results``: ``engine.run --results`` (the Parquet results table, pyarrow);
- ``all``: every one of them (``make install`` adds the demo, test and bench tools).

The rule: a module on the core path imports an extra's package only inside the function
that needs it, and the feature first calls :func:`require`. A missing extra is then one
line naming the feature and the install command (a :class:`MissingExtra`, which the
commands, like every :class:`~engine.data.arg_checks.UsageError`, turn into exit 2),
never a ``ModuleNotFoundError`` traceback from deep inside a library. The extras and
their packages are declared once, in ``setup.py``; :data:`EXTRA_MODULES` names the
modules by which each is found.
"""
from __future__ import annotations

import importlib.util

from engine.data.arg_checks import UsageError

DISTRIBUTION = "vgg-stream-engine"
EXTRA_MODULES = {  # the import names of each extra's packages (setup.py lists the distributions)
    "torch": ("torch", "torchvision", "timm", "safetensors"),
    "serve": ("uvicorn", "prometheus_client", "grpc", "tritonclient"),
    "ray": ("ray",),
    "openvino": ("openvino",),
    "results": ("pyarrow",),
}


class MissingExtra(UsageError):
    """A feature was asked for whose extra is not installed; the message is the whole line."""

    def __init__(self, feature: str, extra: str, module: str):
        super().__init__(f"{feature} needs the {extra} extra: pip install '{DISTRIBUTION}[{extra}]' "
                         f"(no module named {module!r})")
        self.feature, self.extra, self.module = feature, extra, module


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing; a module set to None in sys.modules
        return False


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtra` naming ``feature`` (a flag, a command, an API argument)
    unless every package of ``extra`` is installed; costs a path lookup per package, no import."""
    if extra not in EXTRA_MODULES:
        raise ValueError(f"extra {extra!r}: expected one of {', '.join(EXTRA_MODULES)}")
    for module in EXTRA_MODULES[extra]:
        if not installed(module):
            raise MissingExtra(feature, extra, module)
