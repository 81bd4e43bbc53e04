"""Float layers inside an int8 model: keep them float when onnxruntime loads the model,
and pick which ones to put back in float (float fallback).

Quantization error is not spread evenly over a network: in EfficientNet-Lite0 with 7-bit
weights the first depthwise convolution alone, kept in float, lifted the logit SNR
against fp32 from 17.5 to 21.4 dB; in its build with adaround the ranking gave that layer
+1.2 dB and 38 of the 48 layers under +0.09 dB each (make bench, 2026-11-26). With the
wider ranges of ``engine.builder.weight_ranges`` the ranking picked large early layers whose
float cost showed: fallback of 4 ran below fp32's speed (62 against 72 img/s). The
layers are taken by gain; ``max_macs`` (``quantization.float_fallback_macs``) skips those
that would take the float layers over a share of the model's multiply-accumulates. That
share is a proxy for time that understates memory-bound layers: in EfficientNet-Lite0's
adaround build with channel pairing, fallback of 4 held 6.3% of the multiply-accumulates
and ran at 78 img/s; capped at 5% it held 4.7%, swapping an expand layer for a late
depthwise one, and ran at 74 (fp32 69, int8 without fallback 86; best of 10 alternating
rounds, batch 8, 2026-11-26). Which layers matter depends on
the model and its weights, so they are measured, not guessed: each quantized
Conv/Gemm/MatMul in turn is dequantized back to its float weights in the finished int8
model, and the model's output on calibration images is compared with fp32's (the
signal-to-noise ratio of the outputs, in dB). The layers whose return to float gains the
most are put back in float for good, in the same way, so the model that ships is the one
that was measured. Each such layer runs at float speed.

This is a different step from ``quantization.skip_layers``, which the quantizer leaves
out before calibration (by index, the seed's ``skip_conv_layers``); here the choice is
made after, from measurements of the int8 model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.builder.graph import session_with_outputs

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def dequantized_range(node: onnx.NodeProto, initializers: dict) -> tuple[float, float] | None:
    """The float range [lowest, highest] a QuantizeLinear or DequantizeLinear ``node``
    with one scale and zero point (initializers) can represent; None for a per-axis one."""
    scale = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
    has_zero = len(node.input) > 2 and node.input[2]
    zero = numpy_helper.to_array(initializers[node.input[2]]) if has_zero else np.zeros((), np.uint8)
    if scale.size != 1 or zero.size != 1:
        return None
    limits = np.iinfo(zero.dtype)
    offset, step = float(zero.reshape(())), float(scale.reshape(()))
    return (float(limits.min) - offset) * step, (float(limits.max) - offset) * step


def guard_graph(graph: onnx.GraphProto, names) -> int:
    """Put a Clip between each float layer in ``names`` and the DequantizeLinear feeding it.

    The quantizer leaves an excluded layer's weights in float but still feeds it from a
    DequantizeLinear, and the next layer's QuantizeLinear follows it. When onnxruntime
    loads such a model, its WeightBiasQuantization transformer takes any Conv/Gemm between
    a DequantizeLinear and a QuantizeLinear (Relu/Clip allowed in between) for part of the
    int8 graph and quantizes the float weights itself: 8-bit, symmetric, one scale per
    tensor. The layer meant to stay in float ran in the coarsest int8 there is: with
    EfficientNet-Lite0's first depthwise conv kept in float, logit SNR against fp32 was
    10.4 dB with graph optimizations on and 21.3 dB with them off. The transformer only
    matches a layer whose input comes straight from a DequantizeLinear; the Clip's bounds
    are the dequantized range, so it changes no value. (Reading the float tensor in front
    of the QuantizeLinear instead would be wrong: the quantizer drops a Relu or Clip whose
    work the QuantizeLinear's range does.) Returns the number of layers guarded.
    """
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {init.name: init for init in graph.initializer}
    wanted = set(names)
    guarded = 0
    for node in list(graph.node):
        dq = producers.get(node.input[0]) if node.op_type in WEIGHTED_OPS and node.name in wanted else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        bounds = dequantized_range(dq, initializers)
        if bounds is None:
            continue  # a per-axis activation scale: not a pattern the transformer matches
        guarded_input = f"{node.name}_float_input"
        bound_names = [f"{guarded_input}_{side}" for side in ("min", "max")]
        for name, bound in zip(bound_names, bounds):
            graph.initializer.append(numpy_helper.from_array(np.asarray(bound, np.float32), name))
        clip = helper.make_node("Clip", [node.input[0], *bound_names], [guarded_input], name=guarded_input)
        graph.node.insert(list(graph.node).index(node), clip)
        node.input[0] = guarded_input
        guarded += 1
    return guarded


def guard_float_layers(path: Path, names: list[str]) -> int:
    """:func:`guard_graph` on the model at ``path``, rewritten in place."""
    model = onnx.load(str(path))
    guarded = guard_graph(model.graph, names)
    onnx.save(model, str(path))
    return guarded


def output_snr_db(reference: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """10 log10(|reference|^2 / |reference - outputs|^2) over all batches."""
    signal = sum(float(np.square(r, dtype=np.float64).sum()) for r in reference)
    noise = sum(float(np.square(r.astype(np.float64) - o).sum()) for r, o in zip(reference, outputs))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


def quantized_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the weighted layers whose weights come from a DequantizeLinear, in graph order."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names = []
    for node in model.graph.node:
        weight = producers.get(node.input[1]) if node.op_type in WEIGHTED_OPS and len(node.input) > 1 else None
        if weight is not None and weight.op_type == "DequantizeLinear":
            names.append(node.name)
    return names


# How far, in int8 steps, a layer's float weights may lie from its int8 ones: one step
# for rounding either way (AdaRound), and a little for float error.
MATCHING_STEPS = 1.01


def dequantized_weights(dq: onnx.NodeProto, initializers: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """The float values a DequantizeLinear of initializers gives (per tensor or per axis)
    and its scale, shaped to broadcast against them; None when its inputs are not all
    initializers."""
    if any(name and name not in initializers for name in dq.input):
        return None
    values = numpy_helper.to_array(initializers[dq.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(initializers[dq.input[1]]).astype(np.float64)
    zero = (numpy_helper.to_array(initializers[dq.input[2]]).astype(np.float64)
            if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale))
    if scale.size > 1:
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % values.ndim
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values - zero) * scale, scale


def check_same_weights(node: onnx.NodeProto, float_weights: np.ndarray, producers: dict, initializers: dict) -> None:
    """Refuse float weights that are not the ones ``node``'s int8 weights were quantized
    from (another model, or the same one with its channels in another order), naming the
    layer; with them the "float" layer would compute something else."""
    dq = producers.get(node.input[1])
    found = None if dq is None or dq.op_type != "DequantizeLinear" else dequantized_weights(dq, initializers)
    if found is None:
        return
    int8_weights, scale = found
    if int8_weights.shape != float_weights.shape:
        raise ValueError(f"float fallback: layer {node.name}'s float weights have shape {list(float_weights.shape)}, "
                         f"its int8 weights {list(int8_weights.shape)}")
    steps = np.abs(float_weights - int8_weights) / np.where(scale > 0, scale, np.inf)
    if steps.max() > MATCHING_STEPS:
        raise ValueError(f"float fallback: layer {node.name}'s float weights lie up to {steps.max():.1f} int8 steps "
                         f"from its int8 weights: the float model is not the one this int8 model was quantized "
                         f"from, in the same channel order (engine.build keeps that one as prepared.onnx "
                         f"with --work-dir)")


def with_float_layers(model: onnx.ModelProto, float_model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of the int8 ``model`` in which the layers ``names`` use ``float_model``'s
    weights and bias again (the layers are matched by node name, which the quantizer
    keeps, and their float weights must be the ones the int8 weights were quantized
    from). Their input stays the dequantized activation, behind a Clip over its range
    so onnxruntime does not quantize the weights again at load (see
    :func:`guard_graph`)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    float_nodes = {node.name: node for node in float_model.graph.node}
    float_initializers = {init.name: init for init in float_model.graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {init.name: init for init in graph.initializer}
    present = set(initializers)
    wanted = set(names)
    for node in graph.node:
        if node.name not in wanted:
            continue
        original = float_nodes.get(node.name)
        if original is None:
            raise ValueError(f"float fallback: layer {node.name} is not in the float model")
        if len(original.input) > 1 and original.input[1] in float_initializers:
            check_same_weights(node, numpy_helper.to_array(float_initializers[original.input[1]]).astype(np.float64),
                               producers, initializers)
        for slot in range(1, min(len(node.input), len(original.input))):
            source = original.input[slot]
            if source not in float_initializers:
                raise ValueError(f"float fallback: layer {node.name}'s input {source} is not a float initializer")
            name = f"{source}_float"
            if name not in present:
                copy = onnx.TensorProto()
                copy.CopyFrom(float_initializers[source])
                copy.name = name
                graph.initializer.append(copy)
                present.add(name)
            node.input[slot] = name
    guard_graph(graph, names)
    drop_unused(graph)
    return result


def drop_unused(graph: onnx.GraphProto) -> None:
    """Remove DequantizeLinear nodes and initializers nothing reads any more."""
    while True:
        used = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
        dead = [node for node in graph.node if node.op_type == "DequantizeLinear"
                and not any(out in used for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)


def _outputs(model: onnx.ModelProto, batches: list[np.ndarray], threads: int) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: batch})[0] for batch in batches]


def rank_layers(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, batches: list[np.ndarray],
                reference: list[np.ndarray], *, threads: int = 1,
                progress: bool = False) -> tuple[float, list[tuple[str, float]]]:
    """The int8 model's output SNR against ``reference`` (the float model's outputs on
    ``batches``), and for each quantized layer the SNR gained when it alone runs in
    float, largest gain first."""
    from tqdm import tqdm

    base = output_snr_db(reference, _outputs(int8_model, batches, threads))
    gains = []
    for name in tqdm(quantized_layers(int8_model), desc="ranking layers", unit="layer", disable=not progress):
        trial = with_float_layers(int8_model, float_model, [name])
        gains.append((name, output_snr_db(reference, _outputs(trial, batches, threads)) - base))
    gains.sort(key=lambda pair: pair[1], reverse=True)
    return base, gains


def layer_macs(model: onnx.ModelProto, sample: np.ndarray) -> dict[str, int]:
    """Multiply-accumulates per image of each Conv/Gemm/MatMul with initializer weights,
    from the output shapes of a run on ``sample`` (shape inference cannot follow the
    computed padding of models like EfficientNet-Lite0)."""
    initializers = {init.name: init for init in model.graph.initializer}
    layers = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1
              and n.input[1] in initializers]
    names = [n.output[0] for n in layers]
    session = session_with_outputs(model, names)
    shapes = dict(zip(names, (o.shape for o in session.run(names, {session.get_inputs()[0].name: sample[:1]}))))
    macs = {}
    for node in layers:
        weights = tuple(initializers[node.input[1]].dims)
        if node.op_type == "Conv":
            per_output = int(np.prod(weights[1:]))  # input channels per group x kernel taps
        elif node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
            per_output = weights[1]
        else:
            per_output = weights[0]
        macs[node.name] = int(np.prod(shapes[node.output[0]])) * per_output
    return macs


def apply_float_fallback(float_path: Path, int8_path: Path, batches: list[np.ndarray], count: int, *,
                         max_macs: float = 1.0, threads: int = 1, progress: bool = False) -> dict:
    """Put the ``count`` layers with the largest gain (none that gains nothing) back in
    float in ``int8_path``, rewritten in place, skipping any that would take the float
    layers over ``max_macs`` of the model's multiply-accumulates (float layers run at
    float speed, and gains and costs differ by orders of magnitude between layers);
    returns what was measured and done."""
    float_model = onnx.load(str(float_path))
    int8_model = onnx.load(str(int8_path))
    reference = _outputs(float_model, batches, threads)
    base, gains = rank_layers(float_model, int8_model, batches, reference, threads=threads, progress=progress)
    macs = layer_macs(float_model, batches[0])
    total, used, chosen = sum(macs.values()), 0, []
    for name, gain in gains:
        if len(chosen) == count or gain <= 0:
            break
        if used + macs[name] <= max_macs * total:
            chosen.append(name)
            used += macs[name]
    model = with_float_layers(int8_model, float_model, chosen)
    after = output_snr_db(reference, _outputs(model, batches, threads))
    onnx.save(model, str(int8_path))
    return {
        "layers": chosen,
        "images": int(sum(len(b) for b in batches)),
        "output_snr_db": {"int8": round(base, 2), "with_fallback": round(after, 2)},
        "macs_share": {"float_layers": round(used / total, 4), "limit": max_macs},
        "gain_db_alone": {name: round(gain, 3) for name, gain in gains[:max(count, 10)]},
        "layer_macs_share": {name: round(macs[name] / total, 4) for name, _ in gains[:max(count, 10)]},
    }
