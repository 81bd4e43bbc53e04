"""Per-thread scratch memory and the pass layout of one resize + crop plan.

The resize + crop never allocates per call: every thread keeps three uint8 scratch
buffers, and per plan (input size, resize, crop) a ``Workspace`` of views into them
with the arguments of each resampling pass already laid out.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from engine.kernels.resample_pass import NO_OFFSETS, PLANE_ROWS, identity_pass
from engine.kernels.resample_plan import ResizeCropPlan

scratch = threading.local()

# A horizontal-first window larger than this (bytes) is transposed and resampled in stripes of
# STRIPE_ROWS rows, so that each transposed stripe stays in L2 (see ``Workspace``).
STRIPE_ABOVE = 8 << 20
STRIPE_ROWS = 128


def _scratch_buffers(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three per-thread uint8 scratch buffers of at least ``size`` bytes, reused across calls."""
    bufs = getattr(scratch, "bufs", None)
    if bufs is None or bufs[0].size < size:
        size = max(size, 3 * 400 * 400)
        bufs = scratch.bufs = tuple(np.empty(size, dtype=np.uint8) for _ in range(3))
        scratch.workspaces = {}
    return bufs


def _take(buf: np.ndarray, *shape: int) -> np.ndarray:
    return buf[:math.prod(shape)].reshape(shape)


