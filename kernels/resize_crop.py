"""Fused resize + centre crop + normalize, bit-exact to Pillow's 8-bit bilinear resize.

``resize_crop_normalize(img)`` gives what torchvision's
``Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std)])`` gives for
``PIL.Image.fromarray(img)``, bit for bit, touching only the input pixels that the
crop needs: no full-size resized image is ever made. See ``resample_plan`` for Pillow's
arithmetic and pass order.

How it is fast: both resampling passes are exact integer sums, so they can be summed in
any order. Each pass runs along the contiguous axis of its input with the other axis in
the SIMD lanes (numba, int32); the data is transposed between passes with OpenCV's SIMD
transpose (it releases the GIL, as the numba code does). Interleaved RGB is never split:
its 3 channels ride along as 3 more SIMD lanes; planar input (the engine's npz CHW array
seen as HWC through ``transpose(1, 2, 0)``) is transposed plane by plane (see
``_Workspace``). Resampling coefficients are cached per input size
(``resize_crop_plan``), scratch views per thread and plan.

The last step does torchvision's float32 arithmetic in its order (``v / 255``,
``- mean``, ``/ std``, each rounded to float32; no fast-math), so the float output is
exactly torchvision's (the divisions are done by multiplication and an fma correction
where that is checked to be exact for all 256 values; see ``_resample_normalize``);
float16 is that float32 result rounded, as ``.half()`` does.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import cv2
import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from kernels.resample_plan import PRECISION_BITS, ResizeCropPlan, resize_crop_plan

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_OUTPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))
_HALF = 1 << (PRECISION_BITS - 1)
_BLOCK = 8  # lines resampled before they are normalized (int32, stays in L1)
_JIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with one rounding (LLVM's fma intrinsic: vfmadd on AVX2)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return sig, codegen


@numba.njit(**_JIT)
def _resample_lines(src, row, step, lane0, first, taps, coeffs, i0, i1, dst, drow, dstep,
                    acc):
    """Lines ``i0 <= i < i1`` of one plane of a Pillow pass, into rows ``d = drow + (i -
    i0) * dstep`` of ``dst`` (uint8 or int32): ``dst[d, l] = clip8(2**21 + sum_t
    src[row + (first[i] + t) * step, lane0 + l] * coeffs[i, t])``.

    The pass's input lines are rows of the 2-D ``src``: line ``y`` is row ``row + y *
    step``, its lanes start at column ``lane0``. Integer sums are exact, so summing tap by
    tap over whole lanes (SIMD int32 arithmetic; the int32 casts keep LLVM in 32-bit
    lanes, the sums fit as in Pillow's C) gives Pillow's result bit for bit. Weights past
    a pixel's own taps are 0, so every line sums ``taps`` taps (lines past the input are
    clamped to one that exists), up to 4 in one fused loop per tap count: simple counted
    loops that LLVM vectorizes. More taps accumulate in ``acc`` (int32, ``nlanes`` long).
    """
    nlanes = dst.shape[1]
    last = (src.shape[0] - 1 - row) // step
    lanes = slice(lane0, lane0 + nlanes)
    if taps > 4:
        for i in range(i0, i1):
            line = dst[drow + (i - i0) * dstep]
            y0 = first[i]
            for lane in range(nlanes):
                acc[lane] = _HALF
            for t in range(taps):
                k = coeffs[i, t]
                lt = src[row + min(y0 + t, last) * step, lanes]
                for lane in range(nlanes):
                    acc[lane] += lt[lane] * k
            for lane in range(nlanes):
                line[lane] = min(max(acc[lane] >> PRECISION_BITS, 0), 255)
        return
    if taps == 1:
        for i in range(i0, i1):
            line, k0 = dst[drow + (i - i0) * dstep], coeffs[i, 0]
            l0 = src[row + first[i] * step, lanes]
            for lane in range(nlanes):
                a = np.int32(_HALF + l0[lane] * k0)
                line[lane] = min(max(a >> PRECISION_BITS, 0), 255)
    elif taps == 2:
        for i in range(i0, i1):
            line, y0 = dst[drow + (i - i0) * dstep], first[i]
            k0, k1 = coeffs[i, 0], coeffs[i, 1]
            l0 = src[row + y0 * step, lanes]
            l1 = src[row + min(y0 + 1, last) * step, lanes]
            for lane in range(nlanes):
                a = np.int32(_HALF + l0[lane] * k0 + l1[lane] * k1)
                line[lane] = min(max(a >> PRECISION_BITS, 0), 255)
    elif taps == 3:
        for i in range(i0, i1):
            line, y0 = dst[drow + (i - i0) * dstep], first[i]
            k0, k1, k2 = coeffs[i, 0], coeffs[i, 1], coeffs[i, 2]
            l0 = src[row + y0 * step, lanes]
            l1 = src[row + min(y0 + 1, last) * step, lanes]
            l2 = src[row + min(y0 + 2, last) * step, lanes]
            for lane in range(nlanes):
                a = np.int32(_HALF + l0[lane] * k0 + l1[lane] * k1 + l2[lane] * k2)
                line[lane] = min(max(a >> PRECISION_BITS, 0), 255)
    else:
        for i in range(i0, i1):
            line, y0 = dst[drow + (i - i0) * dstep], first[i]
            k0, k1, k2, k3 = coeffs[i, 0], coeffs[i, 1], coeffs[i, 2], coeffs[i, 3]
            l0 = src[row + y0 * step, lanes]
            l1 = src[row + min(y0 + 1, last) * step, lanes]
            l2 = src[row + min(y0 + 2, last) * step, lanes]
            l3 = src[row + min(y0 + 3, last) * step, lanes]
            for lane in range(nlanes):
                a = np.int32(_HALF + l0[lane] * k0 + l1[lane] * k1 + l2[lane] * k2
                             + l3[lane] * k3)
                line[lane] = min(max(a >> PRECISION_BITS, 0), 255)


@numba.njit(**_JIT)
def _resample(src, rows, step, lanes, first, taps, coeffs, dst, drows, dstep):
    """A Pillow pass into the uint8 2-D ``dst``: plane ``p`` reads its input lines from
    ``src`` rows ``rows[p] + y * step``, columns from ``lanes[p]`` on, and writes its
    output line ``i`` to ``dst`` row ``drows[p] + i * dstep`` (see ``_resample_lines``)."""
    acc = np.empty(dst.shape[1], dtype=np.int32)
    for p in range(rows.shape[0]):
        _resample_lines(src, rows[p], step, lanes[p], first, taps, coeffs, 0, first.shape[0],
                        dst, drows[p], dstep, acc)


@numba.njit(**_JIT)
def _resample_normalize(src, rows, step, lanes, first, taps, coeffs, norm, use_fma, dst):
    """``_resample`` into float32 ``dst``, normalized on the way out: torchvision's
    ``(v / 255 - mean) / std``, each operation rounded to float32 (no fast-math).

    ``norm`` rows: mean, std, and 1/std split in two float32 parts ``hi + lo`` (see
    ``_split_reciprocal``). With ``use_fma`` each division ``x / d`` is done as
    ``fma(x, hi, x * lo)``: the reciprocal carries ~48 bits, so the one rounding gives
    the correctly rounded quotient unless it lies extremely close to a rounding boundary
    (2 operations instead of a vdivps: about twice as fast). ``_norm_constants`` sets
    ``use_fma`` only after checking all 256 values of every channel against numpy's
    divisions; the kernel never sees other values."""
    n_lines, nlanes = dst.shape[1], dst.shape[2]
    vals = np.empty((_BLOCK, nlanes), dtype=np.int32)
    acc = np.empty(nlanes, dtype=np.int32)
    scale = np.float32(255.0)
    for p in range(dst.shape[0]):
        m, s, rs_hi, rs_lo = norm[0, p], norm[1, p], norm[2, p], norm[3, p]
        for i0 in range(0, n_lines, _BLOCK):
            i1 = min(i0 + _BLOCK, n_lines)
            _resample_lines(src, rows[p], step, lanes[p], first, taps, coeffs, i0, i1, vals,
                            0, 1, acc)
            for i in range(i0, i1):
                v_line = vals[i - i0]
                out_line = dst[p, i]
                if use_fma:
                    for lane in range(nlanes):
                        v = np.float32(v_line[lane])
                        x = _fma(v, _R255_HI, v * _R255_LO) - m
                        out_line[lane] = _fma(x, rs_hi, x * rs_lo)
                else:
                    for lane in range(nlanes):
                        out_line[lane] = (np.float32(v_line[lane]) / scale - m) / s


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


def _split_reciprocal(d) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``hi, lo`` with ``hi + lo`` = 1/d to ~48 bits (1/d in float64, split)."""
    r = 1.0 / np.asarray(d, dtype=np.float64)
    hi = r.astype(np.float32)
    return hi, (r - hi).astype(np.float32)


