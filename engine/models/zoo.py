"""The model zoo's builders: the VGG family from timm, torchvision and mmcls, EfficientNet-Lite0,
and any other image classifier of timm or torchvision by name.

Every entry is built by its own library (mmcls by :mod:`engine.models.mmcls_vgg`, which
reproduces mmcls's network and key names without depending on mmcls) and carries its
data config, the way timm's ``pretrained_cfg`` travels with a timm model. The static
facts (names, data configs, measured counts) are in :mod:`engine.models.catalog`, which
reads them without torch; :func:`measured_table` measures them again on the built
networks (on the ``meta`` device), which is what keeps the catalog's table true. Any other
timm or torchvision classifier gets its data config from its library's eval transform
(:mod:`engine.models.library_config`) and its counts measured on the ``meta`` device.
"""
from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.data.dataconfig import DataConfig, ModelInfo
from engine.data.labels import imagenet_class_names
from engine.models import catalog, efficientnet_lite, mmcls_vgg, torchvision_builds
from engine.models.catalog import Complexity, Entry, random_weights, weights_label
from engine.models.checkpoints import load_checkpoint
from engine.models.flops import measure
from engine.models.library_models import resolve_model_ref


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: how to build it and what its input must look like."""

    name: str
    library: str
    build: Callable[[], nn.Module]
    data_config: DataConfig
    vgg_layout: str | None = None  # checkpoint key layout, for VGG cross-loading
    default_weights: Callable[[], Path] | None = None  # trained weights shipped in a package
    unused_checkpoint_prefixes: tuple[str, ...] = ()  # checkpoint keys the eval network drops


def _build_timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


def _build_efficientnet_lite0() -> nn.Module:
    # The package prints a line on construction; keep the zoo's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return efficientnet_lite.build()


@functools.cache
def _timm_data_config(name: str) -> DataConfig:
    """timm's own pretrained_cfg for a VGG of the table, as a DataConfig (resize = floor(crop /
    crop_pct), timm's arithmetic)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name).to_dict()
    crop = cfg["input_size"][-1]
    return DataConfig(
        input_size=tuple(cfg["input_size"]),
        resize=math.floor(crop / cfg["crop_pct"]),
        crop=crop,
        interpolation=cfg["interpolation"],
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        num_classes=cfg["num_classes"],
    )


def _spec(name: str, library: str) -> ModelSpec:
    if library == "timm":
        return ModelSpec(name, library, functools.partial(_build_timm, name), _timm_data_config(name), library)
    if library == "torchvision":
        return ModelSpec(name, library, functools.partial(torchvision_builds.build, name), DataConfig(), library)
    if library == "mmcls":
        return ModelSpec(name, library, functools.partial(mmcls_vgg.build, name), DataConfig(), library)
    return ModelSpec(name, library, _build_efficientnet_lite0, DataConfig(),
                     default_weights=efficientnet_lite.weights_file)


@functools.cache
def specs() -> tuple[ModelSpec, ...]:
    return tuple(_spec(name, library) for name, library in catalog.zoo_keys())


@functools.cache
def get_spec(name: str, library: str | None = None) -> ModelSpec:
    """The entry for ``name`` from ``library`` (see :func:`engine.models.library_models.resolve_model_ref`):
    a row of the zoo's table, or any classifier of timm or torchvision with its library's data config."""
    ref = resolve_model_ref(name, library)
    if ref.in_table:
        return next(s for s in specs() if (s.name, s.library) == (ref.name, ref.library))
    from engine.models.library_config import data_config_for

    timm_model = ref.library == "timm"
    build = _build_timm if timm_model else torchvision_builds.build
    unused = () if timm_model else torchvision_builds.unused_checkpoint_prefixes(ref.name)
    return ModelSpec(ref.name, ref.library, functools.partial(build, ref.name), data_config_for(ref.name, ref.library),
                     unused_checkpoint_prefixes=unused)


