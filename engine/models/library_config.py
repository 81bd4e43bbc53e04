"""A timm or torchvision model's data config, read off the eval transform its library builds.

The config is not recomputed from the library's numbers (timm's ``crop_pct`` arithmetic,
say): the library builds its own eval transform (timm's ``create_transform(**
resolve_data_config(...))``, torchvision's ``weights.transforms()``) and the sizes,
interpolation, mean and std are read from the transform objects, so the config is what
the library really does, whatever its version computes. A transform that is not a plain
Resize + CenterCrop + ToTensor + Normalize (timm's ``border`` crop mode, a trimmed
border) is recorded with the reason, and every library config carries the recipe to
rebuild the library's transform (see :mod:`engine.models.preprocessing`).

Nothing here builds a network: ``engine.zoo list --all`` calls this once per listed model.
timm's config is its pretrained config as ``resolve_data_config`` resolves it at the
model's (train) ``input_size``, the size the model is exported at.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.data.dataconfig import DataConfig

PLAIN_STEPS = ("Resize", "CenterCrop", "ToTensor", "Normalize")
TO_TENSOR_STEPS = ("ToTensor", "MaybeToTensor")


def data_config_for(name: str, library: str) -> DataConfig:
    """The data config of ``name`` (a timm architecture or pretrained tag such as
    ``resnet50.a1_in1k``, or a torchvision model name) as ``library`` preprocesses it."""
    if library == "timm":
        return _timm_config(name)
    if library == "torchvision":
        return _torchvision_config(name)
    raise ValueError(f"library {library!r}: data configs come from timm or torchvision")


def _interpolation_name(mode) -> str:
    """torchvision's InterpolationMode (or timm's string) as the Pillow name."""
    return getattr(mode, "value", mode)


def _as_size(size) -> int | tuple[int, int]:
    """A Resize's size as the data config writes it: an int (the shorter side), or (height,
    width) (exactly that size)."""
    if isinstance(size, int):
        return size
    size = tuple(int(v) for v in size)
    return size[0] if len(size) == 1 else size


def _as_crop(size) -> int | tuple[int, int]:
    """A CenterCrop's size: an int when square, as the configs of the zoo's table have it."""
    size = _as_size(size)
    return size[0] if not isinstance(size, int) and size[0] == size[1] else size


def _float32_values(values) -> tuple[float, ...]:
    """Normalize's mean/std (tensors in timm) as the shortest decimals of their float32 values."""
    return tuple(float(str(np.float32(float(v)))) for v in values)


def _read_plain_steps(steps: list) -> tuple[dict, str | None]:
    """The resize/crop/interpolation/mean/std of a Resize + CenterCrop + ToTensor + Normalize
    chain, and None; or what could be read and why the chain is not that."""
    names = [type(step).__name__ for step in steps]
    kinds = ["ToTensor" if name in TO_TENSOR_STEPS else name for name in names]
    fields: dict = {}
    for step, kind in zip(steps, kinds, strict=True):
        if kind == "Resize":
            fields.update(resize=_as_size(step.size), interpolation=_interpolation_name(step.interpolation))
        elif kind == "CenterCrop":
            fields["crop"] = _as_crop(step.size)
        elif kind == "Normalize":
            fields.update(mean=_float32_values(step.mean), std=_float32_values(step.std))
    if tuple(kinds) != PLAIN_STEPS:
        return fields, f"its transform is {' + '.join(names)}, not a plain {' + '.join(PLAIN_STEPS)}"
    resize = steps[0]
    if resize.max_size is not None:
        return fields, f"its Resize has max_size {resize.max_size}"
    return fields, None


def _timm_config(name: str) -> DataConfig:
    import timm
    from timm.models import get_pretrained_cfg

    pretrained = get_pretrained_cfg(name)
    if pretrained is None:
        raise ValueError(f"timm model {name!r}: timm has no pretrained config for it")
    cfg = timm.data.resolve_data_config(pretrained_cfg=pretrained.to_dict())
    return _timm_transform_config(_jsonable(cfg), pretrained.num_classes or 1000,
                                  f"timm pretrained_cfg of {pretrained.architecture}.{pretrained.tag}")


def _timm_transform_config(cfg: dict, num_classes: int, source: str) -> DataConfig:
    """The data config of the eval transform timm builds from its resolved ``cfg``."""
    import timm

    fields, reason = _read_plain_steps(list(timm.data.create_transform(**cfg).transforms))
    height, width = cfg["input_size"][1:]
    crop = fields.pop("crop", height if height == width else (height, width))
    defaults = {"resize": crop, "interpolation": cfg["interpolation"], "mean": tuple(cfg["mean"]),
                "std": tuple(cfg["std"])}
    return DataConfig(input_size=tuple(cfg["input_size"]), crop=crop, **{**defaults, **fields},
                      num_classes=num_classes, library_transform={"library": "timm", "config": cfg},
                      library_only_reason=f"{source}: {reason}" if reason else None, source=source)


def at_input_size(config: DataConfig, size: int) -> DataConfig:
    """``config`` for its model exported at ``size`` x ``size``: a timm config as timm
    resolves it at that size (its crop_pct arithmetic, read off its transform); any other
    with its resize scaled as its crop is (a torchvision weights' transform is for its own
    size, so that recipe no longer applies and is dropped)."""
    if tuple(config.input_size) == (3, size, size):
        return config
    recipe = config.library_transform
    if recipe is not None and recipe["library"] == "timm":
        return _timm_transform_config({**recipe["config"], "input_size": [3, size, size]}, config.num_classes,
                                      f"{config.source}, at {size}")
    if config.library_only_reason is not None:
        raise ValueError(f"data config of {config.source}: only its library's transform preprocesses it "
                         f"({config.library_only_reason}), which cannot be rescaled to {size}")
    _, height, width = config.input_size
    resize = config.resize
    scaled = round(size * resize / height) if isinstance(resize, int) else (
        round(size * resize[0] / height), round(size * resize[1] / width))
    return replace(config, input_size=(3, size, size), crop=size, resize=scaled, library_transform=None,
                   source=config.source and f"{config.source}, scaled to {size}")


def _torchvision_config(name: str) -> DataConfig:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"torchvision model {name!r}: not one of torchvision's classifiers")
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return DataConfig(source=f"torchvision defaults: {name} has no weights in torchvision")
    label = f"{type(weights).__name__}.{weights.name}"
    transform = weights.transforms()
    recipe = {"library": "torchvision", "weights": label}
    if type(transform).__name__ != "ImageClassification":
        raise ValueError(f"torchvision model {name!r}: {label}.transforms() is {type(transform).__name__}, "
                         f"not an image classification transform")
    crop = _as_crop(transform.crop_size)
    height, width = (crop, crop) if isinstance(crop, int) else crop
    return DataConfig(input_size=(3, height, width), resize=_as_size(transform.resize_size), crop=crop,
                      interpolation=_interpolation_name(transform.interpolation),
                      mean=tuple(transform.mean), std=tuple(transform.std),
                      num_classes=len(weights.meta["categories"]), library_transform=recipe,
                      source=f"torchvision {label}.transforms()")


def _jsonable(value):
    """timm's resolved config with tuples as lists, as the model-info JSON stores it."""
    if isinstance(value, dict):
        return {key: _jsonable(v) for key, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value
