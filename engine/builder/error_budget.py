"""Where an int8 model's error comes from: its weights or its activations.

An int8 build's output differs from fp32's for two reasons: weights rounded to the int8
grid, and activations rounded (and clipped) to it at every QuantizeLinear. Which one
dominates decides what can help: learned rounding (``quantization.adaround``) and the
float fallback act on weights, a different calibration method on activations. This
module rebuilds the finished QDQ model twice, each time with one source of error left
out, and runs the three models as float arithmetic (graph optimizations off, so no int8
kernels): the model's own output SNR against fp32 next to these tells how much of the
error each source makes, and how much the int8 kernels add on top (saturation, see
``engine.builder.cpu_target.int8_types``).

- weights alone: every activation QuantizeLinear/DequantizeLinear pair becomes a Clip
  over the range it could represent, so values are still clipped where the quantizer
  relied on the range (it drops a Relu or Clip whose work the QuantizeLinear does) but
  no longer rounded.
- activations alone: every quantized layer gets its float weights and bias back
  (``engine.builder.graph.with_float_layers``).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.builder.graph import (
    dequantized_range,
    first_outputs,
    output_snr_db,
    quantized_layers,
    readers,
    remove_dead_nodes,
    with_float_layers,
)


def weights_alone(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the QDQ ``model`` whose activations are clipped to their int8 range
    but not rounded: each activation QuantizeLinear becomes a Clip and each
    DequantizeLinear reading it an Identity (tensor names kept)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    initializers = {init.name: init for init in graph.initializer}
    read_by = readers(graph)
    clipped = set()
    for index, node in enumerate(graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] in initializers:
            continue
        bounds = dequantized_range(node, initializers)
        if bounds is None:
            raise ValueError(f"error budget: activation QuantizeLinear {node.name} has a per-axis scale")
        others = [r.name for r in read_by.get(node.output[0], []) if r.op_type != "DequantizeLinear"]
        if others:
            raise ValueError(f"error budget: activation QuantizeLinear {node.name} is read by "
                             f"{', '.join(others)}, not only by DequantizeLinear nodes")
        bound_names = [f"{node.output[0]}_clip_{side}" for side in ("min", "max")]
        for name, bound in zip(bound_names, bounds):
            graph.initializer.append(numpy_helper.from_array(np.asarray(bound, np.float32), name))
        graph.node[index].CopyFrom(helper.make_node("Clip", [node.input[0], *bound_names], [node.output[0]],
                                                    name=f"{node.name}_clip"))
        clipped.add(node.output[0])
    for index, node in enumerate(graph.node):
        if node.op_type == "DequantizeLinear" and node.input[0] in clipped:
            graph.node[index].CopyFrom(helper.make_node("Identity", [node.input[0]], list(node.output),
                                                        name=f"{node.name}_identity"))
    del graph.value_info[:]  # shape inference recorded the int8 types of the tensors made float here
    remove_dead_nodes(graph, ("DequantizeLinear",))
    return result


def activations_alone(model: onnx.ModelProto, float_model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the QDQ ``model`` with every quantized layer's float weights and bias back."""
    return with_float_layers(model, float_model, quantized_layers(model))


def simulated_outputs(model: onnx.ModelProto, batches: list[np.ndarray], threads: int) -> list[np.ndarray]:
    """The first output of ``model`` on each batch, computed with graph optimizations off:
    a QDQ model then runs as float arithmetic with explicit rounding, not int8 kernels."""
    return first_outputs(model, batches, threads, optimized=False)


def error_budget(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, batches: list[np.ndarray],
                 reference: list[np.ndarray], threads: int) -> dict:
    """Output SNR (dB) and top-1 agreement against ``reference`` (fp32's outputs on
    ``batches``) of the whole int8 model and of each source of error alone, all run as
    float arithmetic."""
    variants = {"weights_alone": weights_alone(int8_model),
                "activations_alone": activations_alone(int8_model, float_model),
                "both": int8_model}
    expected = np.concatenate([r.argmax(axis=1) for r in reference])
    result = {"images": int(sum(len(b) for b in batches)), "simulated": True}
    for tag, variant in variants.items():
        outputs = simulated_outputs(variant, batches, threads)
        agreement = float(np.mean(np.concatenate([o.argmax(axis=1) for o in outputs]) == expected))
        result[tag] = {"output_snr_db": round(output_snr_db(reference, outputs), 2), "top1_agreement": agreement}
    result["limited_by"] = limited_by(result["weights_alone"]["output_snr_db"],
                                      result["activations_alone"]["output_snr_db"])
    return result


# Noise powers add: 3 dB apart, the noisier source makes two thirds of the total.
DOMINANT_DB = 3.0


def limited_by(weights_snr_db: float, activations_snr_db: float) -> str:
    """``"weights"`` or ``"activations"`` when that source alone has an SNR at least
    ``DOMINANT_DB`` below the other's (it makes at least twice the other's noise), else ``"both"``."""
    if weights_snr_db <= activations_snr_db - DOMINANT_DB:
        return "weights"
    if activations_snr_db <= weights_snr_db - DOMINANT_DB:
        return "activations"
    return "both"
