"""Ground-truth labels and class names in the formats the seed's users have.

- ``val_label.txt`` style: ``<file name> <int class index>`` per line, matched on the stem.
- folder style: ``val/<wnid>/<image>``; a wnid's index is its position in the sorted
  list of the 1000 ILSVRC2012 wnids.
- class names: one line per class index (``tench, Tinca tinca``).

The ImageNet lists (the sorted wnids and their WordNet lemmas, as timm ships them) are the
package's own ``imagenet_classes.tsv``, one ``wnid<TAB>names`` line per class index: the
core install, which has no timm, labels folders and names classes too, and reading them
imports nothing.
"""
from __future__ import annotations

import functools
from pathlib import Path

from engine.data.tar_shards import parse_ref

IMAGENET_CLASSES = Path(__file__).with_name("imagenet_classes.tsv")


@functools.cache
def _imagenet_classes() -> tuple[tuple[str, str], ...]:
    """``(wnid, names)`` per class index."""
    rows = tuple(tuple(line.split("\t", 1)) for line in IMAGENET_CLASSES.read_text().splitlines())
    wnids = [row[0] for row in rows]
    if len(rows) != 1000 or wnids != sorted(wnids) or any(len(row) != 2 for row in rows):
        raise RuntimeError(f"{IMAGENET_CLASSES}: not 1000 sorted 'wnid<TAB>names' lines")
    return rows


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 WordNet ids, sorted: index i is class i."""
    return tuple(wnid for wnid, _ in _imagenet_classes())


@functools.cache
def imagenet_wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(imagenet_wnids())}


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """One name per class index, ``tench, Tinca tinca`` style."""
    return tuple(names for _, names in _imagenet_classes())


def class_name(names, cls: int) -> str:
    """Class ``cls``'s name in ``names`` (None: no names), or its index as text."""
    return names[cls] if names and 0 <= cls < len(names) else str(int(cls))


def read_class_names(path: str | Path) -> list[str]:
    """A ``label.txt``/``imagenet.txt`` file: one class name per line, by index."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise OSError(f"class names {path}: {e.strerror or e}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def read_label_file(path: str | Path) -> dict[str, int]:
    """``<file name> <class index>`` lines to ``{stem: index}``.

    Blank lines and ``#`` comments are skipped; a malformed line or a stem given two
    different labels is an error naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise OSError(f"label file {path}: {e.strerror or e}") from None
    labels: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"label file {path}:{lineno}: expected '<file> <class index>', got {raw!r}")
        stem = Path(parts[0]).stem
        index = int(parts[1])
        if labels.get(stem, index) != index:
            raise ValueError(f"label file {path}:{lineno}: {stem} labelled {labels[stem]} and {index}")
        labels[stem] = index
    return labels


def label_from_folder(path: str | Path) -> int | None:
    """Class index from the WordNet id of an item's parent folder, None if it is no wnid."""
    return imagenet_wnid_index().get(Path(path).parent.name)


def _label_path(item) -> str:
    """The name labels are looked up by: the path, or a tar shard member's name."""
    ref = parse_ref(str(item))
    return str(item) if ref is None else ref.member


class LabelSource:
    """Looks up the true class of an item path from a label file or from its folder; a tar
    shard member's reference (engine/data/tar_shards.py) is looked up by its member name,
    and with ``embedded`` (no file, no folders) carries its own label (its ``cls``/``json``)."""

    def __init__(self, label_file: str | Path | None = None, from_folders: bool = False, embedded: bool = False):
        if label_file is not None and from_folders:
            raise ValueError("give a label file or use folder labels, not both")
        self._by_stem = read_label_file(label_file) if label_file is not None else None
        self._from_folders = from_folders
        self._embedded = embedded

    @property
    def active(self) -> bool:
        return self._by_stem is not None or self._from_folders or self._embedded

    def shared_label_lines(self, items) -> dict[str, list[str]]:
        """Label-file names that several different items take (``a/x.jpg`` and ``b/x.jpg``
        both match the line for ``x``): {stem: the items}. Folder labels never collide."""
        if self._by_stem is None:
            return {}
        takers: dict[str, set[str]] = {}
        for item in items:
            stem = Path(_label_path(item)).stem
            if stem in self._by_stem:
                takers.setdefault(stem, set()).add(str(item))
        return {stem: sorted(paths) for stem, paths in takers.items() if len(paths) > 1}

    def shared_label_warning(self, items, label_file: str) -> str | None:
        """One warning line when some label lines each label several items, else None."""
        shared = self.shared_label_lines(items)
        if not shared:
            return None
        stem, paths = next(iter(shared.items()))
        return (f"warning: --label {label_file}: {len(shared)} label lines each label several items with the "
                f"same file name (first: {stem!r} labels {', '.join(paths)})")

    def __call__(self, item_path: str | Path) -> int | None:
        if self._by_stem is not None:
            return self._by_stem.get(Path(_label_path(item_path)).stem)
        if self._from_folders:
            return label_from_folder(_label_path(item_path))
        if self._embedded:
            ref = parse_ref(str(item_path))
            return None if ref is None else ref.label
        return None
