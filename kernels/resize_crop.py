"""Fused resize + centre crop + normalize, bit-exact to Pillow's 8-bit bilinear resize.

``resize_crop_normalize(img)`` gives what torchvision's
``Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std)])`` gives for
``PIL.Image.fromarray(img)``, bit for bit, touching only the input pixels that the
crop needs: no full-size resized image is ever made. See ``resample_plan`` for Pillow's
arithmetic and pass order.

How it is fast: both resampling passes are exact integer sums, so they can be summed in
any order. Each pass runs along the contiguous axis of its input with the other axis in
the SIMD lanes (numba, int32); the data is transposed between passes with OpenCV's SIMD
transpose (it releases the GIL, as the numba code does). Interleaved RGB input is split
into planes first; planar input (the engine's npz CHW array seen as HWC through
``transpose(1, 2, 0)``) is used as it is. Resampling coefficients are cached per input
size (``resize_crop_plan``), scratch buffers per thread.

The last step does torchvision's float32 arithmetic in its order (``v / 255``,
``- mean``, ``/ std``, each rounded to float32; no fast-math), so the float output is
exactly torchvision's; float16 is that float32 result rounded, as ``.half()`` does.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import cv2
import numba
import numpy as np

from kernels.resample_plan import PRECISION_BITS, ResizeCropPlan, resize_crop_plan

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_OUTPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))
_HALF = 1 << (PRECISION_BITS - 1)
_JIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")


@numba.njit(**_JIT)
def _resample_lanes(src, first, taps, coeffs, dst):
    """One Pillow pass along axis 1, vectorized over the contiguous axis 2 ("lanes"):
    dst[c, i, l] = clip8(2**21 + sum_t src[c, first[i] + t, l] * coeffs[i, t]).

    Integer sums are exact, so summing tap by tap over whole lanes (SIMD-friendly int32
    arithmetic) gives Pillow's result bit for bit (the int32 casts let LLVM keep the
    arithmetic in 32-bit lanes; the sums fit, as in Pillow's C). Up to 4 taps per output
    (every upscale, every downscale by less than 1.5x) run as one fused loop; more taps
    accumulate tap by tap in ``acc``.
    """
    nlanes = dst.shape[2]
    acc = np.empty(nlanes, dtype=np.int32)
    for c in range(dst.shape[0]):
        for i in range(dst.shape[1]):
            y0 = first[i]
            out_line = dst[c, i]
            n = taps
            while n > 1 and coeffs[i, n - 1] == 0:
                n -= 1
            if n <= 4:
                # Rows past the image get weight 0; clamp them to a row that exists.
                last = src.shape[1] - 1
                l0, l1 = src[c, y0], src[c, min(y0 + 1, last)]
                l2, l3 = src[c, min(y0 + 2, last)], src[c, min(y0 + 3, last)]
                k0, k1 = coeffs[i, 0], coeffs[i, 1] if n > 1 else 0
                k2, k3 = coeffs[i, 2] if n > 2 else 0, coeffs[i, 3] if n > 3 else 0
                if n <= 2:
                    for lane in range(nlanes):
                        a = np.int32(_HALF + l0[lane] * k0 + l1[lane] * k1)
                        out_line[lane] = min(max(a >> PRECISION_BITS, 0), 255)
                elif n == 3:
                    for lane in range(nlanes):
                        a = np.int32(_HALF + l0[lane] * k0 + l1[lane] * k1 + l2[lane] * k2)
                        out_line[lane] = min(max(a >> PRECISION_BITS, 0), 255)
                else:
                    for lane in range(nlanes):
                        a = np.int32(_HALF + l0[lane] * k0 + l1[lane] * k1 + l2[lane] * k2
                                     + l3[lane] * k3)
                        out_line[lane] = min(max(a >> PRECISION_BITS, 0), 255)
                continue
            for lane in range(nlanes):
                acc[lane] = _HALF
            for t in range(n):
                k = coeffs[i, t]
                line = src[c, y0 + t]
                for lane in range(nlanes):
                    acc[lane] += line[lane] * k
            for lane in range(nlanes):
                out_line[lane] = min(max(acc[lane] >> PRECISION_BITS, 0), 255)


@numba.njit(**_JIT)
def _resample_lanes_normalize(src, first, taps, coeffs, scale, mean, std, dst):
    """``_resample_lanes`` with ``_normalize`` fused into its stores (float32 ``dst``):
    the integer work hides under the float divisions, which bound the normalization."""
    nlanes = dst.shape[2]
    acc = np.empty(nlanes, dtype=np.int32)
    last = src.shape[1] - 1
    for c in range(dst.shape[0]):
        m = mean[c]
        s = std[c]
        for i in range(dst.shape[1]):
            y0 = first[i]
            out_line = dst[c, i]
            n = taps
            while n > 1 and coeffs[i, n - 1] == 0:
                n -= 1
            if n <= 4:
                l0, l1 = src[c, y0], src[c, min(y0 + 1, last)]
                l2, l3 = src[c, min(y0 + 2, last)], src[c, min(y0 + 3, last)]
                k0, k1 = coeffs[i, 0], coeffs[i, 1] if n > 1 else 0
                k2, k3 = coeffs[i, 2] if n > 2 else 0, coeffs[i, 3] if n > 3 else 0
                for lane in range(nlanes):
                    a = np.int32(_HALF + l0[lane] * k0 + l1[lane] * k1 + l2[lane] * k2
                                 + l3[lane] * k3)
                    v = min(max(a >> PRECISION_BITS, 0), 255)
                    out_line[lane] = (np.float32(v) / scale - m) / s
                continue
            for lane in range(nlanes):
                acc[lane] = _HALF
            for t in range(n):
                k = coeffs[i, t]
                line = src[c, y0 + t]
                for lane in range(nlanes):
                    acc[lane] += line[lane] * k
            for lane in range(nlanes):
                v = min(max(acc[lane] >> PRECISION_BITS, 0), 255)
                out_line[lane] = (np.float32(v) / scale - m) / s


@numba.njit(**_JIT)
def _normalize(src, scale, mean, std, dst):
    """dst[c] = (src[c] / scale - mean[c]) / std[c], each operation rounded in dst's dtype
    (float32: torchvision's ToTensor + Normalize). ``scale`` 1 / mean 0 / std 1 keeps
    uint8 values as they are."""
    for c in range(src.shape[0]):
        m = mean[c]
        s = std[c]
        for i in range(src.shape[1]):
            line = src[c, i]
            out_line = dst[c, i]
            for j in range(src.shape[2]):
                out_line[j] = (np.float32(line[j]) / scale - m) / s


@numba.njit(**_JIT)
def _deinterleave(flat, offset, row_stride, n_rows, n_cols, dst):
    """dst[c, r, x] = flat[offset + r * row_stride + 3 * x + c]: RGB pixel rows into 3 planes.
    Indexing a contiguous row slice lets LLVM vectorize the stride-3 pattern (6x faster
    than offset arithmetic on the whole buffer)."""
    for r in range(n_rows):
        start = offset + r * row_stride
        row = flat[start:start + 3 * n_cols]
        d0, d1, d2 = dst[0, r], dst[1, r], dst[2, r]
        for x in range(n_cols):
            d0[x] = row[3 * x]
            d1[x] = row[3 * x + 1]
            d2[x] = row[3 * x + 2]


@lru_cache(maxsize=64)
def _norm_constants(mean: tuple, std: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Validated float32 mean/std arrays (cached: the same few pairs come every call)."""
    mean, std = _check_norm(mean, std)
    return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)


