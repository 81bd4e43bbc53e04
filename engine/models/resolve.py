"""From ``--onnx FILE``, ``-m PATH`` or ``--model NAME`` to an ONNX file and its model info.

The commands that run a model (``engine.run``, ``engine.serve``, ``engine.tune``) take
these forms; ``-m`` names a model the way the seed's benchmark tool does
(:func:`deploy_model_file`), and ``--vdsp_params FILE`` (a vendor preprocessing file,
:mod:`engine.data.vdsp_params`) replaces the data config as ``--preprocess`` does. What
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
from engine.data.vdsp_params import read_vdsp_params, vdsp_data_config
from engine.models.cache import TORCH_BACKEND, TORCH_REASON_KEY, cached_model
from engine.models.library_models import resolve_model_ref


def deploy_model_file(path: str) -> str:
    """The ONNX file ``-m PATH`` names: ``PATH`` itself when it ends in ``.onnx``, else the
    deploy-folder prefix ``PATH.onnx`` (``DIR/vgg11`` is ``DIR/vgg11.onnx``, its model-info
    JSON beside it, as engine.build writes them)."""
    path = str(path)
    if path.endswith(".onnx"):
        return str(arg_checks.input_file("-m", path))
    candidate = f"{path}.onnx"
    if not Path(candidate).is_file():
        raise arg_checks.UsageError(f"-m {path}: no model {candidate} (-m takes a deploy-folder prefix DIR/NAME "
                                    f"for DIR/NAME.onnx, or an .onnx file)")
    return str(arg_checks.input_file("-m", candidate))


def check_model_args(onnx: str | None, model: str | None, library: str | None, weights: str | None,
                     preprocess: str | None = None, *, deploy_model: str | None = None,
                     vdsp_params: str | None = None) -> None:
    """Refuse what cannot work before any model is loaded or exported."""
    if preprocess is not None and vdsp_params is not None:
        raise arg_checks.UsageError("--preprocess and --vdsp_params both replace the model's data config: give one")
    flag, file = ("-m", deploy_model_file(deploy_model)) if deploy_model is not None else ("--onnx", onnx)
    if file is not None:
        onnx_path = arg_checks.input_file(flag, file)
        if not ModelInfo.path_for(onnx_path).exists() and preprocess is None and vdsp_params is None:
            raise arg_checks.UsageError(f"{flag} {deploy_model or onnx}: no model-info JSON at "
                                        f"{ModelInfo.path_for(onnx_path)}; give the preprocessing with "
                                        "--preprocess FILE or --vdsp_params FILE")
    else:
        require("torch", "--model")
        resolve_model_ref(model, library)
    if weights is not None:
        arg_checks.input_file("--weights", weights)
    if preprocess is not None:
        arg_checks.input_file("--preprocess", preprocess)
    if vdsp_params is not None:
        arg_checks.input_file("--vdsp_params", vdsp_params)
        read_vdsp_params(vdsp_params)


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
                  preprocess: str | None = None, *, deploy_model: str | None = None,
                  vdsp_params: str | None = None) -> tuple[str, ModelInfo]:
    """The ONNX file (``deploy_model``'s, or exported into the cache for a zoo name) and its
    model info, the data config replaced by ``preprocess`` or ``vdsp_params`` when given."""
    if deploy_model is not None:
        onnx = deploy_model_file(deploy_model)
    onnx_path = onnx or str(cached_model(model, library, weights, seed).path)
    info_path = ModelInfo.path_for(onnx_path)
    if info_path.exists():
        info = ModelInfo.load(info_path)
    else:
        info = ModelInfo(name=Path(onnx_path).stem, library="onnx", model_file=onnx_path)
    if preprocess:
        info.data_config = load_data_config(preprocess)
    if vdsp_params:
        info.data_config = vdsp_data_config(vdsp_params, info.data_config)
    return onnx_path, info


def backend_for(info: ModelInfo, requested: str | None) -> str:
    """The backend to run ``info``'s model on: the torch backend for a zoo model that could
    not be exported to ONNX (the model cache records why), else ``requested``; when none is
    requested, OpenVINO for a bf16 deploy folder (what engine.build made it for), else
    onnxruntime."""
    if info.extra.get(TORCH_REASON_KEY):
        return TORCH_BACKEND
    if info.extra.get("precision") == "bf16":
        if requested == "ort":
            raise arg_checks.UsageError(f"--backend ort: model {info.name} was built for bf16, which onnxruntime "
                                        "does not run; use --backend openvino")
        if requested is None:
            require("openvino", f"model {info.name} (a bf16 deploy folder)")
            return "openvino"
    return requested or "ort"
