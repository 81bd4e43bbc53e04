"""Fused resize + centre crop + normalize, bit-exact to Pillow's 8-bit bilinear resize.

``resize_crop_normalize(img)`` gives what torchvision's
``Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std)])`` gives for
``PIL.Image.fromarray(img)``, bit for bit, in one pass over the pixels that the crop
needs: no full-size resized image is ever made. See ``resample_plan`` for the arithmetic.

The last step maps each uint8 value through a per-channel lookup table built with
float32 arithmetic in torchvision's order (``v / 255``, ``- mean``, ``/ std``), so the
float output is exactly torchvision's; the uint8 and float16 outputs share the kernel.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numba
import numpy as np

from kernels.resample_plan import PRECISION_BITS, ResizeCropPlan, resize_crop_plan

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_OUTPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))
_HALF = 1 << (PRECISION_BITS - 1)
_JIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")


@numba.njit(**_JIT)
def _clip8(acc):
    v = acc >> PRECISION_BITS
    if v < 0:
        return 0
    if v > 255:
        return 255
    return v


@numba.njit(**_JIT)
def _horizontal_pass(src, row0, nrows, col0, first, taps, coeffs, lut, dst):
    """dst[c, r, j] = lut[c, clip8(sum_t src[c, row0 + r, col0 + first[j] + t] * coeffs[j, t])]."""
    ncols = first.shape[0]
    for c in range(3):
        for r in range(nrows):
            line = src[c, row0 + r]
            for j in range(ncols):
                x0 = col0 + first[j]
                acc = _HALF
                for t in range(taps):
                    acc += np.int32(line[x0 + t]) * coeffs[j, t]
                dst[c, r, j] = lut[c, _clip8(acc)]


@numba.njit(**_JIT)
def _vertical_pass(src, row0, first, taps, coeffs, col0, ncols, lut, dst):
    """dst[c, i, j] = lut[c, clip8(sum_t src[c, row0 + first[i] + t, col0 + j] * coeffs[i, t])]."""
    nrows = first.shape[0]
    acc = np.empty(ncols, dtype=np.int32)
    for c in range(3):
        for i in range(nrows):
            y0 = row0 + first[i]
            for j in range(ncols):
                acc[j] = _HALF
            for t in range(taps):
                k = coeffs[i, t]
                line = src[c, y0 + t]
                for j in range(ncols):
                    acc[j] += np.int32(line[col0 + j]) * k
            for j in range(ncols):
                dst[c, i, j] = lut[c, _clip8(acc[j])]


@numba.njit(**_JIT)
def _resize_crop_kernel(src, out, lut, identity, inter, vertical_first,
                        row0, nrows, v_first, v_taps, v_coeffs,
                        col0, ncols, h_first, h_taps, h_coeffs):
    """Both passes in Pillow's order; ``src`` is the image as a (3, height, width) view."""
    crop = out.shape[2]
    if vertical_first:
        _vertical_pass(src, row0, v_first, v_taps, v_coeffs, col0, ncols, identity, inter)
        _horizontal_pass(inter, 0, crop, 0, h_first, h_taps, h_coeffs, lut, out)
    else:
        _horizontal_pass(src, row0, nrows, col0, h_first, h_taps, h_coeffs, identity, inter)
        _vertical_pass(inter, 0, v_first, v_taps, v_coeffs, 0, crop, lut, out)


@lru_cache(maxsize=64)
def _lookup_table(dtype: np.dtype, mean: tuple, std: tuple) -> np.ndarray:
    """(3, 256) table: uint8 value -> output value, float32 ops in torchvision's order."""
    if dtype == np.uint8:
        return _IDENTITY
    values = np.arange(256, dtype=np.float32)
    m = np.asarray(mean, dtype=np.float32)[:, None]
    s = np.asarray(std, dtype=np.float32)[:, None]
    table = (values[None, :] / np.float32(255.0) - m) / s
    return np.ascontiguousarray(table.astype(dtype))


_scratch = threading.local()


def _intermediate(nrows: int, ncols: int) -> np.ndarray:
    """A per-thread uint8 scratch buffer for the intermediate image, reused across calls."""
    buf = getattr(_scratch, "buf", None)
    need = 3 * nrows * ncols
    if buf is None or buf.size < need:
        buf = np.empty(max(need, 3 * 400 * 256), dtype=np.uint8)
        _scratch.buf = buf
    return buf[:need].reshape(3, nrows, ncols)


_IDENTITY = np.ascontiguousarray(np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 256)))


def _check_image(img, name: str = "img") -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"{name}: dtype {img.dtype}, expected uint8")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name}: shape {img.shape}, expected (height, width, 3) RGB")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{name}: shape {img.shape} has an empty side")
    return img


def _check_norm(mean, std) -> tuple[tuple, tuple]:
    mean = tuple(float(m) for m in mean)
    std = tuple(float(s) for s in std)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean {mean} / std {std}: need 3 values each")
    if min(std) <= 0:
        raise ValueError(f"std {std}: every value must be positive")
    return mean, std


