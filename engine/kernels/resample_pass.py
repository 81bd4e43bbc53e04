"""One Pillow resampling pass, in exact int32 arithmetic, along the contiguous axis.

Both passes of Pillow's 8-bit resize (bilinear, bicubic, nearest) are exact integer sums, so they can be
summed in any order: each pass runs along the contiguous axis of its input with the
other axis in the SIMD lanes (see ``resample_plan`` for Pillow's arithmetic and its
coefficients). These are the numba loops every resize + crop runs.
"""
from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

from engine.kernels.resample_plan import PRECISION_BITS

_HALF = 1 << (PRECISION_BITS - 1)
JIT = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy"}
PLANE_ROWS = np.arange(3, dtype=np.int64)
NO_OFFSETS = np.zeros(3, dtype=np.int64)


@numba.njit(**JIT)
def _sum_many_taps(src, row, step, lanes, last, y0, taps, k, acc):
    """``acc = 2**21 + sum_t line(y0 + t) * k[t]`` over ``taps > 6`` taps, 4 at a time in
    one fused loop (the last 1 to 4 with zero weights past ``taps``), so that ``acc``
    makes one trip through L1 per 4 taps."""
    for lane in range(acc.shape[0]):
        acc[lane] = _HALF
    for t in range(0, taps, 4):
        k0 = k[t]
        k1 = k[t + 1] if t + 1 < taps else np.int32(0)
        k2 = k[t + 2] if t + 2 < taps else np.int32(0)
        k3 = k[t + 3] if t + 3 < taps else np.int32(0)
        l0 = src[row + min(y0 + t, last) * step, lanes]
        l1 = src[row + min(y0 + t + 1, last) * step, lanes]
        l2 = src[row + min(y0 + t + 2, last) * step, lanes]
        l3 = src[row + min(y0 + t + 3, last) * step, lanes]
        for lane in range(acc.shape[0]):
            acc[lane] += np.int32(l0[lane] * k0 + l1[lane] * k1 + l2[lane] * k2 + l3[lane] * k3)


@numba.njit(**JIT)
def resample_lines(src, row, step, lane0, first, taps, coeffs, i0, i1, dst, drow, dstep,
                    acc):
    """Lines ``i0 <= i < i1`` of one plane of a Pillow pass, into rows ``d = drow + (i -
    i0) * dstep`` of the uint8 ``dst``: ``dst[d, l] = clip8(2**21 + sum_t
    src[row + (first[i] + t) * step, lane0 + l] * coeffs[i, t])``.

    The pass's input lines are rows of the 2-D ``src``: line ``y`` is row ``row + y *
    step``, its lanes start at column ``lane0``. Integer sums are exact, so summing tap by
    tap over whole lanes (SIMD int32 arithmetic; the int32 casts keep LLVM in 32-bit
    lanes, the sums fit as in Pillow's C) gives Pillow's result bit for bit. Weights past
    a pixel's own taps are 0, so every line sums ``taps`` taps (lines past the input are
    clamped to one that exists), up to 4 in one fused loop per tap count, 5 and 6 (bicubic
    shrinking by up to 2x) in one more: simple counted loops that LLVM vectorizes, the sum
    in registers. More taps accumulate in ``acc`` (int32, ``nlanes`` long; see
    ``_sum_many_taps``), which costs a trip through L1 per 4 taps.
    """
    nlanes = dst.shape[1]
    last = (src.shape[0] - 1 - row) // step
    lanes = slice(lane0, lane0 + nlanes)
    if taps == 5 or taps == 6:
        for i in range(i0, i1):
            line, y0 = dst[drow + (i - i0) * dstep], first[i]
            k0, k1, k2, k3, k4 = coeffs[i, 0], coeffs[i, 1], coeffs[i, 2], coeffs[i, 3], coeffs[i, 4]
            k5 = coeffs[i, 5] if taps == 6 else np.int32(0)  # 5 taps: a sixth of weight 0
            l0 = src[row + y0 * step, lanes]
            l1 = src[row + min(y0 + 1, last) * step, lanes]
            l2 = src[row + min(y0 + 2, last) * step, lanes]
            l3 = src[row + min(y0 + 3, last) * step, lanes]
            l4 = src[row + min(y0 + 4, last) * step, lanes]
            l5 = src[row + min(y0 + 5, last) * step, lanes]
            for lane in range(nlanes):
                a = np.int32(_HALF + l0[lane] * k0 + l1[lane] * k1 + l2[lane] * k2
                             + l3[lane] * k3 + l4[lane] * k4 + l5[lane] * k5)
                line[lane] = min(max(a >> PRECISION_BITS, 0), 255)
        return
    if taps > 6:
        for i in range(i0, i1):
            _sum_many_taps(src, row, step, lanes, last, first[i], taps, coeffs[i], acc)
            line = dst[drow + (i - i0) * dstep]
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


@numba.njit(**JIT)
def resample(src, rows, step, lanes, first, taps, coeffs, dst, drows, dstep):
    """A Pillow pass into the uint8 2-D ``dst``: plane ``p`` reads its input lines from
    ``src`` rows ``rows[p] + y * step``, columns from ``lanes[p]`` on, and writes its
    output line ``i`` to ``dst`` row ``drows[p] + i * dstep`` (see ``resample_lines``)."""
    acc = np.empty(dst.shape[1], dtype=np.int32)
    for p in range(rows.shape[0]):
        resample_lines(src, rows[p], step, lanes[p], first, taps, coeffs, 0, first.shape[0],
                        dst, drows[p], dstep, acc)


@numba.njit(**JIT)
def deinterleave(flat, offset, row_stride, n_rows, n_cols, dst):
    """dst[c, r, x] = flat[offset + r * row_stride + 3 * x + c]: RGB pixel rows into 3 planes.
    Indexing a contiguous row slice lets LLVM vectorize the stride-3 pattern (offset arithmetic
    on the whole buffer does not vectorize)."""
    for r in range(n_rows):
        start = offset + r * row_stride
        row = flat[start:start + 3 * n_cols]
        d0, d1, d2 = dst[0, r], dst[1, r], dst[2, r]
        for x in range(n_cols):
            d0[x] = row[3 * x]
            d1[x] = row[3 * x + 1]
            d2[x] = row[3 * x + 2]


@lru_cache(maxsize=16)
def identity_pass(size: int) -> tuple[np.ndarray, int, np.ndarray]:
    """(first, taps, coeffs) of a pass that copies ``size`` lines unchanged."""
    return (np.arange(size, dtype=np.int32), 1,
            np.full((size, 1), 1 << PRECISION_BITS, dtype=np.int32))
