"""Calibration and check data for ``engine.build``: which images, and how they are fed.

Images are chosen round-robin over their classes (the folder an image sits in, or its
label from a ``val_label.txt`` file), in sorted order, so every class present is
represented and the same config always picks the same images. The images not used for
calibration are the held-out pool the build's accuracy check draws from.

Every image goes through the inference path's own preprocessing: ``engine.data.decode``
then the ``kernels.resize_crop_normalize`` kernel with the model's data config, so the
ranges the quantizer measures are those of the tensors the deployed model will see.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from tqdm import tqdm

from engine.data.dataconfig import DataConfig
from engine.data.datalist import ITEM_SUFFIXES, read_datalist, scan_images
from engine.data.labels import LabelSource, imagenet_wnid_index


def list_items(path, suffix: str | None = None) -> list[str]:
    """The items of an image folder (recursive, sorted) or of a datalist file.

    ``suffix`` (the seed's ``dataset.sampler.suffix``, e.g. ``JPEG``) keeps only files
    with that extension, in any case.
    """
    path = Path(path)
    if path.is_dir():
        items = scan_images(path, ITEM_SUFFIXES)
    elif path.is_file():
        items = read_datalist(path)
    else:
        raise FileNotFoundError(f"calibration data {path}: no such folder or datalist")
    if suffix:
        wanted = "." + suffix.lower().lstrip(".")
        items = [i for i in items if Path(i).suffix.lower() == wanted]
    if not items:
        raise ValueError(f"calibration data {path}: no images found" + (f" with suffix {suffix!r}" if suffix else ""))
    return items


def class_key_function(labels: LabelSource | None) -> Callable[[str], str]:
    """What an item's class is for spreading: its label when known, else its folder."""

    def key(item: str) -> str:
        if labels is not None and labels.active:
            label = labels(item)
            if label is not None:
                return f"label:{label:06d}"
        return f"folder:{Path(item).parent}"

    return key


def spread_over_classes(items: list[str], count: int, class_of: Callable[[str], str]) -> list[str]:
    """Up to ``count`` items taken round-robin over classes (classes and items sorted)."""
    if count < 0:
        raise ValueError(f"count {count}: must be >= 0")
    groups: dict[str, list[str]] = defaultdict(list)
    for item in sorted(items):
        groups[class_of(item)].append(item)
    queues = [groups[k] for k in sorted(groups)]
    chosen: list[str] = []
    depth = 0
    while len(chosen) < count and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue):
                chosen.append(queue[depth])
                if len(chosen) == count:
                    break
        depth += 1
    return chosen


def folder_labels_apply(items: list[str]) -> bool:
    """True when every item sits in a folder named after an ImageNet wnid."""
    index = imagenet_wnid_index()
    return bool(items) and all(Path(i).parent.name in index for i in items)


def preprocess_item(item: str, config: DataConfig, out: np.ndarray | None = None) -> np.ndarray:
    """Decode ``item`` and run the engine's resize/crop/normalize kernel on it (CHW float32)."""
    import kernels
    from engine.data.decode import load_item

    img = load_item(item)
    return kernels.resize_crop_normalize(
        img, out, resize=config.resize, crop=config.crop, mean=config.mean, std=config.std
    )


def iter_batches(items: list[str], config: DataConfig, batch_size: int):
    """Yield ``(items, float32 (N, C, H, W))`` batches, preprocessed by the kernel."""
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        batch = np.empty((len(chunk), *config.input_size), np.float32)
        for i, item in enumerate(chunk):
            preprocess_item(item, config, out=batch[i])
        yield chunk, batch


class ImageCalibrationReader(CalibrationDataReader):
    """An onnxruntime ``CalibrationDataReader`` over preprocessed image batches.

    It supports ``set_range`` and ``len`` (counted in batches) so the quantizer can
    collect statistics a batch at a time (``CalibStridedMinMax``): the calibrators
    otherwise keep every intermediate tensor of every image in memory, which for VGG is
    tens of MB per image.
    """

    def __init__(self, items: list[str], config: DataConfig, input_name: str, batch_size: int,
                 progress: bool = True):
        if not items:
            raise ValueError("calibration: no images to calibrate with")
        self.items = items
        self.config = config
        self.input_name = input_name
        self.batch_size = batch_size
        self.batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        self._range = (0, len(self.batches))
        self._next = 0
        self.progress = tqdm(total=len(items), desc="calibrating", unit="img", disable=not progress)

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = (start_index, min(end_index, len(self.batches)))
        self._next = start_index

    def rewind(self) -> None:
        self._next = self._range[0]

    def get_next(self) -> dict | None:
        if self._next >= self._range[1]:
            return None
        chunk = self.batches[self._next]
        self._next += 1
        _, batch = next(iter_batches(chunk, self.config, len(chunk)))
        self.progress.update(len(chunk))
        return {self.input_name: batch}

    def close(self) -> None:
        self.progress.close()

