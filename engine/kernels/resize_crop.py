"""Fused resize + centre crop + normalize, bit-exact to Pillow's 8-bit resize.

``resize_crop_normalize(img, resize=256, crop=224, interpolation="bilinear")`` gives what
torchvision's ``Compose([Resize(256, BILINEAR), CenterCrop(224), ToTensor(),
Normalize(mean, std)])`` gives for ``PIL.Image.fromarray(img)``, bit for bit, touching
only the input pixels that the crop needs: no full-size resized image is ever made.
Bilinear, bicubic and nearest; ``resize`` an int (shorter side) or (height, width)
(squash), ``crop`` an int or (height, width). See ``resample_plan`` for Pillow's
arithmetic and pass order, ``kernel_limitation`` for what the kernel does not do.

How it is fast: both resampling passes are exact integer sums, so they can be summed in
any order. Each pass runs along the contiguous axis of its input with the other axis in
the SIMD lanes (numba, int32); the data is transposed between passes with OpenCV's SIMD
transpose (it releases the GIL, as the numba code does). Interleaved RGB is never split:
its 3 channels ride along as 3 more SIMD lanes; planar input (the engine's npz CHW array
seen as HWC through ``transpose(1, 2, 0)``) is transposed plane by plane (see
``Workspace``). Resampling coefficients are cached per input size and transform
(``resize_crop_plan``), scratch views per thread and plan.

The last step does torchvision's float32 arithmetic in its order (``v / 255``,
``- mean``, ``/ std``, each rounded to float32; no fast-math), so the float output is
exactly torchvision's (the divisions are done by multiplication and an fma correction
where that is checked to be exact for all 256 values; see ``resample_normalize``);
float16 is that float32 result rounded, as ``.half()`` does.
"""
from __future__ import annotations

import cv2
import numpy as np

from engine.kernels.normalize import norm_constants, resample_normalize
from engine.kernels.resample_pass import deinterleave, resample
from engine.kernels.resample_plan import ResizeCropPlan, resize_crop_plan, transform_key
from engine.kernels.workspace import STRIPE_ROWS, scratch, workspace

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

OUTPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))


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


def _striped_first_pass(window: np.ndarray, interleaved: bool, ws) -> None:
    """The horizontal pass of a large window, stripe by stripe (see ``Workspace``)."""
    rows = STRIPE_ROWS
    for s in range(ws.stripes):
        stripe = window[s * rows:(s + 1) * rows]
        n = stripe.shape[0]
        if interleaved:
            cv2.transpose(stripe.reshape(n, -1), ws.stripe.reshape(-1, rows)[:, :n])
        else:
            for p in range(3):
                cv2.transpose(stripe[:, :, p], ws.stripe[:, p, :n])
        resample(*ws.stripe_pass(s))


def _resize_crop_native(img: np.ndarray, plan: ResizeCropPlan, out: np.ndarray, norm) -> None:
    """Resize + crop ``img`` into ``out`` (3, crop_h, crop_w): uint8 as Pillow gives it,
    float32 normalized (``norm``: ``norm_constants``). See ``Workspace``."""
    window, interleaved = _window(img, plan)
    ws = workspace(plan)
    if plan.vertical_first:
        if interleaved:
            flat = np.ascontiguousarray(window).reshape(-1)
            deinterleave(flat, 0, 3 * plan.cols.span, plan.rows.span, plan.cols.span,
                          ws.planes)
        else:
            np.copyto(ws.planes, window.transpose(2, 0, 1))
        resample(*ws.first_pass)
        for p in range(3):
            cv2.transpose(ws.first_planes[p], ws.transposed[p])
        resample(*ws.second_pass)
    elif ws.stripes:
        _striped_first_pass(window, interleaved, ws)
    else:
        if interleaved:
            cv2.transpose(window.reshape(window.shape[0], -1),
                          ws.transposed.reshape(-1, window.shape[0]))
        else:
            for p in range(3):
                cv2.transpose(window[:, :, p], ws.plane_outs[p])
        resample(*ws.first_pass)
    cv2.transpose(ws.to_transpose, ws.last_src)
    if out.dtype != np.uint8:
        resample_normalize(*ws.last_pass, norm[0], norm[1], out)
    elif out.flags.c_contiguous:
        resample(*ws.last_pass, out.reshape(ws.out_scratch.shape), ws.out_rows, 1)
    else:
        resample(*ws.last_pass, ws.out_scratch, ws.out_rows, 1)
        np.copyto(out, ws.out_scratch.reshape(out.shape))


