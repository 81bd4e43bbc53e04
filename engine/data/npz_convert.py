"""An image folder to seed-style ``.npz`` files and a datalist (``python -m engine.image2npz``).

Every ``.jpg .jpeg .png .bmp .webp`` file (any case) under the dataset folder is decoded
to RGB exactly as ``engine.data.decode.decode_image`` does it and stored uncompressed
(``np.savez``) under the key ``input_0`` as uint8 CHW at its original size, in
``TARGET/<parent folder name>/<stem>.npz``. The datalist lists the
written files' absolute paths, sorted.

Unreadable images, and images whose output path another image would also take (``a.jpg``
next to ``a.png``, or two folders with the same name), are skipped and listed with the
reason. Every output is written to a temporary file and
renamed into place, so an interrupted or repeated run never leaves a partial ``.npz``.
Outputs are always rewritten rather than trusted by date: a target folder may hold files
from another dataset with the same names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from engine.data.atomic import replaced_when_written
from engine.data.datalist import IMAGE_SUFFIXES, scan_images, write_datalist
from engine.data.decode import DEFAULT_MAX_PIXELS, NPZ_KEY, DecodeError, decode_image
from engine.data.folder_jobs import SkipReport, map_with_progress, refuse_shared


@dataclass
class Summary(SkipReport):
    """What a conversion did: ``converted`` is the datalist (sorted npz paths)."""

    target_path: Path
    text_path: Path
    converted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, reason)

    def headline(self) -> str:
        return (f"image2npz: {len(self.converted)} images converted into {self.target_path}, "
                f"datalist {self.text_path}; {len(self.skipped)} skipped")


def output_path(image: str | Path, target_path: str | Path) -> Path:
    """``TARGET/<parent folder name>/<stem>.npz``, the seed's naming."""
    image = Path(image)
    return Path(target_path) / image.parent.name / f"{image.stem}.npz"


def plan(images: list[str], target_path: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """Pair each image with its output; images that share an output are refused."""
    kept, refused = refuse_shared(images, partial(output_path, target_path=target_path),
                                  lambda output, others: f"output {output} would also be written from {others}; "
                                                         "rename one of them")
    return [(image, output_path(image, target_path)) for image in kept], refused


def write_npz(output: Path, image_hwc: np.ndarray) -> None:
    """Store ``image_hwc`` as CHW under ``input_0``, atomically (temp file + rename)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with replaced_when_written(output) as temp, open(temp, "xb") as f:
        np.savez(f, **{NPZ_KEY: np.ascontiguousarray(image_hwc.transpose(2, 0, 1))})


def convert_one(job: tuple[str, Path], max_pixels: int | None) -> tuple[str, Path, str | None]:
    """Convert one image; returns ``(image, output, reason it was skipped or None)``."""
    image, output = job
    try:
        write_npz(output, decode_image(image, max_pixels=max_pixels))
    except DecodeError as e:
        return image, output, e.reason
    except OSError as e:
        return image, output, f"cannot write {output}: {e.strerror or e}"
    return image, output, None


def convert_folder(dataset_path: str | Path, target_path: str | Path,
                   text_path: str | Path = "npz_datalist.txt", workers: int = 1,
                   quiet: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Summary:
    """Convert every image under ``dataset_path``; see the module docstring."""
    images = scan_images(dataset_path)
    if not images:
        raise ValueError(f"no images ({' '.join(sorted(IMAGE_SUFFIXES))}) under {dataset_path}")
    target = Path(os.path.abspath(target_path))  # normalized, symlinks kept as named
    summary = Summary(target_path=target, text_path=Path(os.path.abspath(text_path)))
    jobs, summary.skipped = plan(images, target)
    convert = partial(convert_one, max_pixels=max_pixels)
    for image, output, reason in map_with_progress(convert, jobs, workers, "image2npz", quiet):
        if reason is None:
            summary.converted.append(str(output))
        else:
            summary.skipped.append((image, reason))
    summary.converted.sort()
    summary.skipped.sort()
    summary.text_path.parent.mkdir(parents=True, exist_ok=True)
    write_datalist(summary.text_path, summary.converted)
    return summary
