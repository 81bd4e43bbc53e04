"""Resize, crop and normalise for the data configs a vendor ``vdsp_params`` file states and
the fused kernel does not reproduce: OpenCV's ``cv2.resize`` (the vendor's ``BILINEAR_CV``
is ``INTER_LINEAR``, no antialias; its device resized that way), a crop at given offsets,
BGR channels.

Written with the libraries that define the results (cv2 for OpenCV's resize, Pillow for
its own filters, the way torchvision's ``Resize`` calls it on a PIL image), so what runs
is what the file names, pixel for pixel. Sizes follow torchvision's ``Resize``: an int
resizes the shorter side to it (the longer one ``int(size * long / short)``), a pair
resizes both sides; the crop is centred as ``CenterCrop`` centres it unless the config
gives its (top, left).
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from engine.data.dataconfig import OPENCV_INTERPOLATIONS, DataConfig
from engine.kernels.resample_plan import crop_offset, resized_size
from engine.kernels.resize_crop import check_image

OPENCV_FLAGS = {"opencv_bilinear": cv2.INTER_LINEAR, "opencv_nearest": cv2.INTER_NEAREST}
PILLOW_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                  "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
                  "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS}


def needs_direct_path(config: DataConfig) -> bool:
    """True for what only this path does: an OpenCV resize, a crop at offsets, BGR."""
    return config.library_only_reason is None and (
        config.interpolation in OPENCV_INTERPOLATIONS or config.crop_offset is not None
        or config.channel_order != "RGB")


def resize(img: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """``img`` (uint8 HWC) resized to ``size`` (height, width) by the named library's filter."""
    if interpolation in OPENCV_FLAGS:
        return cv2.resize(np.ascontiguousarray(img), (size[1], size[0]), interpolation=OPENCV_FLAGS[interpolation])
    pil = Image.fromarray(np.ascontiguousarray(img)).resize((size[1], size[0]), PILLOW_FILTERS[interpolation])
    return np.asarray(pil)


def crop_box(config: DataConfig, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) in a resized image of ``height`` x ``width``."""
    _, crop_h, crop_w = config.input_size
    if config.crop_offset is not None:
        top, left = config.crop_offset
    else:
        top, left = crop_offset(height, crop_h), crop_offset(width, crop_w)
    if top < 0 or left < 0 or top + crop_h > height or left + crop_w > width:
        raise ValueError(f"a {crop_h}x{crop_w} crop at ({top}, {left}) does not fit the {height}x{width} resize")
    return top, left, crop_h, crop_w


def resized_crop(img: np.ndarray, config: DataConfig) -> np.ndarray:
    """The uint8 HWC crop the model's input is made of, channels in the config's order."""
    img = check_image(img)
    height, width = resized_size(img.shape[0], img.shape[1], config.resize)
    resized = resize(img, (height, width), config.interpolation)
    top, left, crop_h, crop_w = crop_box(config, height, width)
    crop = resized[top:top + crop_h, left:left + crop_w]
    return crop[..., ::-1] if config.channel_order == "BGR" else crop


def preprocess(img: np.ndarray, config: DataConfig, out: np.ndarray | None = None) -> np.ndarray:
    """``img`` into ``out`` (3, H, W): uint8 pixels for a uint8 ``out`` (the device
    normalises), else (x/255 - mean)/std as one float32 multiply-add per value,
    x * (1 / (255 std)) - mean / std (within 2 float32 ulps of the exact value), a plane
    at a time: float64 arithmetic, or one broadcast over the strided HWC crop, cost several
    times the resize."""
    crop = resized_crop(img, config)
    if out is not None and out.dtype == np.uint8:
        np.copyto(out, crop.transpose(2, 0, 1))
        return out
    in_place = out is not None and out.dtype == np.float32
    target = out if in_place else np.empty((3, *crop.shape[:2]), np.float32)
    for channel, (mean, std) in enumerate(zip(config.mean, config.std)):
        np.multiply(crop[:, :, channel], np.float32(1 / (255 * std)), out=target[channel], casting="unsafe")
        target[channel] += np.float32(-mean / std)
    if out is None or in_place:
        return target
    np.copyto(out, target, casting="same_kind")
    return out