@functools.cache
def complexity(name: str, library: str | None = None, size: int | None = None) -> Complexity:
    """Parameters and MACs for one ``size``x``size`` image (the model's own input size when
    None): the table's for a table model at its size, else measured on the network built on
    the ``meta`` device (instant, no weights)."""
    ref = resolve_model_ref(name, library)
    if ref.in_table and (size is None or (3, size, size) == tuple(ref.entry.data_config.input_size)):
        return ref.entry.complexity
    spec = get_spec(name, library)
    input_size = tuple(spec.data_config.input_size) if size is None else (3, size, size)
    return _measure(spec, input_size)


def _build_on_meta(spec: ModelSpec) -> nn.Module | None:
    """The network with no storage behind its tensors (instant, no random init), or None
    where its constructor needs real tensors (torchvision's RegNets compute their widths
    with ``.tolist()``, which meta tensors cannot give)."""
    try:
        with torch.device("meta"):
            return spec.build()
    except NotImplementedError:
        return None


def _measure(spec: ModelSpec, input_size: tuple[int, int, int]) -> Complexity:
    module = _build_on_meta(spec)
    return measure(spec.build() if module is None else module, input_size)


def measured_table() -> list[dict]:
    """Every entry's catalog row measured afresh on the built networks (zoo_table.json's content)."""
    return [Entry(s.name, s.library, s.data_config, _measure(s, tuple(s.data_config.input_size))).to_dict()
            for s in specs()]


@dataclass
class ZooModel:
    module: nn.Module
    name: str
    library: str
    data_config: DataConfig
    weights: dict
    class_names: list[str] | None = None

    def __post_init__(self):
        if self.class_names is None and self.data_config.num_classes == 1000:
            self.class_names = list(imagenet_class_names())

    @property
    def weights_label(self) -> str:
        return weights_label(self.weights)

    def complexity(self, size: int | None = None) -> Complexity:
        return complexity(self.name, self.library, size)


def _has_unsaved_buffers(module: nn.Module) -> bool:
    saved = set(module.state_dict())
    return any(name not in saved for name, _ in module.named_buffers())


def _build_for_weights(spec: ModelSpec) -> nn.Module:
    """An uninitialised network on the CPU, for a checkpoint to fill (skips random init
    where it can)."""
    module = _build_on_meta(spec)
    if module is None or _has_unsaved_buffers(module):
        return spec.build()
    return module.to_empty(device="cpu")


def create(name: str, library: str | None = None, weights: str | Path | None = None,
           seed: int = 0) -> ZooModel:
    """The network ``name`` from ``library``, in eval mode, with its data config.

    ``weights``: a checkpoint file (any of the three VGG key layouts loads into any
    library's VGG; any other network takes its library's own state-dict keys). Without one
    the network gets random weights seeded with ``seed``; a model whose trained weights
    ship in a package (efficientnet_lite0) gets those. ``library``: see
    :func:`engine.models.library_models.resolve_model_ref` (None: timm for the VGGs and
    for any name timm has, else torchvision).
    """
    spec = get_spec(name, library)
    if weights is None and spec.default_weights is not None:
        weights = spec.default_weights()
    target = f"{spec.library} {spec.name}"
    if weights is not None:
        module = _build_for_weights(spec)
        info = load_checkpoint(module, weights, layout=spec.vgg_layout, target=target,
                               unused_prefixes=spec.unused_checkpoint_prefixes)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = spec.build()
        info = random_weights(seed)
    module.eval()
    return ZooModel(module=module, name=spec.name, library=spec.library,
                    data_config=spec.data_config, weights=info)


def create_from_model_info(model_path: str | Path) -> tuple[ZooModel, ModelInfo]:
    """The zoo model a model-info JSON names (the one beside ``model_path``, or the JSON itself),
    with its weights file resolved against the JSON's folder."""
    model_path = Path(model_path)
    info_path = model_path if model_path.suffix == ".json" else ModelInfo.path_for(model_path)
    info = ModelInfo.load(info_path)
    weights_file = info.weights.get("file")
    if weights_file and not Path(weights_file).is_absolute():
        weights_file = str(info_path.parent / weights_file)
    model = create(info.name, library=info.library, weights=weights_file, seed=int(info.weights.get("seed", 0)))
    return model, info
