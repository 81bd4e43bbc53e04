"""Per-channel int8 weight ranges that cannot saturate x86's VPMADDUBSW.

On x86 without VNNI, onnxruntime's int8 convolutions multiply uint8 activations by int8
weights with VPMADDUBSW, which adds the two products of each pair of neighbouring input
channels (2j, 2j+1) into a saturating int16 (see ``engine.builder.cpu_target.int8_types``). With
activations up to 255 a pair overflows when the magnitudes of its two weights, if they
have the same sign, add up to more than 128 (255 * 129 > 32767); with opposite signs it
cannot. ``reduce_range`` avoids that by giving every weight 7 bits (-64..64), whatever
its neighbour. Most channels do not need it: their largest weight sits next to a small
one. Here each output channel of an ordinary convolution gets the widest range, up to
-127..127, in which no pair can overflow for any input, checked on the rounded-up
magnitudes so that any rounding (nearest, or AdaRound's up or down) stays safe; and
depthwise convolutions, whose kernels accumulate in int32, get the full range.

The pairing is the kernels' and is measured, not assumed
(tests/builder/test_weight_ranges.py, on CPUs without VNNI): inputs of 255 through weights built to overflow one
pairing and not the others saturate onnxruntime's 1x1 and 3x3 convolutions and MatMul
exactly for neighbouring input channels at the same kernel tap, at a pair sum of 129 and
not 128, and never its depthwise convolutions.

``engine.builder.channel_pairing`` reorders channels before this, so that
fewer pairs cap a range.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from engine.builder.graph import attribute

PAIR_LIMIT = 128  # 255 * 128 = 32640 fits an int16 (32767); 255 * 129 does not
REDUCED = 64      # reduce_range's symmetric int8 range: every pair fits
FULL = 127


def pair_sums(magnitudes: np.ndarray, signs: np.ndarray, axis: int = 0) -> np.ndarray:
    """Worst |a0 * w0 + a1 * w1| / 255 over activations in 0..255 for each pair of input
    channels (2j, 2j+1), input channels along ``axis`` (0: one output channel's weights
    (C, ...)): the sum of the two magnitudes where the signs agree, the larger one where
    they differ. An odd last channel pairs with zero, as in the kernels' zero-padded
    packing."""
    magnitudes, signs = np.moveaxis(magnitudes, axis, 0), np.moveaxis(signs, axis, 0)
    if magnitudes.shape[0] % 2:
        pad = [(0, 1)] + [(0, 0)] * (magnitudes.ndim - 1)
        magnitudes, signs = np.pad(magnitudes, pad), np.pad(signs, pad)
    a, b = magnitudes[0::2], magnitudes[1::2]
    same = signs[0::2] * signs[1::2] > 0
    return np.moveaxis(np.where(same, a + b, np.maximum(a, b)), 0, axis)


# Output channels checked at once (VGG's 7x7 classifier convolution has 25088 weights each).
CHUNK = 64


def channel_ranges(weights: np.ndarray) -> np.ndarray:
    """For each output channel of ``weights`` (O, C, ...), the widest symmetric integer
    range R (REDUCED..FULL) in which every pair stays within PAIR_LIMIT when each weight
    is rounded either way; the channel's scale is then max|w| / R. A wider range only
    rounds magnitudes up further, so the ranges that fit are REDUCED..R and R is found
    by bisection."""
    ranges = np.full(weights.shape[0], REDUCED)
    if weights.shape[1] % 2:
        return ranges  # odd channel counts pair a channel with the next tap's: not checked
    for start in range(0, weights.shape[0], CHUNK):
        w = weights[start:start + CHUNK].astype(np.float64).reshape(min(CHUNK, weights.shape[0] - start),
                                                                     weights.shape[1], -1)
        absolute, signs = np.abs(w), np.sign(w)
        peak = absolute.max(axis=(1, 2))
        fits, too_wide = np.full(len(w), REDUCED), np.full(len(w), FULL + 1)
        while np.any(too_wide - fits > 1):
            trial = (fits + too_wide) // 2
            scale = np.where(peak > 0, trial / np.where(peak > 0, peak, 1.0), 0.0)
            magnitudes = np.ceil(absolute * scale[:, None, None] - 1e-9)
            ok = pair_sums(magnitudes, signs, axis=1).reshape(len(w), -1).max(axis=1) <= PAIR_LIMIT
            fits, too_wide = np.where(ok, trial, fits), np.where(ok, too_wide, trial)
        ranges[start:start + len(w)] = np.where(peak > 0, fits, REDUCED)
    return ranges


def is_depthwise(group: int, weights: np.ndarray) -> bool:
    """One input and one output channel per group: onnxruntime's depthwise kernels, which
    accumulate each product in int32 (no int16 pairs; measured, see the tests)."""
    return group > 1 and weights.shape[1] == 1 and weights.shape[0] == group


def widened_weights(model: onnx.ModelProto, skipped: set[str]) -> dict[str, list[dict]]:
    """onnxruntime ``TensorQuantOverrides`` giving each output channel of each Conv weight
    its widest safe range, as a per-channel scale with zero point 0: the full -127..127
    for depthwise convolutions, :func:`channel_ranges` for ordinary ones (one group);
    other grouped convolutions keep ``reduce_range``. Nodes in ``skipped`` stay float."""
    initializers = {init.name: init for init in model.graph.initializer}
    overrides = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name in skipped or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        weights = numpy_helper.to_array(initializers[node.input[1]])
        group = attribute(node, "group", 1)
        if is_depthwise(group, weights):
            limits = np.full(weights.shape[0], FULL)
        elif group == 1:
            limits = channel_ranges(weights)
        else:
            continue
        peaks = np.abs(weights.reshape(weights.shape[0], -1)).max(axis=1).astype(np.float64)
        scales = np.where(peaks > 0, peaks / limits, 1.0)
        overrides[node.input[1]] = [{"scale": np.float32(scale), "zero_point": np.int8(0)} |
                                    ({"axis": 0} if index == 0 else {}) for index, scale in enumerate(scales)]
    return overrides
