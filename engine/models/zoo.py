"""The model zoo: the VGG family from timm, torchvision and mmcls, plus EfficientNet-Lite0.

Every entry is built by its own library (mmcls by :mod:`engine.models.mmcls_vgg`, which
reproduces mmcls's network and key names without depending on mmcls) and carries its
data config, the way timm's ``pretrained_cfg`` travels with a timm model. Parameter and
MAC counts are measured on the built network (on the ``meta`` device, so listing all
models takes seconds); only the reference accuracies are transcribed from the published
tables (the seed's, ``shared/seed/README-en.md``). ``python -m engine.zoo`` prints it.
"""
from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from engine.data.dataconfig import DataConfig, ModelInfo
from engine.data.labels import imagenet_class_names
from engine.models import efficientnet_lite, mmcls_vgg
from engine.models.checkpoints import load_checkpoint
from engine.models.flops import Complexity, measure

LIBRARIES = ("timm", "torchvision", "mmcls")
VGG_NAMES = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
EFFICIENTNET_LIBRARY = "efficientnet_lite_pytorch"

# Published ImageNet-1k val top-1 / top-5 at 224 (the seed's reference table).
REFERENCE_ACCURACY: dict[tuple[str, str], tuple[float, float]] = {
    ("vgg11", "timm"): (69.028, 88.626), ("vgg11_bn", "timm"): (70.360, 89.802),
    ("vgg13", "timm"): (69.926, 89.246), ("vgg13_bn", "timm"): (71.594, 90.376),
    ("vgg16", "timm"): (71.590, 90.382), ("vgg16_bn", "timm"): (73.350, 91.504),
    ("vgg19", "timm"): (72.366, 90.870), ("vgg19_bn", "timm"): (74.214, 91.848),
    ("vgg11", "torchvision"): (69.02, 88.626), ("vgg11_bn", "torchvision"): (70.37, 89.81),
    ("vgg13", "torchvision"): (69.928, 89.246), ("vgg13_bn", "torchvision"): (71.586, 90.374),
    ("vgg16", "torchvision"): (71.592, 90.382), ("vgg16_bn", "torchvision"): (73.36, 91.516),
    ("vgg19", "torchvision"): (72.376, 90.876), ("vgg19_bn", "torchvision"): (74.218, 91.842),
    ("vgg11", "mmcls"): (68.75, 88.87), ("vgg11_bn", "mmcls"): (70.75, 90.12),
    ("vgg13", "mmcls"): (70.02, 89.46), ("vgg13_bn", "mmcls"): (72.15, 90.71),
    ("vgg16", "mmcls"): (71.62, 90.49), ("vgg16_bn", "mmcls"): (73.72, 91.68),
    ("vgg19", "mmcls"): (72.41, 90.80), ("vgg19_bn", "mmcls"): (74.70, 92.24),
}


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: how to build it and what its input must look like."""

    name: str
    library: str
    build: Callable[[], nn.Module]
    data_config: DataConfig
    vgg_layout: str | None = None  # checkpoint key layout, for VGG cross-loading
    flops_convention: str = "card"  # how the library's model card counts FLOPs
    default_weights: Callable[[], Path] | None = None  # trained weights shipped in a package


def _build_timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


def _build_torchvision(name: str) -> nn.Module:
    import torchvision

    return getattr(torchvision.models, name)(weights=None)


def _build_efficientnet_lite0() -> nn.Module:
    # The package prints a line on construction; keep the zoo's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return efficientnet_lite.build()


@functools.cache
def _timm_data_config(name: str) -> DataConfig:
    """timm's own pretrained_cfg for ``name``, as a DataConfig (crop_pct -> resize)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name).to_dict()
    crop = cfg["input_size"][-1]
    return DataConfig(
        input_size=tuple(cfg["input_size"]),
        resize=round(crop / cfg["crop_pct"]),
        crop=crop,
        interpolation=cfg["interpolation"],
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        num_classes=cfg["num_classes"],
    )


@functools.cache
def specs() -> tuple[ModelSpec, ...]:
    entries = []
    for library in LIBRARIES:
        for name in VGG_NAMES:
            if library == "timm":
                build, config = functools.partial(_build_timm, name), _timm_data_config(name)
            elif library == "torchvision":
                build, config = functools.partial(_build_torchvision, name), DataConfig()
            else:
                build, config = functools.partial(mmcls_vgg.build, name), DataConfig()
            entries.append(ModelSpec(name, library, build, config, vgg_layout=library,
                                     flops_convention="mmcv" if library == "mmcls" else "card"))
    entries.append(ModelSpec(
        "efficientnet_lite0", EFFICIENTNET_LIBRARY, _build_efficientnet_lite0, DataConfig(),
        default_weights=efficientnet_lite.weights_file))
    return tuple(entries)


