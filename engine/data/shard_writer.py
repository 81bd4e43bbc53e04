"""An image folder as WebDataset tar shards (``python -m engine.image2npz --shards PREFIX``).

Every image under the dataset folder (the ``--images`` scan: recursive, sorted, so shard
order then member order is the order an ``--images`` run of the folder takes, item for
item) is stored as its own file's bytes, not re-encoded, under the key
``<parent folder>/<stem>`` (dots in the stem become ``_``: WebDataset's key ends at the
first dot), with a ``cls`` member holding the class index when the parent folder is an
ImageNet wnid (``val/<wnid>/``). Each image is decoded first, as image2npz does, and an
unreadable one is skipped and listed, as are images that would take one key.

Shards are ``PREFIX-000000.tar``, ``PREFIX-000001.tar``, ... of ``shard_size`` samples,
each written under a temporary name and renamed; the shard list (the text file ``--shards``
takes) goes to ``text_path``.
"""
from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from engine.data.atomic import replaced_when_written
from engine.data.datalist import IMAGE_SUFFIXES, scan_images, write_datalist
from engine.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image
from engine.data.folder_jobs import SkipReport, map_with_progress, refuse_shared
from engine.data.labels import label_from_folder


@dataclass
class ShardSummary(SkipReport):
    prefix: Path
    text_path: Path
    shards: list[str] = field(default_factory=list)
    samples: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, reason)

    def headline(self) -> str:
        return (f"image2npz: {self.samples} images into {len(self.shards)} shard(s) {self.prefix}-*.tar, shard list "
                f"{self.text_path}; {len(self.skipped)} skipped")


def sample_key(image: str) -> str:
    path = Path(image)
    return f"{path.parent.name}/{path.stem.replace('.', '_')}"


def _check(image: str, max_pixels: int | None) -> str | None:
    """Why ``image`` cannot be stored (it does not decode), or None."""
    try:
        decode_image(image, max_pixels=max_pixels)
    except DecodeError as e:
        return e.reason
    return None


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_shard(path: Path, images: list[str]) -> None:
    with replaced_when_written(path) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for image in images:
            key = sample_key(image)
            _add(tar, f"{key}.{Path(image).suffix.lower().lstrip('.')}", Path(image).read_bytes())
            label = label_from_folder(image)
            if label is not None:
                _add(tar, f"{key}.cls", str(label).encode())


def write_shards(dataset_path: str | Path, prefix: str | Path, shard_size: int, text_path: str | Path,
                 workers: int = 1, quiet: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ShardSummary:
    """Write every readable image under ``dataset_path`` into shards (see the module docstring)."""
    images = scan_images(dataset_path)
    if not images:
        raise ValueError(f"no images ({' '.join(sorted(IMAGE_SUFFIXES))}) under {dataset_path}")
    prefix = Path(os.path.abspath(prefix))
    summary = ShardSummary(prefix, Path(os.path.abspath(text_path)))
    images, summary.skipped = refuse_shared(images, sample_key, lambda key, others: f"key {key} would also be "
                                            f"taken by {others}; rename one of them")
    reasons = list(map_with_progress(partial(_check, max_pixels=max_pixels), images, workers,
                                     "image2npz --shards", quiet))
    good = [image for image, reason in zip(images, reasons) if reason is None]
    summary.skipped += [(image, reason) for image, reason in zip(images, reasons) if reason is not None]
    summary.skipped.sort()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for n, start in enumerate(range(0, len(good), shard_size)):
        path = prefix.with_name(f"{prefix.name}-{n:06d}.tar")
        _write_shard(path, good[start:start + shard_size])
        summary.shards.append(str(path))
    summary.samples = len(good)
    summary.text_path.parent.mkdir(parents=True, exist_ok=True)
    write_datalist(summary.text_path, summary.shards)
    return summary