_R255_HI, _R255_LO = (np.float32(x) for x in _split_reciprocal(255.0))


@lru_cache(maxsize=64)
def _norm_constants(mean: tuple, std: tuple) -> tuple[np.ndarray, bool]:
    """(norm, use_fma) for ``_resample_normalize``, cached: the same few pairs come every
    call. ``use_fma`` is set only when the split-reciprocal division gives exactly
    torchvision's float32 result for every one of the 256 values of every channel, checked
    here against numpy's float32 divisions; the kernel never sees other values."""
    mean, std = _check_norm(mean, std)
    mean32, std32 = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    norm = np.ascontiguousarray(np.stack([mean32, std32, *_split_reciprocal(std32)]))
    values = np.arange(256, dtype=np.float32)
    want = (values[None, :] / np.float32(255.0) - mean32[:, None]) / std32[:, None]
    got = np.empty((3, 1, 256), dtype=np.float32)
    ramp = np.ascontiguousarray(np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 256)))
    first, taps, coeffs = _identity_pass(1)
    _resample_normalize(ramp, _PLANE_ROWS, 1, _NO_OFFSETS, first, taps, coeffs, norm, True, got)
    return norm, bool(np.array_equal(got[:, 0], want))


@lru_cache(maxsize=16)
def _identity_pass(size: int) -> tuple[np.ndarray, int, np.ndarray]:
    """(first, taps, coeffs) of a pass that copies ``size`` lines unchanged."""
    return (np.arange(size, dtype=np.int32), 1,
            np.full((size, 1), 1 << PRECISION_BITS, dtype=np.int32))


