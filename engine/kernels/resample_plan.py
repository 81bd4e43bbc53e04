"""Resampling plans: Pillow's coefficients for a resize + centre crop, bit for bit.

Pillow (``Image.resize(size, filter)`` on an 8-bit image, src/libImaging/Resample.c)
resamples with a convolution filter in two separable passes through an 8-bit
intermediate. Pillow 13 runs the vertical pass first when the height loses more than
twice as many pixels as the width (``in_h - out_h > 0`` and ``in_h - out_h > 2 * (in_w
- out_w)``), the horizontal pass first otherwise. (Pillow PR 9549, "If height is scaled
down significantly more than width, resize vertically first"; the rule was pinned down
by testing Pillow 13.0.0 against both orders on 3000 random size pairs, ties included:
every result matched exactly one order, the one this rule picks.) An axis whose size
does not change is not resampled at all; a plan expresses that as an identity pass (one
tap of weight 1.0, which reproduces the input byte exactly). Each pass computes, per
output pixel, ``clip8(2**21 + sum(pixel * coeff))`` with ``clip8(s) = clamp(s >> 22, 0,
255)``: every pass, the first one included, clamps to 0..255 before the next reads it.

The coefficients (``precompute_coeffs`` + ``normalize_coeffs_8bpc``): with ``scale =
in / out`` and ``filterscale = max(scale, 1)`` (antialiasing when shrinking), output
pixel ``i`` has centre ``(i + 0.5) * scale`` and reads the input pixels from ``int(centre
- support + 0.5)`` (at least 0) to ``int(centre + support + 0.5)`` (at most ``in``),
``support = filter_support * filterscale``; input pixel ``x`` weighs ``filter((x -
centre + 0.5) / filterscale)``, the weights are divided by their sum (taken left to
right) in double precision and rounded to 22-bit fixed point: ``int(0.5 + w * 2**22)``
for ``w >= 0``, ``int(-0.5 + w * 2**22)`` for negative ``w`` (C's int cast truncates
toward zero, so negative weights round half away from zero too). The filters:

- bilinear (triangle): ``1 - |x|`` for ``|x| < 1``, support 1; never negative.
- bicubic (Keys' cubic convolution, ``a = -0.5``), support 2: ``((a + 2)|x| - (a + 3))
  x**2 + 1`` for ``|x| < 1``, ``(((|x| - 5)|x| + 8)|x| - 4) a`` for ``1 <= |x| < 2``. Its
  outer lobes are negative, so a pass can overshoot 0..255 (the clamp above) and the
  positive weights sum above 1: the sums stay far inside int32 (at most ``255 * 1.1 *
  2**22 + 2**21``), as in Pillow's C.

Nearest (``Image.NEAREST``) takes another path in Pillow (an affine scale,
Geometry.c's ``ImagingScaleAffine``): output pixel ``i`` copies input pixel
``int(x_i)``, ``x_0 = scale / 2`` and ``x_{i+1} = x_i + scale`` accumulated in double
precision. A plan expresses it as passes of one tap of weight 1.0 on that pixel.
This module reproduces all of this operation by operation (same double-precision
expressions in the same order), so the kernels that use the plans are bit-exact.

A plan keeps only the coefficients of the output pixels inside the centre crop, plus
the input rows/columns those pixels read: the kernels never compute the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PRECISION_BITS = 32 - 8 - 2
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0}
_BICUBIC_A = -0.5


def pair(value, name: str) -> tuple[int, int]:
    """``value`` as (height, width): an int is square. Raises ValueError naming ``name``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        sides = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        sides = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name} {value!r}: expected an int or a (height, width) pair of ints")
    if min(sides) < 1:
        raise ValueError(f"{name} {value!r}: must be positive")
    return sides


def resized_size(height: int, width: int, resize) -> tuple[int, int]:
    """(height, width) after torchvision's ``Resize(resize)``.

    An int: the shorter side to ``resize``, the longer one ``int(resize * long /
    short)``, as torchvision computes it. A (height, width) pair: exactly that size
    (timm's crop mode "squash").
    """
    if not isinstance(resize, (int, np.integer)):
        return int(resize[0]), int(resize[1])
    if width <= height:
        return int(resize * height / width), int(resize)
    return int(resize), int(resize * width / height)


def crop_offset(size: int, crop: int) -> int:
    """torchvision CenterCrop's offset: ``int(round((size - crop) / 2))``, half to even."""
    return int(round((size - crop) / 2.0))


def _filter_weights(x: np.ndarray, interpolation: str) -> np.ndarray:
    """Pillow's ``bilinear_filter`` / ``bicubic_filter`` on ``x``, same expressions."""
    x = np.abs(x)
    if interpolation == "bilinear":
        return np.where(x < 1.0, 1.0 - x, 0.0)
    a = _BICUBIC_A
    inner = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


def filter_coeffs(in_size: int, out_size: int,
                  interpolation: str = "bilinear") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for a convolution filter.

    Returns ``(first, count, coeffs)``: output pixel ``i`` reads input pixels
    ``first[i] .. first[i] + count[i] - 1`` with int32 weights ``coeffs[i, :count[i]]``
    (the rest of the row is zero).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT[interpolation] * filterscale
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
    weights = np.where(used, _filter_weights(x * inv_filterscale, interpolation), 0.0)
    # Pillow sums the weights left to right; keep that order (numpy's sum is pairwise).
    total = np.zeros(out_size, dtype=np.float64)
    for t in range(ksize):
        total = total + weights[:, t]
    nonzero = total != 0.0
    weights[nonzero] = weights[nonzero] / total[nonzero, None]
    scaled = weights * float(1 << PRECISION_BITS)
    fixed = np.trunc(np.where(weights < 0, -0.5 + scaled, 0.5 + scaled)).astype(np.int32)
    return first.astype(np.int32), count.astype(np.int32), fixed


