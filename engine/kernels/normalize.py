"""The last resampling pass with torchvision's ToTensor + Normalize fused into it, bit-exact.

torchvision computes ``(v / 255 - mean) / std`` in float32, each operation rounded (no
fast-math); this does the same arithmetic in the same order, so the float output is
exactly torchvision's. The divisions are done by multiplication and an fma correction
where that is checked to be exact for all 256 values (see ``norm_constants``).
"""
from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from engine.kernels.resample_pass import JIT, NO_OFFSETS, PLANE_ROWS, identity_pass, resample_lines

# Lines resampled before they are normalized: into a uint8 block, as every pass writes (the
# values are clamped to 0..255 anyway, and LLVM vectorizes wide-tap sums into bytes far
# better than into int32 lines); it stays in L1.
_BLOCK = 8


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with one rounding (LLVM's fma intrinsic: vfmadd on AVX2)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return sig, codegen


def _split_reciprocal(d) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``hi, lo`` with ``hi + lo`` = 1/d to ~48 bits (1/d in float64, split)."""
    r = 1.0 / np.asarray(d, dtype=np.float64)
    hi = r.astype(np.float32)
    return hi, (r - hi).astype(np.float32)


_R255_HI, _R255_LO = (np.float32(x) for x in _split_reciprocal(255.0))


@numba.njit(**JIT)
def resample_normalize(src, rows, step, lanes, first, taps, coeffs, norm, use_fma, dst):
    """``resample`` into float32 ``dst``, normalized on the way out: torchvision's
    ``(v / 255 - mean) / std``, each operation rounded to float32 (no fast-math).

    ``norm`` rows: mean, std, and 1/std split in two float32 parts ``hi + lo`` (see
    ``_split_reciprocal``). With ``use_fma`` each division ``x / d`` is done as
    ``fma(x, hi, x * lo)``: the reciprocal carries ~48 bits, so the one rounding gives
    the correctly rounded quotient unless it lies extremely close to a rounding boundary
    (2 operations instead of a slow vdivps). ``norm_constants`` sets
    ``use_fma`` only after checking all 256 values of every channel against numpy's
    divisions; the kernel never sees other values."""
    n_lines, nlanes = dst.shape[1], dst.shape[2]
    vals = np.empty((_BLOCK, nlanes), dtype=np.uint8)
    acc = np.empty(nlanes, dtype=np.int32)
    scale = np.float32(255.0)
    for p in range(dst.shape[0]):
        m, s, rs_hi, rs_lo = norm[0, p], norm[1, p], norm[2, p], norm[3, p]
        for i0 in range(0, n_lines, _BLOCK):
            i1 = min(i0 + _BLOCK, n_lines)
            resample_lines(src, rows[p], step, lanes[p], first, taps, coeffs, i0, i1, vals,
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


@lru_cache(maxsize=64)
def norm_constants(mean: tuple, std: tuple) -> tuple[np.ndarray, bool]:
    """(norm, use_fma) for ``resample_normalize``, cached: the same few pairs come every
    call. ``use_fma`` is set only when the split-reciprocal division gives exactly
    torchvision's float32 result for every one of the 256 values of every channel, checked
    here against numpy's float32 divisions; the kernel never sees other values."""
    mean, std = check_norm(mean, std)
    mean32, std32 = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    norm = np.ascontiguousarray(np.stack([mean32, std32, *_split_reciprocal(std32)]))
    values = np.arange(256, dtype=np.float32)
    want = (values[None, :] / np.float32(255.0) - mean32[:, None]) / std32[:, None]
    got = np.empty((3, 1, 256), dtype=np.float32)
    ramp = np.ascontiguousarray(np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 256)))
    first, taps, coeffs = identity_pass(1)
    resample_normalize(ramp, PLANE_ROWS, 1, NO_OFFSETS, first, taps, coeffs, norm, True, got)
    return norm, bool(np.array_equal(got[:, 0], want))


def check_norm(mean, std) -> tuple[tuple, tuple]:
    mean = tuple(float(m) for m in mean)
    std = tuple(float(s) for s in std)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean {mean} / std {std}: need 3 values each")
    if min(std) <= 0:
        raise ValueError(f"std {std}: every value must be positive")
    return mean, std