def get_spec(name: str, library: str | None = None) -> ModelSpec:
    """The entry for ``name`` from ``library``; None picks timm, or the only source."""
    offered = [s for s in specs() if s.name == name]
    if not offered:
        names = sorted({s.name for s in specs()})
        raise KeyError(f"model {name!r} is not in the zoo; choose from {', '.join(names)}")
    if library is None:
        library = "timm" if any(s.library == "timm" for s in offered) else offered[0].library
    for s in offered:
        if s.library == library:
            return s
    raise KeyError(f"model {name!r} is not offered by {library!r}; it is by "
                   f"{', '.join(s.library for s in offered)}")


def data_config(name: str, library: str | None = None) -> DataConfig:
    """What ``name``'s input must look like: the preprocessing every path reads from here."""
    return get_spec(name, library).data_config


@functools.cache
def complexity(name: str, library: str | None = None, size: int | None = None) -> Complexity:
    """Parameters and MACs of the built network for one ``size``x``size`` image."""
    spec = get_spec(name, library)
    input_size = spec.data_config.input_size if size is None else (3, size, size)
    with torch.device("meta"):
        module = spec.build()
    return measure(module, tuple(input_size))


def list_models() -> list[dict]:
    """One row per model and source: measured size and cost beside the reference accuracy."""
    rows = []
    for spec in specs():
        c = complexity(spec.name, spec.library)
        top1, top5 = REFERENCE_ACCURACY.get((spec.name, spec.library), (None, None))
        rows.append({
            "name": spec.name,
            "library": spec.library,
            "params_m": c.params_m,
            "gmacs": c.gmacs,
            "gflops_card": (c.mmcv_flops if spec.flops_convention == "mmcv" else c.card_flops) / 1e9,
            "flops_convention": spec.flops_convention,
            "ref_top1": top1,
            "ref_top5": top5,
        })
    return rows


def random_weights(seed: int) -> dict:
    return {"random": True, "seed": int(seed)}


def weights_label(weights: dict) -> str:
    """What every report prints about a model's weights."""
    if weights.get("random"):
        return f"random weights (seed {weights['seed']})"
    return f"weights {Path(weights['file']).name} (sha256 {weights['sha256'][:12]})"


@dataclass
class ZooModel:
    module: nn.Module
    name: str
    library: str
    data_config: DataConfig
    weights: dict
    class_names: list[str] = field(default_factory=lambda: list(imagenet_class_names()))

    @property
    def weights_label(self) -> str:
        return weights_label(self.weights)

    def complexity(self, size: int | None = None) -> Complexity:
        return complexity(self.name, self.library, size)


def _has_unsaved_buffers(module: nn.Module) -> bool:
    saved = set(module.state_dict())
    return any(name not in saved for name, _ in module.named_buffers())


def _build_for_weights(spec: ModelSpec) -> nn.Module:
    """An uninitialised network on the CPU, for a checkpoint to fill (skips random init)."""
    with torch.device("meta"):
        module = spec.build()
    if _has_unsaved_buffers(module):
        return spec.build()
    return module.to_empty(device="cpu")


def create(name: str, library: str | None = "timm", weights: str | Path | None = None,
           seed: int = 0) -> ZooModel:
    """The network ``name`` from ``library``, in eval mode, with its data config.

    ``weights``: a checkpoint file (any of the three VGG key layouts loads into any
    library's VGG). Without one the network gets random weights seeded with ``seed``;
    a model whose trained weights ship in a package (efficientnet_lite0) gets those.
    ``library`` is ignored for a model that only one source offers.
    """
    offered = {s.library for s in specs() if s.name == name}
    if len(offered) == 1:
        library = next(iter(offered))
    spec = get_spec(name, library)
    if weights is None and spec.default_weights is not None:
        weights = spec.default_weights()
    target = f"{spec.library} {spec.name}"
    if weights is not None:
        module = _build_for_weights(spec)
        info = load_checkpoint(module, weights, layout=spec.vgg_layout, target=target)
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