def nearest_pixels(in_size: int, out_size: int) -> np.ndarray:
    """The input pixel each output pixel copies under Pillow's NEAREST (see the module
    docstring): the positions are accumulated one addition at a time, as in the C loop."""
    scale = in_size / out_size
    positions = np.empty(out_size, dtype=np.float64)
    position = scale * 0.5
    for i in range(out_size):
        positions[i] = position
        position += scale
    return np.minimum(positions.astype(np.int64), in_size - 1).astype(np.int32)


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
    crop_height: int
    crop_width: int
    interpolation: str
    rows: AxisPlan
    cols: AxisPlan
    vertical_first: bool


def _axis_coeffs(in_size: int, out_size: int,
                 interpolation: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if interpolation == "nearest":
        return (nearest_pixels(in_size, out_size), np.ones(out_size, dtype=np.int32),
                np.full((out_size, 1), 1 << PRECISION_BITS, dtype=np.int32))
    return filter_coeffs(in_size, out_size, interpolation)


def _axis_plan(in_size: int, out_size: int, crop: int, interpolation: str) -> AxisPlan:
    offset = crop_offset(out_size, crop)
    if in_size == out_size:
        unit = np.full((crop, 1), 1 << PRECISION_BITS, dtype=np.int32)
        return AxisPlan(False, offset, crop, np.arange(crop, dtype=np.int32), 1, unit)
    first, count, coeffs = _axis_coeffs(in_size, out_size, interpolation)
    first = first[offset:offset + crop]
    count = count[offset:offset + crop]
    coeffs = coeffs[offset:offset + crop]
    span_start = int(first.min())
    span_end = int((first + count).max())
    taps = max(int(count.max()), 1)
    return AxisPlan(True, span_start, span_end - span_start,
                    np.ascontiguousarray(first - span_start, dtype=np.int32), taps,
                    np.ascontiguousarray(coeffs[:, :taps]))


def kernel_limitation(resize=256, crop=224, interpolation: str = "bilinear") -> str | None:
    """None when the kernel reproduces torchvision's ``Resize(resize, interpolation) +
    CenterCrop(crop)`` on a PIL image (Pillow 13) bit for bit, else a one-line reason: an
    interpolation the kernel lacks, sizes that are not positive ints or (height, width)
    pairs, a crop that CenterCrop would pad. Pure: it looks at no image, so the engine
    can decide per model whether its preprocessing runs on the kernel."""
    if interpolation not in INTERPOLATIONS:
        return f"interpolation {interpolation!r} is not in the kernel (it has {', '.join(INTERPOLATIONS)})"
    try:
        resize_hw = pair(resize, "resize")
        crop_h, crop_w = pair(crop, "crop")
    except ValueError as error:
        return str(error)
    # An int resize makes the shorter side, whichever it is, that long: the bound on both.
    if crop_h > resize_hw[0] or crop_w > resize_hw[1]:
        return (f"crop {crop!r} is larger than resize {resize!r}: CenterCrop would pad, "
                f"the kernel does not")
    return None


def transform_key(resize, crop, interpolation) -> tuple:
    """(resize, (crop_h, crop_w), interpolation), checked and hashable: what
    ``resize_crop_plan`` takes. Raises ValueError with ``kernel_limitation``'s reason.
    Cached, as every call of the kernel asks (lists, as JSON configs give, become tuples)."""
    resize, crop = (tuple(v) if isinstance(v, list) else v for v in (resize, crop))
    try:
        return _checked_key(resize, crop, interpolation)
    except TypeError:  # unhashable, so not a size or interpolation the kernel knows
        raise ValueError(kernel_limitation(resize, crop, interpolation)) from None


@lru_cache(maxsize=64)
def _checked_key(resize, crop, interpolation) -> tuple:
    reason = kernel_limitation(resize, crop, interpolation)
    if reason is not None:
        raise ValueError(reason)
    resize = int(resize) if isinstance(resize, (int, np.integer)) else pair(resize, "resize")
    return resize, pair(crop, "crop"), interpolation


@lru_cache(maxsize=256)
def resize_crop_plan(height: int, width: int, resize, crop,
                     interpolation: str = "bilinear") -> ResizeCropPlan:
    """The cached plan for a ``height x width`` image resized as ``resized_size`` says,
    then centre-cropped to ``crop`` (an int or (height, width)). Raises ValueError when
    the sizes make no sense or the kernel cannot do the transform."""
    if height < 1 or width < 1:
        raise ValueError(f"image size {height}x{width}: both sides must be at least 1")
    reason = kernel_limitation(resize, crop, interpolation)
    if reason is not None:
        raise ValueError(reason)
    crop_h, crop_w = pair(crop, "crop")
    out_h, out_w = resized_size(height, width, resize)
    if out_h < crop_h or out_w < crop_w:
        raise ValueError(f"image {height}x{width} resizes to {out_h}x{out_w}, "
                         f"smaller than crop {crop_h}x{crop_w}")
    return ResizeCropPlan(height, width, out_h, out_w, crop_h, crop_w, interpolation,
                          _axis_plan(height, out_h, crop_h, interpolation),
                          _axis_plan(width, out_w, crop_w, interpolation),
                          vertical_first(height, width, out_h, out_w))
