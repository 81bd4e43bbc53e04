"""Resampling plans: Pillow's bilinear coefficients for a resize + centre crop.

Pillow (``Image.resize(size, Image.BILINEAR)`` on an 8-bit image, src/libImaging/
Resample.c) resamples in two separable passes through an 8-bit intermediate. Pillow 13
runs the vertical pass first when the height loses more than twice as many pixels as
the width (``in_h - out_h > 0`` and ``in_h - out_h > 2 * (in_w - out_w)``), the
horizontal pass first otherwise. (Pillow PR 9549, "If height is scaled down
significantly more than width, resize vertically first"; the rule was pinned down by
testing Pillow 13.0.0 against both orders on 3000 random size pairs, ties included:
every result matched exactly one order, the one this rule picks.) An
axis whose size does not change is not resampled at all; a plan expresses that as an
identity pass (one tap of weight 1.0, which reproduces the input byte exactly). Each
pass computes, per output pixel,
``clip8(2**21 + sum(pixel * coeff))`` with ``clip8(s) = clamp(s >> 22, 0, 255)`` and
coefficients that are the antialiased bilinear (triangle) filter weights, normalised to
sum 1 in double precision and rounded to 22-bit fixed point. This module reproduces the
coefficient arithmetic operation by operation (same double-precision expressions in the
same order), so the kernels that use the plans are bit-exact.

A plan keeps only the coefficients of the output pixels inside the centre crop, plus
the input rows/columns those pixels read: the kernels never compute the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PRECISION_BITS = 32 - 8 - 2
BILINEAR_SUPPORT = 1.0


def resized_size(height: int, width: int, resize: int) -> tuple[int, int]:
    """(height, width) after torchvision's ``Resize(resize)``: shorter side to ``resize``.

    The longer side is ``int(resize * long / short)``, as torchvision computes it.
    """
    if width <= height:
        return int(resize * height / width), resize
    return resize, int(resize * width / height)


def crop_offset(size: int, crop: int) -> int:
    """torchvision CenterCrop's offset: ``int(round((size - crop) / 2))``, half to even."""
    return int(round((size - crop) / 2.0))


def bilinear_coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for the bilinear filter.

    Returns ``(first, count, coeffs)``: output pixel ``i`` reads input pixels
    ``first[i] .. first[i] + count[i] - 1`` with int32 weights ``coeffs[i, :count[i]]``
    (the rest of the row is zero).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = BILINEAR_SUPPORT * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    inv_filterscale = 1.0 / filterscale

    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    # C's (int) cast truncates toward zero, then the bounds are clamped.
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    last = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64)
    count = last - first

    taps = np.arange(ksize, dtype=np.int64)
    used = taps[None, :] < count[:, None]
    x = ((taps[None, :] + first[:, None]).astype(np.float64) - center[:, None] + 0.5)
    x = np.abs(x * inv_filterscale)
    weights = np.where(used & (x < 1.0), 1.0 - x, 0.0)
    # Pillow sums the weights left to right; keep that order (numpy's sum is pairwise).
    total = np.zeros(out_size, dtype=np.float64)
    for t in range(ksize):
        total = total + weights[:, t]
    nonzero = total != 0.0
    weights[nonzero] = weights[nonzero] / total[nonzero, None]
    # Bilinear weights are never negative, so only the "+0.5 then truncate" branch applies.
    fixed = np.trunc(0.5 + weights * float(1 << PRECISION_BITS)).astype(np.int32)
    return first.astype(np.int32), count.astype(np.int32), fixed


def vertical_first(height: int, width: int, out_height: int, out_width: int) -> bool:
    """Whether Pillow 13 runs the vertical pass before the horizontal one."""
    shrink_h = height - out_height
    return shrink_h > 0 and shrink_h > 2 * (width - out_width)


@dataclass(frozen=True)
class AxisPlan:
    """One axis of a plan: how the ``crop`` output pixels of the window are computed.

    Output pixel ``i`` reads input pixels ``span_start + first[i] + t`` for
    ``t < taps`` with weights ``coeffs[i, t]`` (zero past the pixel's own count);
    the window reads ``span`` input pixels from ``span_start`` on. ``resampled`` is
    False when the axis keeps its size: then the pass is the identity.
    """

    resampled: bool
    span_start: int
    span: int
    first: np.ndarray
    taps: int
    coeffs: np.ndarray


@dataclass(frozen=True)
class ResizeCropPlan:
    height: int
    width: int
    resized_height: int
    resized_width: int
    crop: int
    rows: AxisPlan
    cols: AxisPlan
    vertical_first: bool


def _axis_plan(in_size: int, out_size: int, crop: int) -> AxisPlan:
    offset = crop_offset(out_size, crop)
    if in_size == out_size:
        unit = np.full((crop, 1), 1 << PRECISION_BITS, dtype=np.int32)
        return AxisPlan(False, offset, crop, np.arange(crop, dtype=np.int32), 1, unit)
    first, count, coeffs = bilinear_coeffs(in_size, out_size)
    first = first[offset:offset + crop]
    count = count[offset:offset + crop]
    coeffs = coeffs[offset:offset + crop]
    span_start = int(first.min())
    span_end = int((first + count).max())
    taps = max(int(count.max()), 1)
    return AxisPlan(True, span_start, span_end - span_start,
                    np.ascontiguousarray(first - span_start, dtype=np.int32), taps,
                    np.ascontiguousarray(coeffs[:, :taps]))


@lru_cache(maxsize=256)
def resize_crop_plan(height: int, width: int, resize: int, crop: int) -> ResizeCropPlan:
    """The cached plan for a ``height x width`` image, shorter side to ``resize``, centre
    ``crop``. Raises ValueError when the sizes make no sense."""
    if height < 1 or width < 1:
        raise ValueError(f"image size {height}x{width}: both sides must be at least 1")
    if resize < 1 or crop < 1:
        raise ValueError(f"resize {resize} / crop {crop}: must be positive")
    if crop > resize:
        raise ValueError(f"crop {crop} is larger than resize {resize}")
    out_h, out_w = resized_size(height, width, resize)
    if min(out_h, out_w) < crop:
        raise ValueError(f"image {height}x{width} resizes to {out_h}x{out_w}, "
                         f"smaller than crop {crop}")
    return ResizeCropPlan(height, width, out_h, out_w, crop,
                          _axis_plan(height, out_h, crop), _axis_plan(width, out_w, crop),
                          vertical_first(height, width, out_h, out_w))
