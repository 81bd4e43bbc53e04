"""How calibration and check images are fed to the quantizer and the accuracy check
(which images they are: :mod:`engine.builder.image_sets`).

Every image goes through the inference path's own preprocessing: ``engine.data.decode``
then :class:`engine.models.preprocessing.Preprocessing` with the model's data config, so
the ranges the quantizer measures are those of the tensors the deployed model will see.
"""
from __future__ import annotations

import functools

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from tqdm import tqdm

from engine.data.dataconfig import DataConfig
from engine.models.preprocessing import Preprocessing, announce


@functools.cache
def _preprocessing(config: DataConfig) -> Preprocessing:
    """One per data config and build: the library transform, if any, is built once, and its
    notice printed once."""
    preprocessing = Preprocessing(config)
    announce(preprocessing.notice)
    return preprocessing


def preprocess_item(item: str, config: DataConfig, out: np.ndarray | None = None) -> np.ndarray:
    """Decode ``item`` and preprocess it as the engine does (CHW float32)."""
    from engine.data.decode import load_item

    return _preprocessing(config)(load_item(item), out)


def iter_batches(items: list[str], config: DataConfig, batch_size: int):
    """Yield ``(items, float32 (N, C, H, W))`` batches, preprocessed as the engine does."""
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

