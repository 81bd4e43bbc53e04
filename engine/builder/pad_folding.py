"""Fold zero Pads into the convolutions that read them.

Exports of TensorFlow-style "same" padding (EfficientNet-Lite0's convolutions among them)
compute each convolution's padding at run time (Shape, Gather, Sub, Div, ..., Concat) and
apply it with a Pad node of its own. onnxruntime fuses a Pad into the next Conv only when
its amounts are constants, so every such Pad runs alone: in the fp32 model it splits the
blocked-layout convolution chain (reorders in and out of it around each Pad), and in an
int8 model it works on float data between a DequantizeLinear and a QuantizeLinear, so the
Pads and the nodes around them can take more time than the convolutions.

For a model whose input has a fixed height and width the amounts are constants. They are
computed once (one run of the model), added to each reading Conv's ``pads`` attribute, and
the Pads, with the arithmetic that computed them, are removed. A Pad is folded only when
it pads with zeros (mode "constant", value 0), only along height and width, by amounts
>= 0, and every reader is a Conv taking it as its data input with explicit padding.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.builder.graph import attribute, readers, remove_dead_nodes, session_with_outputs


def foldable_pads(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The Pad nodes whose every reader is a Conv that could take the padding over (the
    amounts themselves are checked once known)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    read_by = readers(graph)
    found = []
    for node in graph.node:
        if node.op_type != "Pad" or attribute(node, "mode", b"constant") not in (b"constant", "constant"):
            continue
        if len(node.input) > 3 and node.input[3]:
            continue  # an axes input: rare, and not needed by the exports this serves
        if len(node.input) < 2 or not node.input[1] or node.output[0] in outputs:
            continue  # opset < 11: the amounts are an attribute (not handled)
        convs = read_by.get(node.output[0], [])
        if convs and all(c.op_type == "Conv" and c.input[0] == node.output[0]
                         and attribute(c, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") for c in convs):
            found.append(node)
    return found


def pad_amounts(model: onnx.ModelProto, pads: list[onnx.NodeProto], input_name: str,
                sample: np.ndarray) -> dict[str, np.ndarray]:
    """The values of each Pad's ``pads`` and constant-value inputs: initializers as they
    are, computed ones from one run of ``model`` on ``sample``."""
    initializers = {i.name: i for i in model.graph.initializer}
    wanted = {name for pad in pads for name in pad.input[1:3] if name}
    values = {name: numpy_helper.to_array(initializers[name]) for name in wanted if name in initializers}
    computed = sorted(wanted - set(values))
    if computed:
        values.update(zip(computed, session_with_outputs(model, computed).run(computed, {input_name: sample})))
    return values


def fold_pads(model: onnx.ModelProto, input_name: str, sample: np.ndarray) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with its foldable Pads (see the module docstring) moved into the
    Convs that read them, and how many were folded (``model`` itself when none can be). ``sample`` is an input
    of the model's fixed size; the amounts must not depend on anything else."""
    if not foldable_pads(model):
        return model, 0
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    pads = foldable_pads(folded)
    values = pad_amounts(folded, pads, input_name, sample)
    data_readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        data_readers.setdefault(node.input[0] if node.input else "", []).append(node)
    count = 0
    for pad in pads:
        amounts = np.asarray(values[pad.input[1]], dtype=np.int64).ravel()
        fill = values.get(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else None
        rank = amounts.size // 2
        begins, ends = amounts[:rank], amounts[rank:]
        if (rank < 3 or (amounts < 0).any() or begins[:2].any() or ends[:2].any()
                or (fill is not None and np.any(np.asarray(fill) != 0))):
            continue
        for conv in data_readers[pad.output[0]]:
            spatial = rank - 2
            own = list(attribute(conv, "pads", [0] * (2 * spatial)))
            merged = [int(b) + own[i] for i, b in enumerate(begins[2:])] + \
                     [int(e) + own[spatial + i] for i, e in enumerate(ends[2:])]
            for old in [a for a in conv.attribute if a.name == "pads"]:
                conv.attribute.remove(old)
            conv.attribute.append(helper.make_attribute("pads", merged))
            conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        count += 1
    remove_dead_nodes(graph)
    return folded, count
