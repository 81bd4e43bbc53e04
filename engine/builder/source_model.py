"""The fp32 ONNX model a build starts from: a given file or an export from the zoo, with
its model info, checked against what the config says of it."""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from engine.builder.config import BuildConfig, ConfigError
from engine.data.dataconfig import DataConfig, ModelInfo


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


def info_for_onnx(path: Path, cfg: BuildConfig) -> ModelInfo:
    """The model-info beside an ONNX file, or one made from the file itself."""
    info_path = ModelInfo.path_for(path)
    if info_path.is_file():
        return ModelInfo.load(info_path)
    model = onnx.load(str(path), load_external_data=False)
    graph_input = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "batch")
            for d in graph_input.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise BuildError(f"{path}: input {graph_input.name} has shape {dims}, expected (N, C, H, W)")
    size = dims[2]
    config = DataConfig(input_size=tuple(dims[1:]), crop=size, resize=round(size / 0.875))
    return ModelInfo(name=cfg.model.name or path.stem.removesuffix(f"_{size}"), library="onnx",
                     model_file=path.name, input_name=graph_input.name,
                     output_names=[o.name for o in model.graph.output], input_shape=dims,
                     data_config=config, weights={"file": str(path)})


def source_model(cfg: BuildConfig, work: Path) -> tuple[Path, ModelInfo]:
    """The fp32 ONNX to build from (exported from the zoo when needed) and its model info."""
    spec = cfg.model
    if spec.onnx is not None:
        if not spec.onnx.is_file():
            raise ConfigError(f"{cfg.key('model.onnx')}: {spec.onnx}: no such file")
        return spec.onnx, info_for_onnx(spec.onnx, cfg)
    from engine.models.onnx_export import export_onnx
    from engine.models.zoo import create

    zoo_model = create(spec.name, library=spec.library,
                       weights=None if spec.weights is None else str(spec.weights), seed=spec.seed)
    size = spec.input_shape[2] if spec.input_shape else zoo_model.data_config.crop
    # The built model keeps a dynamic batch axis; the engine batches on its own.
    path = export_onnx(zoo_model, work / "export", size=size, softmax=cfg.softmax)
    return path, ModelInfo.load(ModelInfo.path_for(path))


def check_inputs_match(cfg: BuildConfig, info: ModelInfo) -> None:
    """The config's ``model.input_name`` and ``model.input_shape``, when given, are the model's."""
    spec = cfg.model
    if spec.input_name is not None and spec.input_name != info.input_name:
        raise ConfigError(f"{cfg.key('model.input_name')}: input name {spec.input_name!r}, "
                          f"but the model's input is {info.input_name!r}")
    if spec.input_shape is not None and list(spec.input_shape[1:]) != list(info.data_config.input_size):
        raise ConfigError(f"{cfg.key('model.input_shape')}: shape {spec.input_shape}, but the model "
                          f"takes (N, {', '.join(map(str, info.data_config.input_size))})")


def fixed_batch(info: ModelInfo) -> int | None:
    """The model's fixed batch size, or None when its batch axis is dynamic."""
    batch = info.input_shape[0]
    return batch if isinstance(batch, int) else None


def append_softmax(src: Path, dst: Path) -> None:
    """Add a Softmax over the class axis after the model's first output."""
    model = onnx.load(str(src))
    out = model.graph.output[0]
    logits = out.name + "_logits"
    for node in model.graph.node:
        node.output[:] = [logits if o == out.name else o for o in node.output]
    model.graph.node.append(helper.make_node("Softmax", [logits], [out.name], axis=-1, name="engine_softmax"))
    onnx.save(model, str(dst))
