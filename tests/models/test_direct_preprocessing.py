"""The direct preprocessing path (engine.models.direct_preprocessing) that a vdsp_params
config takes through Preprocessing: OpenCV's or Pillow's resize, a crop at offsets, BGR,
float or uint8 slots; each against cv2/Pillow and numpy called here."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from photos import photo_array
from PIL import Image

from engine.data.dataconfig import DataConfig
from engine.models.preprocessing import Preprocessing

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def reference(img, size_hw, top_left, crop, resize_fn, bgr):
    resized = resize_fn(np.ascontiguousarray(img), size_hw)
    top, left = top_left
    patch = resized[top:top + crop, left:left + crop]
    patch = patch[..., ::-1] if bgr else patch
    return ((patch / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1).astype(np.float32), patch


def opencv(img, size_hw):
    return cv2.resize(img, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)


def pillow(img, size_hw):
    return np.asarray(Image.fromarray(img).resize((size_hw[1], size_hw[0]), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("interpolation, resize_fn", [("opencv_bilinear", opencv), ("bicubic", pillow)])
def test_both_sides_resize_offset_crop_and_bgr(interpolation, resize_fn):
    config = DataConfig(input_size=(3, 32, 32), resize=(40, 48), crop=32, interpolation=interpolation, mean=MEAN,
                        std=STD, crop_offset=(3, 11), channel_order="BGR")
    pre = Preprocessing(config, "m")
    assert not pre.on_kernel and pre.direct and "not centred" in pre.notice
    img = photo_array("astronaut", (70, 90))
    want, pixels = reference(img, (40, 48), (3, 11), 32, resize_fn, bgr=True)
    np.testing.assert_allclose(pre(img), want, rtol=1e-6, atol=1e-6)
    out = np.empty((3, 32, 32), np.uint8)
    assert np.array_equal(pre(img, out), pixels.transpose(2, 0, 1))


def test_opencv_short_edge_resize_and_centre_crop_on_a_transposed_npz_view():
    config = DataConfig(input_size=(3, 24, 24), resize=28, crop=24, interpolation="opencv_bilinear", mean=MEAN,
                        std=STD)
    img = photo_array("chelsea", (61, 45))  # height 45 < width 61: the height goes to 28
    chw_view = np.ascontiguousarray(img.transpose(2, 0, 1)).transpose(1, 2, 0)
    new_w = int(28 * 61 / 45)
    want, _ = reference(img, (28, new_w), (2, round((new_w - 24) / 2)), 24, opencv, bgr=False)
    out = np.empty((3, 24, 24), np.float32)
    np.testing.assert_allclose(Preprocessing(config)(chw_view, out), want, rtol=1e-6, atol=1e-6)


def test_offsets_need_a_both_sides_resize_and_must_fit():
    with pytest.raises(ValueError, match=r"crop_offset \[1, 1\]: need \[top, left\] .* with a \[height, width\]"):
        DataConfig(crop_offset=[1, 1])
    with pytest.raises(ValueError, match=r"channel_order 'RGBA'"):
        DataConfig(channel_order="RGBA")
    assert DataConfig.from_dict(DataConfig(resize=(256, 256), crop_offset=[0, 32]).to_dict()).crop_offset == (0, 32)