class Workspace:
    """Per thread and plan: the scratch views and line maps of one resize + crop.

    Horizontal pass first (Pillow's usual order): the input window is transposed
    (OpenCV's SIMD transpose, which releases the GIL like the numba code) so that the
    horizontal pass runs along the window's columns with its rows in the SIMD lanes: one
    line per column, holding the 3 channels' rows one after the other (interleaved RGB is
    transposed as one (rows, 3 * cols) byte matrix, whose rows 3x, 3x + 1, 3x + 2 are
    exactly that; planar input is transposed plane by plane into it). The 3 channels
    share the coefficients, so the pass runs on long lines of 3 * rows lanes, and writes
    one (crop width, 3 * rows) matrix, which is transposed back for the vertical pass; that one
    reads each channel's rows from it and normalizes on the way out. Vertical pass first (rare: much taller than
    wide): the window is split into contiguous planes, the vertical pass runs along
    them, the horizontal one on its transposed output, and a last identity pass writes
    (and normalizes) the transposed result.

    Large windows (above ``STRIPE_ABOVE`` bytes: photos of 10 MP and more) run the
    horizontal pass in stripes of ``STRIPE_ROWS`` rows instead: one OpenCV transpose of the
    whole window writes across more cache lines and pages than the caches hold (7 ms for a
    4000x3000 photo's window on the Xeon VM, against 1.6 ms in stripes). Each stripe is
    transposed into a (3 * cols, S) buffer that stays in L2 and resampled at once, as 3
    planes of S lanes, into its lanes of the pass's output, laid out (crop width, 3,
    stripes, S): the vertical pass reads channel ``c``'s row ``r`` at ``c * padded_rows +
    r`` as without stripes.
    """

    def __init__(self, plan: ResizeCropPlan):
        rows, cols = plan.rows, plan.cols
        crop_h, crop_w = plan.crop_height, plan.crop_width
        n_rows, n_cols = rows.span, cols.span
        self.stripes = 0
        if not plan.vertical_first and 3 * n_rows * n_cols > STRIPE_ABOVE:
            self.stripes = -(-n_rows // STRIPE_ROWS)
        padded_rows = max(n_rows, self.stripes * STRIPE_ROWS)
        side = max(padded_rows, n_cols, crop_h, crop_w)
        buf_a, buf_b, buf_c = _scratch_buffers(3 * side * side)
        self.plan = plan
        self.out_rows = PLANE_ROWS * crop_h
        self.out_scratch = _take(buf_c, 3 * crop_h, crop_w)
        if plan.vertical_first:
            self.planes = _take(buf_c, 3, n_rows, n_cols)
            first_out = _take(buf_a, 3 * crop_h, n_cols)
            self.first_pass = (self.planes.reshape(3 * n_rows, n_cols), PLANE_ROWS * n_rows, 1,
                               NO_OFFSETS, rows.first, rows.taps, rows.coeffs, first_out,
                               self.out_rows, 1)
            self.first_planes = first_out.reshape(3, crop_h, n_cols)
            self.transposed = _take(buf_b, 3, n_cols, crop_h)
            second_out = _take(buf_a, 3 * crop_w, crop_h)
            self.second_pass = (self.transposed.reshape(3 * n_cols, crop_h), PLANE_ROWS * n_cols,
                                1, NO_OFFSETS, cols.first, cols.taps, cols.coeffs, second_out,
                                PLANE_ROWS * crop_w, 1)
            self.to_transpose, self.last_src = second_out, _take(buf_b, crop_h, 3 * crop_w)
            self.last_pass = (self.last_src, NO_OFFSETS, 1, PLANE_ROWS * crop_w,
                              *identity_pass(crop_h))
            return
        if self.stripes:
            self._stripe_layout(plan, buf_a, buf_b)
            return
        first_out = _take(buf_b, crop_w, 3 * n_rows)
        self.transposed = _take(buf_a, n_cols, 3, n_rows)
        self.plane_outs = [self.transposed[:, p] for p in range(3)]
        self.first_pass = (self.transposed.reshape(n_cols, 3 * n_rows), NO_OFFSETS[:1], 1,
                           NO_OFFSETS[:1], cols.first, cols.taps, cols.coeffs, first_out,
                           NO_OFFSETS[:1], 1)
        self.to_transpose, self.last_src = first_out, _take(buf_a, 3 * n_rows, crop_w)
        self.last_pass = (self.last_src, PLANE_ROWS * n_rows, 1, NO_OFFSETS, rows.first,
                          rows.taps, rows.coeffs)

    def _stripe_layout(self, plan: ResizeCropPlan, buf_a: np.ndarray, buf_b: np.ndarray) -> None:
        """The horizontal pass in ``self.stripes`` stripes (see the class docstring):
        ``stripe_pass(s)`` gives the ``resample`` arguments of stripe ``s``."""
        rows, cols, crop_w, n_cols = plan.rows, plan.cols, plan.crop_width, plan.cols.span
        n, padded = self.stripes, self.stripes * STRIPE_ROWS
        self.stripe = _take(buf_a, n_cols, 3, STRIPE_ROWS)
        first_out = _take(buf_b, crop_w, 3 * padded)
        self._stripe_args = (self.stripe.reshape(3 * n_cols, STRIPE_ROWS), PLANE_ROWS, 3, NO_OFFSETS,
                             cols.first, cols.taps, cols.coeffs,
                             first_out.reshape(crop_w * 3 * n, STRIPE_ROWS))
        self._stripe_rows = [PLANE_ROWS * n + s for s in range(n)]
        self.to_transpose, self.last_src = first_out, _take(buf_a, 3 * padded, crop_w)
        self.last_pass = (self.last_src, PLANE_ROWS * padded, 1, NO_OFFSETS, rows.first,
                          rows.taps, rows.coeffs)

    def stripe_pass(self, s: int) -> tuple:
        return (*self._stripe_args, self._stripe_rows[s], 3 * self.stripes)


def workspace(plan: ResizeCropPlan) -> Workspace:
    workspaces = getattr(scratch, "workspaces", None)
    if workspaces is None:
        workspaces = scratch.workspaces = {}
    ws = workspaces.get(id(plan))  # plans hold arrays: not hashable, but cached
    if ws is None or ws.plan is not plan:
        if len(workspaces) >= 32:
            workspaces.clear()
        ws = Workspace(plan)
        workspaces = scratch.workspaces  # a larger scratch buffer starts a new dict
        workspaces[id(plan)] = ws
    return ws
