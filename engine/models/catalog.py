"""The zoo's static facts, read without importing torch: which models exist, from which
library, their data config, parameter and MAC counts, and the reference accuracies.

Listing the zoo must not build 25 networks (that takes seconds of torch and timm imports
for facts that never change), so the measured counts and timm's data configs are kept
in ``zoo_table.json`` beside this module. ``tests/models/test_zoo_table.py`` measures every
network again and fails when the file disagrees, so it cannot drift; set
``ZOO_TABLE_WRITE=1`` when running that test to rewrite it. Only the reference
accuracies are transcribed from the published tables (the seed's,
``shared/seed/README-en.md``).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from engine.data.dataconfig import DataConfig

LIBRARIES = ("timm", "torchvision", "mmcls")
VGG_NAMES = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
EFFICIENTNET_LIBRARY = "efficientnet_lite_pytorch"
TABLE_FILE = Path(__file__).with_name("zoo_table.json")

# Published ImageNet-1k val top-1 / top-5 at 224 (the seed's reference table), per name in
# the order of LIBRARIES: timm, torchvision, mmcls.
_REFERENCE_ROWS: dict[str, tuple[tuple[float, float], ...]] = {
    "vgg11": ((69.028, 88.626), (69.02, 88.626), (68.75, 88.87)),
    "vgg11_bn": ((70.360, 89.802), (70.37, 89.81), (70.75, 90.12)),
    "vgg13": ((69.926, 89.246), (69.928, 89.246), (70.02, 89.46)),
    "vgg13_bn": ((71.594, 90.376), (71.586, 90.374), (72.15, 90.71)),
    "vgg16": ((71.590, 90.382), (71.592, 90.382), (71.62, 90.49)),
    "vgg16_bn": ((73.350, 91.504), (73.36, 91.516), (73.72, 91.68)),
    "vgg19": ((72.366, 90.870), (72.376, 90.876), (72.41, 90.80)),
    "vgg19_bn": ((74.214, 91.848), (74.218, 91.842), (74.70, 92.24)),
}
REFERENCE_ACCURACY: dict[tuple[str, str], tuple[float, float]] = {
    (name, library): accuracy
    for name, row in _REFERENCE_ROWS.items() for library, accuracy in zip(LIBRARIES, row, strict=True)
}


class UnknownModelError(LookupError):
    """A model name the zoo does not have, or a library that does not offer it; the
    message names what was asked for and lists what exists."""


@dataclass(frozen=True)
class Complexity:
    """Parameters and operation counts of one sample through a network (see engine.models.flops)."""

    params: int
    macs: int
    mmcv_flops: int
    bn_elements: int = 0

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def card_flops(self) -> int:
        """timm's / torchvision's model-card count: MACs plus 4 ops per batch-norm element."""
        return self.macs + 4 * self.bn_elements


@dataclass(frozen=True)
class Entry:
    """One zoo entry's static facts (counts at the data config's input size)."""

    name: str
    library: str
    data_config: DataConfig
    complexity: Complexity

    @property
    def flops_convention(self) -> str:
        """How the library's model card counts FLOPs."""
        return "mmcv" if self.library == "mmcls" else "card"

    def to_dict(self) -> dict:
        c = self.complexity
        return {"name": self.name, "library": self.library, "params": c.params, "macs": c.macs,
                "mmcv_flops": c.mmcv_flops, "bn_elements": c.bn_elements,
                "data_config": self.data_config.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> Entry:
        return cls(d["name"], d["library"], DataConfig.from_dict(d["data_config"]),
                   Complexity(d["params"], d["macs"], d["mmcv_flops"], d["bn_elements"]))


def zoo_keys() -> list[tuple[str, str]]:
    """Every (name, library) the zoo offers, in listing order."""
    return [(name, library) for library in LIBRARIES for name in VGG_NAMES] + \
        [("efficientnet_lite0", EFFICIENTNET_LIBRARY)]


@functools.cache
def entries() -> tuple[Entry, ...]:
    rows = {(r["name"], r["library"]): r for r in json.loads(TABLE_FILE.read_text())}
    return tuple(Entry.from_dict(rows[key]) for key in zoo_keys() if key in rows)


def resolve(name: str, library: str | None = None) -> Entry:
    """The entry for ``name`` from ``library``: None picks timm; a model that only one
    source offers ignores ``library``."""
    offered = [e for e in entries() if e.name == name]
    if not offered:
        names = sorted({e.name for e in entries()})
        raise UnknownModelError(f"model {name!r} is not in the zoo; choose from {', '.join(names)}")
    if len(offered) == 1:
        return offered[0]
    library = library or "timm"
    for e in offered:
        if e.library == library:
            return e
    raise UnknownModelError(f"model {name!r} is not offered by {library!r}; it is by "
                            f"{', '.join(e.library for e in offered)}")


def table_text(rows: list[dict]) -> str:
    """zoo_table.json's text for ``rows``: one entry per line, so a change reads as one line."""
    return "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n"


def list_models() -> list[dict]:
    """One row per model and source: measured size and cost beside the reference accuracy."""
    rows = []
    for e in entries():
        c = e.complexity
        top1, top5 = REFERENCE_ACCURACY.get((e.name, e.library), (None, None))
        rows.append({
            "name": e.name,
            "library": e.library,
            "params_m": c.params_m,
            "gmacs": c.gmacs,
            "gflops_card": (c.mmcv_flops if e.flops_convention == "mmcv" else c.card_flops) / 1e9,
            "flops_convention": e.flops_convention,
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
