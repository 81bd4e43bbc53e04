"""Bias correction of an int8 QDQ model: undo the mean shift its weight rounding causes.

Rounding a convolution's weights to int8 (7 bits on CPUs without VNNI) changes each
output channel's mean by ``sum((W_q - W) * E[x])``: the rounding errors do not average out
when the layer's inputs have a non-zero mean (after ReLU6 they are all >= 0), and the
shift compounds through the network. Following Nagel et al., "Data-Free Quantization
Through Weight Equalization and Bias Correction" (ICCV 2019), with ``E[x]`` measured on
the calibration images instead of derived from batch-norm statistics, each quantized
convolution's bias is moved by the negative of that shift. The quantized weights are
read back from the int8 model, so the correction matches exactly what onnxruntime chose.

Convolutions only (the layers whose inputs' means are per channel); Gemm/MatMul layers
and convolutions without a quantized bias are left as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from engine.builder.calibration import iter_batches
from engine.builder.graph import attribute, dequantized_weights, producers, session_with_outputs
from engine.data.dataconfig import DataConfig


@dataclass
class QuantizedConv:
    """A convolution of an int8 QDQ model whose input, weights and bias are all quantized."""
    node: onnx.NodeProto
    weight: str          # float initializer name in the float model
    weight_dq: onnx.NodeProto
    bias_dq: onnx.NodeProto
    activation: str      # the float tensor the convolution's quantized input comes from
    group: int


def quantized_convs(model: onnx.ModelProto) -> list[QuantizedConv]:
    """The model's :class:`QuantizedConv` layers, in graph order."""
    made_by = producers(model.graph)
    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        x_dq, w_dq, b_dq = (made_by.get(name) for name in node.input[:3])
        if not all(p is not None and p.op_type == "DequantizeLinear" for p in (x_dq, w_dq, b_dq)):
            continue
        x_q = made_by.get(x_dq.input[0])
        if x_q is None or x_q.op_type != "QuantizeLinear" or not w_dq.input[0].endswith("_quantized"):
            continue
        group = attribute(node, "group", 1)
        convs.append(QuantizedConv(node, w_dq.input[0][: -len("_quantized")], w_dq, b_dq, x_q.input[0], group))
    return convs


def input_channel_means(float_model: onnx.ModelProto, tensors: list[str], items: list[str], config: DataConfig,
                        batch_size: int = 8) -> dict[str, np.ndarray]:
    """Per-channel means of ``tensors`` (N, C, ...) of the float model over ``items``."""
    session = session_with_outputs(float_model, tensors)
    input_name = session.get_inputs()[0].name
    sums = dict.fromkeys(tensors, 0.0)
    count = 0
    for _, batch in iter_batches(items, config, batch_size):
        outputs = session.run(tensors, {input_name: batch})
        for name, value in zip(tensors, outputs):
            sums[name] = sums[name] + value.reshape(value.shape[0], value.shape[1], -1).mean(axis=2).sum(axis=0)
        count += batch.shape[0]
    if count == 0:
        raise ValueError("bias correction: no calibration image could be read")
    return {name: np.asarray(total, np.float64) / count for name, total in sums.items()}


def correct_biases(float_model: Path, int8_model: Path, items: list[str], config: DataConfig,
                   batch_size: int = 8) -> dict:
    """Rewrite ``int8_model``'s quantized conv biases in place; returns what was done."""
    quantized = onnx.load(str(int8_model))
    convs = quantized_convs(quantized)
    if not convs:
        return {"layers": 0, "mean_abs_shift": 0.0}
    float_proto = onnx.load(str(float_model))
    float_weights = {init.name: init for init in float_proto.graph.initializer}
    initializers = {init.name: init for init in quantized.graph.initializer}
    means = input_channel_means(float_proto, sorted({c.activation for c in convs}), items, config, batch_size)

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(initializers[name]).astype(np.float64)

    shifts = []
    for conv in convs:
        if conv.weight not in float_weights or initializers[conv.bias_dq.input[0]].data_type != onnx.TensorProto.INT32:
            continue
        w = numpy_helper.to_array(float_weights[conv.weight]).astype(np.float64)
        error = dequantized_weights(conv.weight_dq, initializers)[0] - w
        out_channels, in_per_group = w.shape[:2]
        error_per_input = error.reshape(out_channels, in_per_group, -1).sum(axis=2)
        groups_mean = means[conv.activation].reshape(conv.group, in_per_group)
        group_of_output = np.arange(out_channels) // (out_channels // conv.group)
        shift = (error_per_input * groups_mean[group_of_output]).sum(axis=1)
        bias_init = initializers[conv.bias_dq.input[0]]
        bias_q, bias_scale = array(conv.bias_dq.input[0]), array(conv.bias_dq.input[1])
        corrected = np.round(bias_q - shift / bias_scale)
        info = np.iinfo(np.int32)
        bias_init.CopyFrom(numpy_helper.from_array(np.clip(corrected, info.min, info.max).astype(np.int32),
                                                   bias_init.name))
        shifts.append(np.abs(shift).mean())
    onnx.save(quantized, str(int8_model))
    return {"layers": len(shifts), "mean_abs_shift": float(np.mean(shifts)) if shifts else 0.0}
