"""Numba kernels: pure functions on arrays, no I/O, no processes."""
from engine.kernels.resample_plan import INTERPOLATIONS, kernel_limitation
from engine.kernels.resize_crop import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    resize_crop_normalize,
    resize_crop_uint8,
)
from engine.kernels.resize_crop_batch import resize_crop_normalize_batch
from engine.kernels.softmax_topk import softmax_topk

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INTERPOLATIONS",
    "kernel_limitation",
    "resize_crop_normalize",
    "resize_crop_normalize_batch",
    "resize_crop_uint8",
    "softmax_topk",
]
