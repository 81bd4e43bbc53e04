"""ONNX helpers the build's steps share: sessions that expose intermediate tensors, maps of
who produces and reads each tensor, pruning, the float values behind QDQ nodes, and the
float layers of an int8 model.

Several steps read the same things from a graph (bias correction, AdaRound, the error
budget, channel pairing, pad folding, the float fallback); one definition of each keeps
them agreeing on what, say, a quantized layer is.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
# How far, in int8 steps, a layer's float weights may lie from its int8 ones: one step
# for rounding either way (AdaRound), and a little for float error.
MATCHING_STEPS = 1.01


def session_with_outputs(model: onnx.ModelProto, tensors: list[str]):
    """A CPU session of a copy of ``model`` whose outputs also include ``tensors``."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors if t not in present)
    return ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])


def first_outputs(model: onnx.ModelProto, batches: list[np.ndarray], threads: int, *,
                  optimized: bool = True) -> list[np.ndarray]:
    """The first output of ``model`` on each batch. With ``optimized`` off (no graph
    optimizations) a QDQ model runs as float arithmetic with explicit rounding, not
    through onnxruntime's int8 kernels."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: batch})[0] for batch in batches]


def output_snr_db(reference: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """10 log10(|reference|^2 / |reference - outputs|^2) over all batches."""
    signal = sum(float(np.square(r, dtype=np.float64).sum()) for r in reference)
    noise = sum(float(np.square(r.astype(np.float64) - o).sum()) for r, o in zip(reference, outputs))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Each tensor's producing node, by tensor name."""
    return {out: node for node in graph.node for out in node.output}


def readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes that read each tensor (once per input slot), by tensor name."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def attribute(node: onnx.NodeProto, name: str, default):
    """The value of ``node``'s attribute ``name``, or ``default`` when it has none."""
    for found in node.attribute:
        if found.name == name:
            return helper.get_attribute_value(found)
    return default


def remove_dead_nodes(graph: onnx.GraphProto, op_types: tuple[str, ...] | None = None) -> None:
    """Drop nodes none of whose outputs anything reads (only those of ``op_types`` when
    given), then unread initializers and the shapes of tensors no longer produced."""
    outputs = {o.name for o in graph.output}
    while True:
        read = outputs | {name for node in graph.node for name in node.input}
        dead = [node for node in graph.node if (op_types is None or node.op_type in op_types)
                and not any(o in read for o in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = outputs | {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)
    produced = {o for node in graph.node for o in node.output}
    for info in [v for v in graph.value_info if v.name not in produced]:
        graph.value_info.remove(info)


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
        axis = attribute(dq, "axis", 1) % values.ndim
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values - zero) * scale, scale


def quantized_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the weighted layers whose weights come from a DequantizeLinear, in graph order."""
    made_by = producers(model.graph)
    names = []
    for node in model.graph.node:
        weight = made_by.get(node.input[1]) if node.op_type in WEIGHTED_OPS and len(node.input) > 1 else None
        if weight is not None and weight.op_type == "DequantizeLinear":
            names.append(node.name)
    return names


def guard_graph(graph: onnx.GraphProto, names) -> int:
    """Put a Clip between each float layer in ``names`` and the DequantizeLinear feeding it.

    The quantizer leaves an excluded layer's weights in float but still feeds it from a
    DequantizeLinear, and the next layer's QuantizeLinear follows it. When onnxruntime
    loads such a model, its WeightBiasQuantization transformer takes any Conv/Gemm between
    a DequantizeLinear and a QuantizeLinear (Relu/Clip allowed in between) for part of the
    int8 graph and quantizes the float weights itself: 8-bit, symmetric, one scale per
    tensor, so the layer meant to stay in float ran in the coarsest int8 there is. The
    transformer only matches a layer whose input comes straight from a DequantizeLinear;
    the Clip's bounds are the dequantized range, so it changes no value. (Reading the
    float tensor in front of the QuantizeLinear instead would be wrong: the quantizer
    drops a Relu or Clip whose work the QuantizeLinear's range does.) Returns the number
    of layers guarded.
    """
    made_by = producers(graph)
    initializers = {init.name: init for init in graph.initializer}
    wanted = set(names)
    guarded = 0
    for node in list(graph.node):
        dq = made_by.get(node.input[0]) if node.op_type in WEIGHTED_OPS and node.name in wanted else None
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


def check_same_weights(node: onnx.NodeProto, float_weights: np.ndarray, made_by: dict, initializers: dict) -> None:
    """Refuse float weights that are not the ones ``node``'s int8 weights were quantized
    from (another model, or the same one with its channels in another order), naming the
    layer; with them the "float" layer would compute something else."""
    dq = made_by.get(node.input[1])
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
    made_by = producers(graph)
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
                               made_by, initializers)
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
    remove_dead_nodes(graph, ("DequantizeLinear",))
    return result
