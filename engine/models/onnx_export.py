"""Export a zoo model to ONNX, with the model-info JSON that travels beside it.

:func:`export_onnx` (behind ``python -m engine.export``) writes ``<save_dir>/<name>_<size>.onnx`` (input
``input``, output ``output``, dynamic batch axis unless ``static_batch``) and
``<save_dir>/<name>_<size>.json`` (:class:`engine.data.dataconfig.ModelInfo`). The ONNX model
is then run under onnxruntime against the torch model on random input (batches 1 and 3
when the batch axis is dynamic); a maximum relative error above 1e-4 fails the export.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.data.dataconfig import ModelInfo
from engine.models.library_config import at_input_size
from engine.models.zoo import ZooModel

INPUT_NAME = "input"
OUTPUT_NAME = "output"
OPSET = 18
MAX_REL_ERROR = 1e-4
DYNAMIC_CHECK_BATCHES = (1, 3)  # two batch sizes prove the batch axis is really dynamic


class ExportError(RuntimeError):
    """The model could not be written as ONNX."""


class ExportCheckError(ExportError):
    """The exported ONNX model disagrees with the torch model."""


class _WithSoftmax(nn.Module):
    """The network followed by a softmax over classes, as the seed's compiler appended."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def onnx_path(save_dir: str | Path, name: str, size: int) -> Path:
    return Path(save_dir) / f"{name}_{size}.onnx"


def _versions() -> dict:
    import onnx
    import onnxruntime
    import timm
    import torchvision

    return {"torch": torch.__version__, "timm": timm.__version__, "torchvision": torchvision.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _write_onnx(module: nn.Module, path: Path, size: int, static_batch: int | None) -> None:
    """One self-contained ONNX file with the batch axis named ``batch`` (or fixed).

    The TorchScript exporter comes first: it takes seconds where the torch.export-based
    one takes many more. Where it cannot express the model (torchvision's VGG pools a
    2x2 map to 7x7 at small inputs, an adaptive pooling it cannot write), the
    torch.export-based exporter writes it.
    """
    example = torch.zeros(static_batch or 1, 3, size, size)
    common = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": OPSET}
    dynamic_axes = None if static_batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    dynamic_shapes = None if static_batch else ({0: torch.export.Dim("batch", min=1)},)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(module, (example,), str(path), dynamo=False, dynamic_axes=dynamic_axes,
                              do_constant_folding=True, **common)
        return
    except Exception as e:  # the exporters raise many types
        torchscript_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(path), dynamo=True, dynamic_shapes=dynamic_shapes,
                              external_data=False, verbose=False, **common)
    except Exception as e:
        raise ExportError(f"{path}: torch.onnx.export failed (TorchScript exporter: {torchscript_error}; "
                          f"torch.export-based exporter: {type(e).__name__}: {e})") from e


def max_relative_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """max |a - b| / max |a|: the error relative to the output's scale."""
    scale = float(np.abs(reference).max()) or 1.0
    return float(np.abs(reference - candidate).max()) / scale


def check_onnx(module: nn.Module, path: Path, size: int, batches: tuple[int, ...], seed: int = 0) -> float:
    """Maximum relative error of ``path`` under onnxruntime against ``module``, over ``batches``."""
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(seed)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    errors = []
    for batch in batches:
        x = torch.randn(batch, 3, size, size, generator=generator)
        with torch.no_grad():
            expected = module(x).numpy()
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
        if got.shape != expected.shape:
            raise ExportCheckError(f"{path}: onnxruntime output shape {got.shape}, torch {expected.shape}")
        errors.append(max_relative_error(expected, got))
    return max(errors)


def export_onnx(zoo_model: ZooModel, save_dir: str | Path, *, size: int = 224,
                static_batch: int | None = None, softmax: bool = False, check: bool = True) -> Path:
    """Writes ``<save_dir>/<name>_<size>.onnx`` and its model-info JSON; returns the ONNX path.

    With ``check``, runs the file under onnxruntime against the torch model and raises
    :class:`ExportCheckError` (files left in place, for inspection) when the maximum
    relative error exceeds 1e-4.
    """
    if static_batch is not None and static_batch < 1:
        raise ValueError(f"static batch {static_batch}: must be at least 1")
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    path = onnx_path(save_dir, zoo_model.name, size)
    module = _WithSoftmax(zoo_model.module) if softmax else zoo_model.module
    module.eval()
    _write_onnx(module, path, size, static_batch)
    write_model_info(zoo_model, path, size, static_batch=static_batch, extra={"softmax": softmax, "opset": OPSET})

    if check:
        try:
            error = check_onnx(module, path, size, (static_batch,) if static_batch else DYNAMIC_CHECK_BATCHES)
        except ExportCheckError:
            raise
        except Exception as e:  # onnxruntime refusing the file raises its own types
            raise ExportCheckError(f"{path}: onnxruntime could not run it ({type(e).__name__}: "
                                   f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from e
        print(f"onnxruntime vs torch: max relative error {error:.3g} ({path.name})")
        if not error <= MAX_REL_ERROR:
            raise ExportCheckError(
                f"{path}: onnxruntime output differs from torch by a relative {error:.3g} "
                f"(limit {MAX_REL_ERROR:g}); the files are left in place for inspection")
    return path


def write_model_info(zoo_model: ZooModel, path: Path, size: int, *, static_batch: int | None = None,
                     extra: dict | None = None) -> Path:
    """The model-info JSON of ``zoo_model`` exported as ``path`` at ``size``, written beside it
    (also for a model left without an ONNX file, which the torch backend runs from it)."""
    complexity = zoo_model.complexity(size)
    num_classes = zoo_model.data_config.num_classes
    batch_dim = static_batch if static_batch else "batch"
    data_config = at_input_size(zoo_model.data_config, size)
    info = ModelInfo(
        name=zoo_model.name, library=zoo_model.library, model_file=path.name,
        input_name=INPUT_NAME, output_names=[OUTPUT_NAME],
        input_shape=[batch_dim, 3, size, size], output_shapes=[[batch_dim, num_classes]],
        data_config=data_config, class_names=zoo_model.class_names and list(zoo_model.class_names),
        weights=dict(zoo_model.weights),
        extra={
            "weights_label": zoo_model.weights_label,
            "num_classes": num_classes,
            "softmax": False,
            "params": complexity.params,
            "params_m": complexity.params_m,
            "gmacs": complexity.gmacs,
            "versions": _versions(),
            **(extra or {}),
        },
    )
    info_path = ModelInfo.path_for(path)
    info.save(info_path)
    return info_path