def _check_out(out, crop: int, dtype, name: str = "out") -> None:
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(out).__name__}")
    if out.shape != (3, crop, crop):
        raise ValueError(f"{name}: shape {out.shape}, expected {(3, crop, crop)}")
    if out.dtype not in _OUTPUT_DTYPES or (dtype is not None and out.dtype != dtype):
        want = np.dtype(dtype) if dtype is not None else "float32, float16 or uint8"
        raise ValueError(f"{name}: dtype {out.dtype}, expected {want}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: array is read-only")


def _run(img: np.ndarray, out: np.ndarray, plan: ResizeCropPlan, lut: np.ndarray) -> None:
    rows, cols = plan.rows, plan.cols
    if plan.vertical_first:
        inter = _intermediate(plan.crop, cols.span)
    else:
        inter = _intermediate(rows.span, plan.crop)
    if out.dtype == np.float16:  # numba has no float16: move the bits as uint16
        out, lut = out.view(np.uint16), lut.view(np.uint16)
    _resize_crop_kernel(img.transpose(2, 0, 1), out, lut, _IDENTITY, inter, plan.vertical_first,
                        rows.span_start, rows.span, rows.first, rows.taps, rows.coeffs,
                        cols.span_start, cols.span, cols.first, cols.taps, cols.coeffs)


def _resize_crop(img, out, resize, crop, mean, std, dtype) -> np.ndarray:
    img = _check_image(img)
    plan = resize_crop_plan(img.shape[0], img.shape[1], int(resize), int(crop))
    if out is None:
        out = np.empty((3, crop, crop), dtype=dtype if dtype is not None else np.float32)
    else:
        _check_out(out, crop, dtype)
    lut = _lookup_table(out.dtype, *_check_norm(mean, std))
    _run(img, out, plan, lut)
    return out


def resize_crop_normalize(img: np.ndarray, out: np.ndarray | None = None, *, resize: int = 256,
                          crop: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          dtype=None) -> np.ndarray:
    """Resize the shorter side to ``resize`` (Pillow bilinear), centre-crop ``crop``, then
    ToTensor + Normalize: a (3, crop, crop) CHW array.

    ``img``: uint8 (height, width, 3) RGB, any strides (a transposed CHW view is fine).
    ``out``: optional float32 or float16 (3, crop, crop) array to write into (any
    strides); otherwise a new one of ``dtype`` (float32 by default) is returned.
    Raises ValueError naming the argument when an input is unusable.
    """
    if dtype is not None and np.dtype(dtype) not in _OUTPUT_DTYPES[:2]:
        raise ValueError(f"dtype {np.dtype(dtype)}: expected float32 or float16")
    if out is not None and out.dtype == np.uint8:
        raise ValueError("out: dtype uint8, expected float32 or float16 (use resize_crop_uint8)")
    return _resize_crop(img, out, resize, crop, mean, std, dtype)


def resize_crop_uint8(img: np.ndarray, out: np.ndarray | None = None, *, resize: int = 256,
                      crop: int = 224) -> np.ndarray:
    """Like ``resize_crop_normalize`` without normalization: uint8 (3, crop, crop) CHW,
    for devices that normalize on their own."""
    return _resize_crop(img, out, resize, crop, IMAGENET_MEAN, IMAGENET_STD, np.uint8)


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="resize-crop")
        return pool


def resize_crop_normalize_batch(images, out: np.ndarray, *, resize: int = 256, crop: int = 224,
                                mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                workers: int | None = None) -> np.ndarray:
    """Fill ``out`` (B, 3, crop, crop), float32/float16/uint8 (uint8: no normalization),
    from a sequence of B images, in parallel over images on ``workers`` threads (the
    kernel releases the GIL; default: numba's thread count)."""
    images = list(images)
    if not isinstance(out, np.ndarray) or out.ndim != 4 or out.shape[0] != len(images):
        shape = getattr(out, "shape", None)
        raise ValueError(f"out: shape {shape}, expected ({len(images)}, 3, {crop}, {crop})")
    for i in range(len(images)):
        _check_out(out[i], crop, None, name=f"out[{i}]")
    checked = [_check_image(img, name=f"images[{i}]") for i, img in enumerate(images)]
    plans = [resize_crop_plan(img.shape[0], img.shape[1], int(resize), int(crop)) for img in checked]
    lut = _lookup_table(out.dtype, *_check_norm(mean, std))
    workers = workers or numba.get_num_threads()
    if workers <= 1 or len(images) <= 1:
        for i, (img, plan) in enumerate(zip(checked, plans)):
            _run(img, out[i], plan, lut)
        return out
    futures = [_pool(workers).submit(_run, img, out[i], plan, lut)
               for i, (img, plan) in enumerate(zip(checked, plans))]
    for future in futures:
        future.result()
    return out