def check_image(img, name: str = "img") -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"{name}: dtype {img.dtype}, expected uint8")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name}: shape {img.shape}, expected (height, width, 3) RGB")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{name}: shape {img.shape} has an empty side")
    return img


def check_out(out, crop: tuple[int, int], dtype, name: str = "out") -> None:
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(out).__name__}")
    if out.shape != (3, *crop):
        raise ValueError(f"{name}: shape {out.shape}, expected {(3, *crop)}")
    if out.dtype not in OUTPUT_DTYPES or (dtype is not None and out.dtype != dtype):
        want = np.dtype(dtype) if dtype is not None else "float32, float16 or uint8"
        raise ValueError(f"{name}: dtype {out.dtype}, expected {want}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: array is read-only")


def resize_crop_into(img: np.ndarray, out: np.ndarray, plan: ResizeCropPlan, norm) -> None:
    if out.dtype != np.float16:
        _resize_crop_native(img, plan, out, norm)
        return
    # numba has no float16: float32 first, then round to float16 like torch's .half()
    buf32 = getattr(scratch, "buf32", None)
    if buf32 is None or buf32.shape != out.shape:
        buf32 = scratch.buf32 = np.empty(out.shape, dtype=np.float32)
    _resize_crop_native(img, plan, buf32, norm)
    np.copyto(out, buf32, casting="same_kind")


def _resize_crop(img, out, resize, crop, interpolation, mean, std, dtype) -> np.ndarray:
    img = check_image(img)
    resize, crop, interpolation = transform_key(resize, crop, interpolation)
    plan = resize_crop_plan(img.shape[0], img.shape[1], resize, crop, interpolation)
    if out is None:
        out = np.empty((3, *crop), dtype=dtype if dtype is not None else np.float32)
    else:
        check_out(out, crop, dtype)
    resize_crop_into(img, out, plan, norm_constants(tuple(mean), tuple(std)))
    return out


def resize_crop_normalize(img: np.ndarray, out: np.ndarray | None = None, *, resize=256,
                          crop=224, interpolation: str = "bilinear", mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, dtype=None) -> np.ndarray:
    """Resize (Pillow ``interpolation``: "bilinear", "bicubic" or "nearest"; ``resize`` an
    int: shorter side to it, or (height, width): exactly that size), centre-crop ``crop``
    (an int or (height, width)), then ToTensor + Normalize: a (3, crop_h, crop_w) CHW array.

    ``img``: uint8 (height, width, 3) RGB, any strides (a transposed CHW view is fine).
    ``out``: optional float32 or float16 (3, crop_h, crop_w) array to write into (any
    strides); otherwise a new one of ``dtype`` (float32 by default) is returned.
    Raises ValueError naming the argument when an input is unusable.
    """
    if dtype is not None and np.dtype(dtype) not in OUTPUT_DTYPES[:2]:
        raise ValueError(f"dtype {np.dtype(dtype)}: expected float32 or float16")
    if out is not None and out.dtype == np.uint8:
        raise ValueError("out: dtype uint8, expected float32 or float16 (use resize_crop_uint8)")
    return _resize_crop(img, out, resize, crop, interpolation, mean, std, dtype)


def resize_crop_uint8(img: np.ndarray, out: np.ndarray | None = None, *, resize=256,
                      crop=224, interpolation: str = "bilinear") -> np.ndarray:
    """Like ``resize_crop_normalize`` without normalization: uint8 (3, crop_h, crop_w) CHW,
    for devices that normalize on their own."""
    return _resize_crop(img, out, resize, crop, interpolation, IMAGENET_MEAN, IMAGENET_STD, np.uint8)
