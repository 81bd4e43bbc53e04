"""``engine.zoo list --all``: every classifier the zoo's table and the installed libraries offer,
with its input size and preprocessing, without building a network.

Each library model's data config is its library's (:func:`engine.models.library_config.data_config_for`),
read from its pretrained config and eval transform, never from the network. Doing that for
the few thousand names timm and torchvision list takes seconds, so the rows are kept per
installed library version under the user's cache folder and read back from there.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.data.dataconfig import DataConfig
from engine.models import catalog
from engine.models.library_models import LIBRARY_SOURCES, library_names, library_version

LISTING_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vgg-stream-engine" / "zoo-list"
LISTING_FORMAT = 1  # bump when a row's fields change, so old cached listings are not read


@dataclass(frozen=True)
class ListedModel:
    """One classifier as ``list --all`` shows it; ``note`` says why a config could not be read."""

    name: str
    library: str
    input_size: tuple[int, ...]
    interpolation: str
    crop: str  # "resize->crop", resize being the shorter side or "HxW" for an exact size
    note: str = ""

    @classmethod
    def of(cls, name: str, library: str, config: DataConfig) -> ListedModel:
        resize = config.resize if isinstance(config.resize, int) else "x".join(map(str, config.resize))
        crop = config.crop if isinstance(config.crop, int) else "x".join(map(str, config.crop))
        note = f"its library's transform only: {config.library_only_reason}" if config.library_only_reason else ""
        return cls(name, library, tuple(config.input_size), config.interpolation, f"{resize}->{crop}", note)


def _library_rows(library: str) -> list[ListedModel]:
    from engine.models.library_config import data_config_for

    rows = []
    for name in sorted(library_names(library)):
        try:
            rows.append(ListedModel.of(name, library, data_config_for(name, library)))
        except Exception as e:  # a library's config can fail in many ways; list the model anyway
            rows.append(ListedModel(name, library, (), "-", "-", note=f"{type(e).__name__}: {e}"))
    return rows


def listing_file(library: str) -> Path:
    return LISTING_DIR / f"{library}-{library_version(library)}-v{LISTING_FORMAT}.json"


def library_rows(library: str) -> list[ListedModel]:
    """``library``'s rows, from the cache when this version was listed before."""
    path = listing_file(library)
    if path.is_file():
        return [ListedModel(**{**r, "input_size": tuple(r["input_size"])}) for r in json.loads(path.read_text())]
    print(f"engine.zoo: reading the data configs of {library} {library_version(library)} "
          f"(once per version, kept in {path.parent})", file=sys.stderr, flush=True)
    rows = _library_rows(library)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps([asdict(r) for r in rows]))
    partial.replace(path)
    return rows


def all_models() -> list[ListedModel]:
    """The zoo's table first, then every timm and every torchvision classifier."""
    table = [ListedModel.of(e.name, e.library, e.data_config) for e in catalog.entries()]
    in_table = {(row.name, row.library) for row in table}
    return table + [row for library in LIBRARY_SOURCES for row in library_rows(library)
                    if (row.name, row.library) not in in_table]
