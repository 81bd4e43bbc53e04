"""Resize + crop + normalize a batch of images into one array, in parallel over images."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from engine.kernels.normalize import norm_constants
from engine.kernels.resample_plan import resize_crop_plan, transform_key
from engine.kernels.resize_crop import IMAGENET_MEAN, IMAGENET_STD, check_image, check_out, resize_crop_into


def _run_chunk(jobs, norm) -> None:
    for img, out, plan in jobs:
        resize_crop_into(img, out, plan, norm)


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="resize-crop")
        return pool


def resize_crop_normalize_batch(images, out: np.ndarray, *, resize=256, crop=224,
                                interpolation: str = "bilinear", mean=IMAGENET_MEAN,
                                std=IMAGENET_STD, workers: int | None = None) -> np.ndarray:
    """Fill ``out`` (B, 3, crop_h, crop_w), float32/float16/uint8 (uint8: no normalization),
    from a sequence of B images, in parallel over images on ``workers`` threads (default:
    numba's thread count); ``resize``, ``crop`` and ``interpolation`` as in
    ``resize_crop_normalize``. Every input is validated before any work starts."""
    images = list(images)
    resize, crop, interpolation = transform_key(resize, crop, interpolation)
    if not isinstance(out, np.ndarray) or out.ndim != 4 or out.shape[0] != len(images):
        shape = getattr(out, "shape", None)
        raise ValueError(f"out: shape {shape}, expected ({len(images)}, 3, {crop[0]}, {crop[1]})")
    for i in range(len(images)):
        check_out(out[i], crop, None, name=f"out[{i}]")
    checked = [check_image(img, name=f"images[{i}]") for i, img in enumerate(images)]
    plans = [resize_crop_plan(img.shape[0], img.shape[1], resize, crop, interpolation)
             for img in checked]
    norm = norm_constants(tuple(mean), tuple(std))
    workers = min(workers or numba.get_num_threads(), len(images))
    jobs = [(checked[i], out[i], plans[i]) for i in range(len(images))]
    if workers <= 1:
        _run_chunk(jobs, norm)
        return out
    # One task per worker with a contiguous share of the images: few hand-offs, and the
    # compiled passes and OpenCV release the GIL, so the shares run in parallel.
    bounds = np.linspace(0, len(jobs), workers + 1).astype(int)
    futures = [_pool(workers).submit(_run_chunk, jobs[a:b], norm)
               for a, b in zip(bounds[:-1], bounds[1:])]
    for future in futures:
        future.result()
    return out
