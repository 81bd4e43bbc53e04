"""Per-channel int8 weight ranges that cannot saturate x86's VPMADDUBSW.

On x86 without VNNI, onnxruntime's int8 convolutions multiply uint8 activations by int8
weights with VPMADDUBSW, which adds the two products of each pair of neighbouring input
channels (2j, 2j+1) into a saturating int16 (see ``engine.build.int8_types``). With
activations up to 255 a pair overflows when the magnitudes of its two weights, if they
have the same sign, add up to more than 128 (255 * 129 > 32767); with opposite signs it
cannot. ``reduce_range`` avoids that by giving every weight 7 bits (-64..64), whatever
its neighbour. Most channels do not need it: their largest weight sits next to a small
one. Here each output channel of an ordinary convolution gets the widest range, up to
-127..127, in which no pair can overflow for any input, checked on the rounded-up
magnitudes so that any rounding (nearest, or AdaRound's up or down) stays safe; and
depthwise convolutions, whose kernels accumulate in int32, get the full range.

The pairing is the kernels' and was measured on this machine, not assumed
(tests/test_weight_ranges.py): inputs of 255 through weights built to overflow one
pairing and not the others saturate onnxruntime's 1x1 and 3x3 convolutions and MatMul
exactly for neighbouring input channels at the same kernel tap, at a pair sum of 129 and
not 128, and never its depthwise convolutions.

On EfficientNet-Lite0 (first and last layers float, bias correction, 2026-11-26) the
median 1x1-convolution channel gets -101..101 to -120..120 instead of -64..64, and the
logit SNR against fp32 on 182 held-out photos went from 17.5 to 22.9 dB (18.1 with only
the 1x1 layers widened, 20.9 with only the depthwise ones; top-1 agreement on all of
them 85.7% -> 92.9%), at the same speed (86.9 against 82.8 img/s, best of 10 alternating
rounds, batch 8): the int8 kernels matched their float simulation to 0.05 dB, so
nothing saturated.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

PAIR_LIMIT = 128  # 255 * 128 = 32640 fits an int16 (32767); 255 * 129 does not
REDUCED = 64      # reduce_range's symmetric int8 range: every pair fits
FULL = 127


def pair_sums(magnitudes: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Worst |a0 * w0 + a1 * w1| / 255 over activations in 0..255 for each pair of input
    channels (2j, 2j+1) of one output channel's weights (C, ...): the sum of the two
    magnitudes where the signs agree, the larger one where they differ. An odd last
    channel pairs with zero, as in the kernels' zero-padded packing."""
    if magnitudes.shape[0] % 2:
        pad = [(0, 1)] + [(0, 0)] * (magnitudes.ndim - 1)
        magnitudes, signs = np.pad(magnitudes, pad), np.pad(signs, pad)
    a, b = magnitudes[0::2], magnitudes[1::2]
    same = signs[0::2] * signs[1::2] > 0
    return np.where(same, a + b, np.maximum(a, b))


def channel_range(weights: np.ndarray) -> int:
    """The widest symmetric integer range R (REDUCED..FULL) for one output channel's float
    weights (C, ...) in which every pair stays within PAIR_LIMIT when each weight is
    rounded either way: the scale is then max|w| / R."""
    peak = float(np.abs(weights).max())
    if peak == 0 or weights.shape[0] % 2:
        return REDUCED  # odd channel counts pair a channel with the next tap's: not checked
    signs = np.sign(weights)
    for limit in range(FULL, REDUCED, -1):
        magnitudes = np.ceil(np.abs(weights) * (limit / peak) - 1e-9)
        if pair_sums(magnitudes, signs).max() <= PAIR_LIMIT:
            return limit
    return REDUCED


def is_depthwise(node: onnx.NodeProto, weights: np.ndarray) -> bool:
    """One input and one output channel per group: onnxruntime's depthwise kernels, which
    accumulate each product in int32 (no int16 pairs; measured, see the tests)."""
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return group > 1 and weights.shape[1] == 1 and weights.shape[0] == group


def widened_weights(model: onnx.ModelProto, skipped: set[str]) -> dict[str, list[dict]]:
    """onnxruntime ``TensorQuantOverrides`` giving each output channel of each Conv weight
    its widest safe range, as a per-channel scale with zero point 0: the full -127..127
    for depthwise convolutions, :func:`channel_range` for ordinary ones (one group);
    other grouped convolutions keep ``reduce_range``. Nodes in ``skipped`` stay float."""
    initializers = {init.name: init for init in model.graph.initializer}
    overrides = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name in skipped or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        weights = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
        depthwise = is_depthwise(node, weights)
        if not depthwise and next((a.i for a in node.attribute if a.name == "group"), 1) != 1:
            continue
        channels = []
        for index, channel in enumerate(weights):
            peak = float(np.abs(channel).max())
            limit = FULL if depthwise else channel_range(channel)
            scale = peak / limit if peak > 0 else 1.0
            channels.append({"scale": np.float32(scale), "zero_point": np.int8(0)} | ({"axis": 0} if index == 0 else {}))
        overrides[node.input[1]] = channels
    return overrides