_PLANE_ROWS = np.arange(3, dtype=np.int64)
_NO_OFFSETS = np.zeros(3, dtype=np.int64)
_scratch = threading.local()


def _scratch_buffers(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three per-thread uint8 scratch buffers of at least ``size`` bytes, reused across calls."""
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None or bufs[0].size < size:
        size = max(size, 3 * 400 * 400)
        bufs = _scratch.bufs = tuple(np.empty(size, dtype=np.uint8) for _ in range(3))
        _scratch.workspaces = {}
    return bufs


def _take(buf: np.ndarray, *shape: int) -> np.ndarray:
    return buf[:math.prod(shape)].reshape(shape)


class _Workspace:
    """Per thread and plan: the scratch views and line maps of one resize + crop.

    Horizontal pass first (Pillow's usual order): the input window is transposed
    (OpenCV's SIMD transpose, which releases the GIL like the numba code) so that the
    horizontal pass runs along the window's columns with its rows in the SIMD lanes: one
    line per column, holding the 3 channels' rows one after the other (interleaved RGB is
    transposed as one (rows, 3 * cols) byte matrix, whose rows 3x, 3x + 1, 3x + 2 are
    exactly that; planar input is transposed plane by plane into it). The 3 channels
    share the coefficients, so the pass runs on long lines of 3 * rows lanes, and writes
    one (crop, 3 * rows) matrix, which is transposed back for the vertical pass; that one
    reads each channel's rows from it and normalizes on the way out. Vertical pass first (rare: much taller than
    wide): the window is split into contiguous planes, the vertical pass runs along
    them, the horizontal one on its transposed output, and a last identity pass writes
    (and normalizes) the transposed result.
    """

    def __init__(self, plan: ResizeCropPlan):
        rows, cols, crop = plan.rows, plan.cols, plan.crop
        n_rows, n_cols = rows.span, cols.span
        side = max(n_rows, n_cols, crop)
        buf_a, buf_b, buf_c = _scratch_buffers(3 * side * side)
        self.plan = plan
        self.out_rows = _PLANE_ROWS * crop
        self.out_scratch = _take(buf_c, 3 * crop, crop)
        if plan.vertical_first:
            self.planes = _take(buf_c, 3, n_rows, n_cols)
            first_out = _take(buf_a, 3 * crop, n_cols)
            self.first_pass = (self.planes.reshape(3 * n_rows, n_cols), _PLANE_ROWS * n_rows, 1,
                               _NO_OFFSETS, rows.first, rows.taps, rows.coeffs, first_out,
                               self.out_rows, 1)
            self.first_planes = first_out.reshape(3, crop, n_cols)
            self.transposed = _take(buf_b, 3, n_cols, crop)
            second_out = _take(buf_a, 3 * crop, crop)
            self.second_pass = (self.transposed.reshape(3 * n_cols, crop), _PLANE_ROWS * n_cols,
                                1, _NO_OFFSETS, cols.first, cols.taps, cols.coeffs, second_out,
                                self.out_rows, 1)
            self.to_transpose, self.last_src = second_out, _take(buf_b, crop, 3 * crop)
            self.last_pass = (self.last_src, _NO_OFFSETS, 1, self.out_rows,
                              *_identity_pass(crop))
            return
        first_out = _take(buf_b, crop, 3 * n_rows)
        self.transposed = _take(buf_a, n_cols, 3, n_rows)
        self.plane_outs = [self.transposed[:, p] for p in range(3)]
        self.first_pass = (self.transposed.reshape(n_cols, 3 * n_rows), _NO_OFFSETS[:1], 1,
                           _NO_OFFSETS[:1], cols.first, cols.taps, cols.coeffs, first_out,
                           _NO_OFFSETS[:1], 1)
        self.to_transpose, self.last_src = first_out, _take(buf_a, 3 * n_rows, crop)
        self.last_pass = (self.last_src, _PLANE_ROWS * n_rows, 1, _NO_OFFSETS, rows.first,
                          rows.taps, rows.coeffs)


def _workspace(plan: ResizeCropPlan) -> _Workspace:
    workspaces = getattr(_scratch, "workspaces", None)
    if workspaces is None:
        workspaces = _scratch.workspaces = {}
    ws = workspaces.get(id(plan))  # plans hold arrays: not hashable, but cached
    if ws is None or ws.plan is not plan:
        if len(workspaces) >= 32:
            workspaces.clear()
        ws = _Workspace(plan)
        workspaces = _scratch.workspaces  # a larger scratch buffer starts a new dict
        workspaces[id(plan)] = ws
    return ws


def _window(img: np.ndarray, plan: ResizeCropPlan) -> tuple[np.ndarray, bool]:
    """The input pixels the crop reads, and whether they are interleaved RGB (else
    planar: a CHW array seen as HWC). Layouts OpenCV cannot transpose in place (negative
    or odd strides) are copied to contiguous RGB first."""
    rows, cols = plan.rows, plan.cols
    window = img[rows.span_start:rows.span_start + rows.span,
                 cols.span_start:cols.span_start + cols.span]
    s0, s1, s2 = window.strides
    if s1 == 1 and s0 > 0:
        return window, False
    if s1 == 3 and s2 == 1 and s0 > 0:
        return window, True
    return np.ascontiguousarray(window), True


def _resize_crop_into(img: np.ndarray, plan: ResizeCropPlan, out: np.ndarray, norm) -> None:
    """Resize + crop ``img`` into ``out`` (3, crop, crop): uint8 as Pillow gives it,
    float32 normalized (``norm``: ``_norm_constants``). See ``_Workspace``."""
    window, interleaved = _window(img, plan)
    ws = _workspace(plan)
    if plan.vertical_first:
        if interleaved:
            flat = np.ascontiguousarray(window).reshape(-1)
            _deinterleave(flat, 0, 3 * plan.cols.span, plan.rows.span, plan.cols.span,
                          ws.planes)
        else:
            np.copyto(ws.planes, window.transpose(2, 0, 1))
        _resample(*ws.first_pass)
        for p in range(3):
            cv2.transpose(ws.first_planes[p], ws.transposed[p])
        _resample(*ws.second_pass)
    else:
        if interleaved:
            cv2.transpose(window.reshape(window.shape[0], -1),
                          ws.transposed.reshape(-1, window.shape[0]))
        else:
            for p in range(3):
                cv2.transpose(window[:, :, p], ws.plane_outs[p])
        _resample(*ws.first_pass)
    cv2.transpose(ws.to_transpose, ws.last_src)
    if out.dtype != np.uint8:
        _resample_normalize(*ws.last_pass, norm[0], norm[1], out)
    elif out.flags.c_contiguous:
        _resample(*ws.last_pass, out.reshape(ws.out_scratch.shape), ws.out_rows, 1)
    else:
        _resample(*ws.last_pass, ws.out_scratch, ws.out_rows, 1)
        np.copyto(out, ws.out_scratch.reshape(out.shape))


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


def _run(img: np.ndarray, out: np.ndarray, plan: ResizeCropPlan, norm) -> None:
    if out.dtype != np.float16:
        _resize_crop_into(img, plan, out, norm)
        return
    # numba has no float16: float32 first, then round to float16 like torch's .half()
    buf32 = getattr(_scratch, "buf32", None)
    if buf32 is None or buf32.shape != out.shape:
        buf32 = _scratch.buf32 = np.empty(out.shape, dtype=np.float32)
    _resize_crop_into(img, plan, buf32, norm)
    np.copyto(out, buf32, casting="same_kind")


def _run_chunk(jobs, norm) -> None:
    for img, out, plan in jobs:
        _run(img, out, plan, norm)


def _resize_crop(img, out, resize, crop, mean, std, dtype) -> np.ndarray:
    img = _check_image(img)
    plan = resize_crop_plan(img.shape[0], img.shape[1], int(resize), int(crop))
    if out is None:
        out = np.empty((3, crop, crop), dtype=dtype if dtype is not None else np.float32)
    else:
        _check_out(out, crop, dtype)
    _run(img, out, plan, _norm_constants(tuple(mean), tuple(std)))
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
    norm = _norm_constants(tuple(mean), tuple(std))
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
