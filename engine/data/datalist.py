"""Datalists and image folders: the ordered list of items a run processes."""
from __future__ import annotations

import os
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
ITEM_SUFFIXES = IMAGE_SUFFIXES | {".npz"}


def read_datalist(path: str | Path) -> list[str]:
    """One item path per line; blank lines and ``#`` lines are skipped.

    Relative paths are taken relative to the datalist's own folder. Entries are not
    checked for existence here: a missing item becomes that item's error record.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise OSError(f"datalist {path}: {e.strerror or e}") from None
    base = path.resolve().parent
    items = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        items.append(line if os.path.isabs(line) else str(base / line))
    return items


def scan_images(root: str | Path, suffixes=IMAGE_SUFFIXES) -> list[str]:
    """Every file under ``root`` whose suffix (any case) is in ``suffixes``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {root}: not a directory")
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if Path(name).suffix.lower() in suffixes:
                # abspath, not resolve: a symlinked image keeps its folder (val/<wnid>/ made by valprep --link)
                found.append(os.path.join(os.path.abspath(dirpath), name))
    return sorted(found)


def write_datalist(path: str | Path, items) -> None:
    Path(path).write_text("".join(f"{item}\n" for item in items))
