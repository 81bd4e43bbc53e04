"""The server on a model whose preprocessing only its library's transform reproduces: the
same tensors as timm's, with the notice."""
from __future__ import annotations

import numpy as np
import timm
from library_only_model import LANCZOS_TIMM, SIZE, write_lanczos_model
from photos import photo_array
from PIL import Image

from engine.serving.model import ServedModel


def test_served_model_preprocesses_through_the_library_with_a_notice(tmp_path, capsys):
    served = ServedModel(write_lanczos_model(tmp_path, "served-lanczos-net"))
    try:
        assert "model served-lanczos-net: preprocessing runs through timm's own transform" in capsys.readouterr().err
        transform = timm.data.create_transform(**LANCZOS_TIMM)
        for img in (photo_array("chelsea"), photo_array("coffee", (61, 997))):
            out = np.empty((3, SIZE, SIZE), np.float32)
            served.preprocess(img, out)
            assert np.array_equal(out, transform(Image.fromarray(img)).numpy())
    finally:
        served.close()
