"""The data config a model carries: what its input must look like.

It plays the part of timm's ``pretrained_cfg``: the zoo attaches one to every model (for a
timm or torchvision model it is read off that library's own eval transform, see
:mod:`engine.models.library_config`), export writes it into the model-info JSON, and every
preprocessing path (the engine, calibration, the server, the benchmarks) reads it from
there, so resize/crop/mean/std are never configured twice.

``input_size`` is authoritative for shapes. ``resize``, ``crop`` and ``interpolation``
describe torchvision's ``Resize(resize) + CenterCrop(crop)``, which the fused kernel does
bit-exactly for the interpolations it has. ``library_transform`` is the recipe to rebuild
the library's own transform (it travels with every library model), and
``library_only_reason`` says why that transform is not a plain resize + crop (timm's
``border`` crop mode, a trimmed border, ...): such a model can only be preprocessed by its
library.

``crop_offset`` and ``channel_order`` (and the ``opencv_*`` interpolations) come
from a vendor ``vdsp_params`` file (:mod:`engine.data.vdsp_params`): a crop at a given
(top, left) instead of the centre, and BGR channels. No library config sets them; the
fused kernel does neither, so such a config runs on the direct path of
:mod:`engine.models.preprocessing`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine import kernels
from engine.kernels import IMAGENET_MEAN, IMAGENET_STD

PILLOW_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
# OpenCV's cv2.resize with INTER_LINEAR (no antialias: the vendor's BILINEAR_CV) or INTER_NEAREST.
OPENCV_INTERPOLATIONS = ("opencv_bilinear", "opencv_nearest")
CHANNEL_ORDERS = ("RGB", "BGR")
TRANSFORM_LIBRARIES = ("timm", "torchvision")
SIZE_KEYS = ("input_size", "resize", "crop", "mean", "std", "crop_offset")


def _size_pair(value, name: str) -> tuple[int, int]:
    """(height, width) of an int (square) or a 2-sequence of positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"data config: {name} {value!r}: need a positive int or [height, width]")
    return pair


def _check_recipe(recipe) -> None:
    if not isinstance(recipe, dict) or recipe.get("library") not in TRANSFORM_LIBRARIES:
        raise ValueError(f"data config: library_transform {recipe!r}: need a dict whose 'library' is one of "
                         f"{', '.join(TRANSFORM_LIBRARIES)}")
    wanted = "config" if recipe["library"] == "timm" else "weights"
    if wanted not in recipe:
        raise ValueError(f"data config: library_transform for {recipe['library']} needs {wanted!r}")


def _check_crop_offset(offset, resize, crop: tuple[int, int]) -> None:
    """A (top, left) crop inside a (height, width) resize: a short-edge resize has no fixed
    size to place a crop in."""
    if isinstance(resize, int) or len(tuple(offset)) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in offset):
        raise ValueError(f"data config: crop_offset {offset!r}: need [top, left] (ints >= 0) with a "
                         f"[height, width] resize")
    top, left = offset
    if top + crop[0] > resize[0] or left + crop[1] > resize[1]:
        raise ValueError(f"data config: crop {crop} at crop_offset {tuple(offset)} leaves resize {resize!r}")


@dataclass(frozen=True)
class DataConfig:
    input_size: tuple[int, int, int] = (3, 224, 224)
    resize: int | tuple[int, int] = 256
    crop: int | tuple[int, int] = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000
    library_transform: dict | None = field(default=None, hash=False)
    library_only_reason: str | None = None
    source: str | None = None
    crop_offset: tuple[int, int] | None = None
    channel_order: str = "RGB"

    def __post_init__(self):
        size = tuple(self.input_size)
        if len(size) != 3 or size[0] != 3:
            raise ValueError(f"data config: input_size {self.input_size!r}: need [3, height, width]")
        _size_pair(size[1:], "input_size")
        resize = _size_pair(self.resize, "resize")
        crop = _size_pair(self.crop, "crop")
        if crop != size[1:]:
            raise ValueError(f"data config: crop {self.crop!r} does not give input_size {self.input_size!r}")
        if self.interpolation not in PILLOW_INTERPOLATIONS + OPENCV_INTERPOLATIONS:
            raise ValueError(f"data config: interpolation {self.interpolation!r}: choose from "
                             f"{', '.join(PILLOW_INTERPOLATIONS + OPENCV_INTERPOLATIONS)}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"data config: channel_order {self.channel_order!r}: choose from "
                             f"{', '.join(CHANNEL_ORDERS)}")
        if self.crop_offset is not None:
            _check_crop_offset(self.crop_offset, self.resize, crop)
        if self.library_transform is None and (crop[0] > resize[0] or crop[1] > resize[1]):
            raise ValueError(f"data config: crop {self.crop!r} is larger than resize {self.resize!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"data config: mean {self.mean} / std {self.std}: need 3 values each, std > 0")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"data config: num_classes {self.num_classes!r}: need a positive int")
        if self.library_transform is not None:
            _check_recipe(self.library_transform)
        if self.library_only_reason is not None and self.library_transform is None:
            raise ValueError(f"data config: library_only_reason {self.library_only_reason!r} without a "
                             f"library_transform to run instead")

    def kernel_limitation(self) -> str | None:
        """None when the fused kernel reproduces this preprocessing bit for bit, else why not."""
        if self.library_only_reason is not None:
            return self.library_only_reason
        if self.crop_offset is not None:
            return f"a crop at (top, left) {tuple(self.crop_offset)}, not centred"
        if self.channel_order != "RGB":
            return f"{self.channel_order} channel order"
        return kernels.kernel_limitation(self.resize, self.crop, self.interpolation)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"data config: unknown keys {sorted(unknown)}")
        kw = dict(d)
        for key in SIZE_KEYS:
            if isinstance(kw.get(key), list):
                kw[key] = tuple(kw[key])
        return cls(**kw)


@dataclass
class ModelInfo:
    """Contents of the model-info JSON written beside every exported/built model."""

    name: str
    library: str
    model_file: str
    input_name: str = "input"
    output_names: list[str] = field(default_factory=lambda: ["output"])
    input_shape: list = field(default_factory=lambda: ["batch", 3, 224, 224])
    output_shapes: list = field(default_factory=lambda: [["batch", 1000]])
    data_config: DataConfig = field(default_factory=DataConfig)
    class_names: list[str] | None = None
    weights: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data_config"] = self.data_config.to_dict()
        return d

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelInfo:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"model info {path}: no such file") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"model info {path}: not valid JSON ({e})") from None
        d["data_config"] = DataConfig.from_dict(d.get("data_config", {}))
        known = set(cls.__dataclass_fields__)
        extra = {k: d.pop(k) for k in list(d) if k not in known}
        info = cls(**d)
        info.extra.update(extra)
        return info

    @staticmethod
    def path_for(model_file: str | Path) -> Path:
        """The model-info JSON that travels with a model file: same stem, ``.json``."""
        return Path(model_file).with_suffix(".json")
