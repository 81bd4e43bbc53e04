"""The data config a model carries: what its input must look like.

It plays the part of timm's ``pretrained_cfg``: the zoo attaches one to every model,
export writes it into the model-info JSON, and every preprocessing path (the engine,
calibration, the server, the benchmarks) reads it from there, so resize/crop/mean/std
are never configured twice.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kernels import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class DataConfig:
    input_size: tuple[int, int, int] = (3, 224, 224)
    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000

    def __post_init__(self):
        if self.interpolation != "bilinear":
            raise ValueError(f"interpolation {self.interpolation!r}: only 'bilinear' is supported")
        if self.crop > self.resize:
            raise ValueError(f"crop {self.crop} is larger than resize {self.resize}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean {self.mean} / std {self.std}: need 3 values each, std > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"data config: unknown keys {sorted(unknown)}")
        kw = dict(d)
        for key in ("input_size", "mean", "std"):
            if key in kw:
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
