"""From ``--onnx FILE`` or ``--model NAME`` to an ONNX file and its model info.

Both commands that run a model (``engine.run``, ``engine.serve``) take either form. What
can be refused without exporting anything (a missing or directory ``--onnx``, an unknown
model name or library, a missing ``--weights`` or ``--preprocess`` file) is refused by
:func:`check_model_args` first, as an :class:`~engine.data.arg_checks.UsageError` or a
:class:`~engine.models.catalog.UnknownModelError`, before the seconds an export takes.
A ``--model`` that cannot be exported resolves to its model-info JSON, which
:func:`backend_for` sends to the torch backend.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from engine.data import arg_checks
from engine.data.dataconfig import DataConfig, ModelInfo
from engine.data.extras import require
from engine.models.cache import TORCH_BACKEND, TORCH_REASON_KEY, cached_model
from engine.models.library_models import resolve_model_ref


def check_model_args(onnx: str | None, model: str | None, library: str | None, weights: str | None,
                     preprocess: str | None = None) -> None:
    """Refuse what cannot work before any model is loaded or exported."""
    if onnx is not None:
        onnx_path = arg_checks.input_file("--onnx", onnx)
        if not ModelInfo.path_for(onnx_path).exists() and preprocess is None:
            raise arg_checks.UsageError(f"--onnx {onnx}: no model-info JSON at {ModelInfo.path_for(onnx_path)}; "
                                        "give the preprocessing with --preprocess FILE")
    else:
        require("torch", "--model")
        resolve_model_ref(model, library)
    if weights is not None:
        arg_checks.input_file("--weights", weights)
    if preprocess is not None:
        arg_checks.input_file("--preprocess", preprocess)


def load_data_config(path: str) -> DataConfig:
    """A JSON or YAML data config, alone or as a model info's ``data_config``."""
    text = Path(path).read_text()
    try:
        data = yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
    except (ValueError, yaml.YAMLError) as e:
        raise arg_checks.UsageError(f"--preprocess {path}: not JSON/YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise arg_checks.UsageError(f"--preprocess {path}: expected a mapping of data-config keys")
    return DataConfig.from_dict(data.get("data_config", data))


def resolve_model(onnx: str | None, model: str | None, library: str | None, weights: str | None, seed: int,
                  preprocess: str | None = None) -> tuple[str, ModelInfo]:
    """The ONNX file (exported into the cache for a zoo name) and its model info, the
    data config replaced by ``preprocess`` when given."""
    onnx_path = onnx or str(cached_model(model, library, weights, seed).path)
    info_path = ModelInfo.path_for(onnx_path)
    if info_path.exists():
        info = ModelInfo.load(info_path)
    else:
        info = ModelInfo(name=Path(onnx_path).stem, library="onnx", model_file=onnx_path)
    if preprocess:
        info.data_config = load_data_config(preprocess)
    return onnx_path, info


def backend_for(info: ModelInfo, requested: str) -> str:
    """The backend to run ``info``'s model on: the torch backend for a zoo model that could
    not be exported to ONNX (the model cache records why), else ``requested``."""
    return TORCH_BACKEND if info.extra.get(TORCH_REASON_KEY) else requested