_SCALE = np.float32(255.0)


_scratch = threading.local()


def _scratch_buffers(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three per-thread uint8 scratch buffers of at least ``size`` bytes, reused across calls."""
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None or bufs[0].size < size:
        size = max(size, 3 * 400 * 400)
        bufs = _scratch.bufs = tuple(np.empty(size, dtype=np.uint8) for _ in range(3))
    return bufs


def _take(buf: np.ndarray, *shape: int) -> np.ndarray:
    return buf[:math.prod(shape)].reshape(shape)


def _transpose_planes(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """dst[p] = src[p].T for each 2-D plane p (OpenCV's SIMD transpose; it releases the GIL)."""
    for p in range(src.shape[0]):
        cv2.transpose(src[p], dst[p])
    return dst


def _planes(img: np.ndarray, row0: int, n_rows: int, col0: int, n_cols: int,
            buf: np.ndarray) -> np.ndarray:
    """The window ``img[row0:row0 + n_rows, col0:col0 + n_cols]`` as (3, rows, cols)
    planes whose rows are contiguous: a view when the image is planar already (a CHW
    array seen as HWC), else deinterleaved into ``buf``."""
    window = img[row0:row0 + n_rows, col0:col0 + n_cols]
    if window.strides[1] == 1:
        return window.transpose(2, 0, 1)
    if img.flags.c_contiguous:
        flat, offset, row_stride = img.reshape(-1), (row0 * img.shape[1] + col0) * 3, img.strides[0]
    else:
        flat, offset, row_stride = np.ascontiguousarray(window).reshape(-1), 0, 3 * n_cols
    planes = _take(buf, 3, n_rows, n_cols)
    _deinterleave(flat, offset, row_stride, n_rows, n_cols, planes)
    return planes


def _resize_crop_into(img: np.ndarray, plan: ResizeCropPlan, out: np.ndarray, mean,
                      std) -> None:
    """Resize + crop ``img`` into ``out`` (3, crop, crop): uint8 as Pillow gives it,
    float32 normalized.

    Only the window of input pixels that the crop reads is touched. It is split into 3
    planes (unless the input is planar already). Each resampling pass runs along the
    contiguous axis of its input, vectorized over the other, so the planes are
    transposed (OpenCV) before each pass. The normalization rides on the last pass."""
    rows, cols, crop = plan.rows, plan.cols, plan.crop
    n_rows, n_cols = rows.span, cols.span
    side = max(n_rows, n_cols, crop)
    buf_a, buf_b, buf_c = _scratch_buffers(3 * side * side)
    src = _planes(img, rows.span_start, n_rows, cols.span_start, n_cols, buf_c)
    if plan.vertical_first:
        t_rows = _take(buf_a, 3, crop, n_cols)
        _resample_lanes(src, rows.first, rows.taps, rows.coeffs, t_rows)
        t_cols = _transpose_planes(t_rows, _take(buf_b, 3, n_cols, crop))
        t_out = _take(buf_a, 3, crop, crop)
        _resample_lanes(t_cols, cols.first, cols.taps, cols.coeffs, t_out)
        crop8 = _transpose_planes(t_out, _take(buf_b, 3, crop, crop))
        if out.dtype == np.uint8:
            np.copyto(out, crop8)
        else:
            _normalize(crop8, _SCALE, mean, std, out)
        return
    t_in = _transpose_planes(src, _take(buf_a, 3, n_cols, n_rows))
    t_cols = _take(buf_b, 3, crop, n_rows)
    _resample_lanes(t_in, cols.first, cols.taps, cols.coeffs, t_cols)
    t_rows = _transpose_planes(t_cols, _take(buf_a, 3, n_rows, crop))
    if out.dtype == np.uint8:
        _resample_lanes(t_rows, rows.first, rows.taps, rows.coeffs, out)
    else:
        _resample_lanes_normalize(t_rows, rows.first, rows.taps, rows.coeffs, _SCALE, mean, std,
                                  out)


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


def _run(img: np.ndarray, out: np.ndarray, plan: ResizeCropPlan, mean, std) -> None:
    if out.dtype != np.float16:
        _resize_crop_into(img, plan, out, mean, std)
        return
    # numba has no float16: float32 first, then round to float16 like torch's .half()
    buf32 = getattr(_scratch, "buf32", None)
    if buf32 is None or buf32.shape != out.shape:
        buf32 = _scratch.buf32 = np.empty(out.shape, dtype=np.float32)
    _resize_crop_into(img, plan, buf32, mean, std)
    np.copyto(out, buf32, casting="same_kind")


def _run_chunk(jobs, mean, std) -> None:
    for img, out, plan in jobs:
        _run(img, out, plan, mean, std)


def _resize_crop(img, out, resize, crop, mean, std, dtype) -> np.ndarray:
    img = _check_image(img)
    plan = resize_crop_plan(img.shape[0], img.shape[1], int(resize), int(crop))
    if out is None:
        out = np.empty((3, crop, crop), dtype=dtype if dtype is not None else np.float32)
    else:
        _check_out(out, crop, dtype)
    _run(img, out, plan, *_norm_constants(tuple(mean), tuple(std)))
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
    from a sequence of B images, in parallel over images on ``workers`` threads (default:
    numba's thread count). Every input is validated before any work starts."""
    images = list(images)
    if not isinstance(out, np.ndarray) or out.ndim != 4 or out.shape[0] != len(images):
        shape = getattr(out, "shape", None)
        raise ValueError(f"out: shape {shape}, expected ({len(images)}, 3, {crop}, {crop})")
    for i in range(len(images)):
        _check_out(out[i], crop, None, name=f"out[{i}]")
    checked = [_check_image(img, name=f"images[{i}]") for i, img in enumerate(images)]
    plans = [resize_crop_plan(img.shape[0], img.shape[1], int(resize), int(crop))
             for img in checked]
    mean, std = _norm_constants(tuple(mean), tuple(std))
    workers = min(workers or numba.get_num_threads(), len(images))
    jobs = [(checked[i], out[i], plans[i]) for i in range(len(images))]
    if workers <= 1:
        _run_chunk(jobs, mean, std)
        return out
    # One task per worker with a contiguous share of the images: few hand-offs, and the
    # compiled passes and OpenCV release the GIL, so the shares run in parallel.
    bounds = np.linspace(0, len(jobs), workers + 1).astype(int)
    futures = [_pool(workers).submit(_run_chunk, jobs[a:b], mean, std)
               for a, b in zip(bounds[:-1], bounds[1:])]
    for future in futures:
        future.result()
    return out
