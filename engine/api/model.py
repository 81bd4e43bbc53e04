"""The model an API call names, resolved with the commands' own rules and refusals."""
from __future__ import annotations

from engine.api.options import EngineOptions, ModelOptions
from engine.data.arg_checks import UsageError
from engine.data.dataconfig import DataConfig, ModelInfo
from engine.data.extras import require
from engine.data.vdsp_params import vdsp_data_config
from engine.models.catalog import UnknownModelError
from engine.models.library_models import resolve_model_ref
from engine.models.resolve import deploy_model_file, load_data_config, resolve_model


def resolve(options: EngineOptions) -> tuple[str, ModelInfo]:
    """The ONNX file (exported on the fly for a ``model`` name) and its model info, for
    options already checked; every refusal is one :class:`UsageError` line."""
    try:
        model_path, info = resolve_model(options.onnx, options.model, options.library, options.weights,
                                         options.seed, options.preprocess, deploy_model=options.deploy_model,
                                         vdsp_params=options.vdsp_params)
    except UsageError:
        raise
    except (UnknownModelError, OSError, ValueError) as e:
        raise UsageError(str(e)) from None
    options.check_model_fit(info.data_config.num_classes)
    return model_path, info


def data_config_of(options: ModelOptions) -> DataConfig:
    """The preprocessing of the model named, without exporting or loading it: the
    ``preprocess`` or ``vdsp_params`` file, the ONNX file's model info, the zoo table's
    row, or the library's own eval transform."""
    options.check()
    try:
        if options.preprocess:
            return load_data_config(options.preprocess)
        config = _model_data_config(options)
        return vdsp_data_config(options.vdsp_params, config) if options.vdsp_params else config
    except UsageError:
        raise
    except (UnknownModelError, OSError, ValueError) as e:
        raise UsageError(str(e)) from None


def _model_data_config(options: ModelOptions) -> DataConfig | None:
    onnx = deploy_model_file(options.deploy_model) if options.deploy_model else options.onnx
    if onnx:
        info_path = ModelInfo.path_for(onnx)
        return ModelInfo.load(info_path).data_config if info_path.exists() else None
    ref = resolve_model_ref(options.model, options.library)
    if ref.in_table:
        return ref.entry.data_config
    require("torch", f"model={options.model!r}")
    from engine.models.library_config import data_config_for

    return data_config_for(ref.name, ref.library)
