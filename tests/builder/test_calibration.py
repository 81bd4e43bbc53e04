"""Calibration batches are the engine's preprocessing, also on the library path."""
from __future__ import annotations

import numpy as np
import timm
from library_only_model import LANCZOS_TIMM, write_lanczos_model
from photos import write_photo
from PIL import Image

from engine.builder.calibration import iter_batches
from engine.data.dataconfig import ModelInfo


def test_calibration_batches_are_the_library_transforms_tensors(tmp_path):
    config = ModelInfo.load(ModelInfo.path_for(write_lanczos_model(tmp_path, "calibrated-lanczos-net"))).data_config
    items = [str(write_photo(tmp_path / "cat.jpg", "chelsea")), str(write_photo(tmp_path / "cup.png", "coffee"))]
    transform = timm.data.create_transform(**LANCZOS_TIMM)
    (chunk, batch), = iter_batches(items, config, batch_size=2)
    assert chunk == items
    for item, tensor in zip(items, batch, strict=True):
        assert np.array_equal(tensor, transform(Image.open(item).convert("RGB")).numpy())
