"""Adaptive rounding of int8 weights: round each weight up or down so that the layer's
output, not the weight itself, stays closest to float.

Rounding every weight to its nearest step is best for the weights one by one, not for
what the layer computes from them: errors that cancel in a weight's own measure can add
up across an output's inputs. Following Nagel et al., "Up or Down? Adaptive Rounding for
Post-Training Quantization" (ICML 2020), each quantized convolution's rounding direction
is a soft variable in [0, 1], trained with Adam to reproduce the float layer's output on
calibration activations (from the float model), with a regulariser that pushes every
variable to 0 or 1 by the end; the result is then hardened. The scales onnxruntime chose
stay as they are. A layer keeps nearest rounding when the learned one does not
reconstruct its output better, so no layer gets worse on the images it was fitted to.

On x86 without VNNI each channel's weights have 7 to 8 bits (``engine.builder.weight_ranges``),
and a layer may only use the integer range the quantizer gave it; the ranges there are
checked for either rounding direction, so the learned roundings cannot saturate. Bias
correction (``engine.builder.bias_correction``) should run after, on the weights as rounded here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from engine.builder.bias_correction import QuantizedConv, quantized_convs
from engine.builder.graph import session_with_outputs

# The rectified sigmoid of the paper: h(V) = clip(sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0, 1).
ZETA, GAMMA = 1.1, -0.1
# Activation elements one layer is fitted on at most (images are dropped beyond that):
# bounds the time of the big, early layers of VGG-like models.
MAX_ELEMENTS = 2_000_000


def _conv_settings(conv: QuantizedConv) -> dict | None:
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in conv.node.attribute}
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) != "NOTSET":
        return None  # padding the graph leaves implicit: not reproduced here
    if len(attributes.get("kernel_shape", [1, 1])) != 2:
        return None  # 2-D convolutions only
    top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
    return {"pads": (left, right, top, bottom), "stride": attributes.get("strides", [1, 1]),
            "dilation": attributes.get("dilations", [1, 1]), "groups": conv.group}


def _round_layer(x: np.ndarray, w: np.ndarray, scale: np.ndarray, low: int, high: int, settings: dict,
                 iterations: int, seed: int) -> tuple[np.ndarray, float, float]:
    """Integer weights for one layer, and the output MSE of nearest and of the result."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    x_t = F.pad(torch.from_numpy(x), settings["pads"])
    w_t = torch.from_numpy(w.astype(np.float32))
    s_t = torch.from_numpy(scale.astype(np.float32)).reshape(-1, *([1] * (w.ndim - 1)))

    def output(weights):
        return F.conv2d(x_t, weights, None, settings["stride"], 0, settings["dilation"], settings["groups"])

    with torch.no_grad():
        target = output(w_t)
    floor = torch.floor(w_t / s_t)
    rest = (w_t / s_t - floor).clamp(1e-4, 1 - 1e-4)

    def error(up):
        return float(((output(torch.clamp(floor + up, low, high) * s_t) - target) ** 2).mean())

    with torch.no_grad():
        nearest_up = (rest >= 0.5).float()
        nearest = error(nearest_up)
    ratio = (rest - GAMMA) / (ZETA - GAMMA)
    v = torch.log(ratio / (1 - ratio)).requires_grad_(True)
    optimizer = torch.optim.Adam([v], lr=1e-2)
    # The regulariser's weight: 1% of the nearest rounding's output error per weight.
    weight = 0.01 * nearest / w.size if nearest > 0 else 1e-12
    warmup = iterations // 5
    for step in range(iterations):
        soft = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
        loss = ((output(torch.clamp(floor + soft, low, high) * s_t) - target) ** 2).mean()
        if step >= warmup:
            beta = 20 - 18 * (step - warmup) / max(1, iterations - warmup)
            loss = loss + weight * (1 - (2 * soft - 1).abs() ** beta).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        learned_up = (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA >= 0.5).float()
        learned = error(learned_up)
        best = learned_up if learned < nearest else nearest_up
        integers = torch.clamp(floor + best, low, high).numpy()
    return integers, nearest, min(learned, nearest)


def adaround(float_model: Path, int8_model: Path, batch: np.ndarray, weight_range: tuple[int, int], *,
             wider: dict[str, tuple[int, int]] | None = None, iterations: int = 300,
             progress: bool = False) -> dict:
    """Re-round the quantized convolutions' weights of ``int8_model`` (in place), fitted on
    the float model's activations for ``batch``; returns each layer's output MSE before
    and after. ``weight_range`` is the integer range the quantizer used, ``wider`` the
    range of the weights (by float name) it gave another (engine.builder.weight_ranges)."""
    from tqdm import tqdm

    model = onnx.load(str(int8_model))
    float_proto = onnx.load(str(float_model))
    float_initializers = {init.name: init for init in float_proto.graph.initializer}
    initializers = {init.name: init for init in model.graph.initializer}
    convs = [(c, settings) for c in quantized_convs(model)
             if c.weight in float_initializers and (settings := _conv_settings(c))]
    tensors = sorted({c.activation for c, _ in convs})
    session = session_with_outputs(float_proto, tensors)
    activations = dict(zip(tensors, session.run(tensors, {session.get_inputs()[0].name: batch})))
    wider = wider or {}
    layers = {}
    for index, (conv, settings) in enumerate(tqdm(convs, desc="adaround", unit="layer", disable=not progress)):
        x = activations[conv.activation]
        x = x[: max(1, MAX_ELEMENTS // max(1, x[0].size))]
        w = numpy_helper.to_array(float_initializers[conv.weight])
        scale_name, zero_name = conv.weight_dq.input[1], conv.weight_dq.input[2]
        scale = numpy_helper.to_array(initializers[scale_name]).astype(np.float64)
        zero = numpy_helper.to_array(initializers[zero_name])
        if np.any(zero != 0) or scale.size not in (1, w.shape[0]):
            continue  # asymmetric or blocked weights: not the scheme the build uses
        scale = np.broadcast_to(scale.reshape(-1), (w.shape[0],))
        low, high = wider.get(conv.weight, weight_range)
        integers, before, after = _round_layer(x, w, scale, low, high, settings, iterations, index)
        quantized = initializers[conv.weight_dq.input[0]]
        dtype = numpy_helper.to_array(quantized).dtype
        quantized.CopyFrom(numpy_helper.from_array(integers.astype(dtype), quantized.name))
        layers[conv.node.name] = {"mse_nearest": before, "mse_adaround": after}
    onnx.save(model, str(int8_model))
    return {"layers": layers, "images": int(batch.shape[0]), "iterations": iterations}
