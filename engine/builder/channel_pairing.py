"""Reorder a float model's channels so that int8 weight pairs saturate less.

onnxruntime's x86 int8 kernels without VNNI add the products of neighbouring input
channels (2j, 2j+1) into a saturating int16, so each output channel's weight range is
capped by its worst same-sign neighbour pair (``engine.builder.weight_ranges``). Which channels
are neighbours is only an accident of the layout: the channels between a convolution
and the 1x1 convolution that reads them can be put in any order, as long as every layer
on the way is reordered the same way, and the float model computes exactly what it did.
Putting each channel that holds large weights next to one whose weights are small or of
the other sign lets nearly every output channel use the full -127..127.

A channel order is changed only where it is private to one chain: a convolution, then
channel-wise ops (activations, Pad, pooling, depthwise convolutions), then a 1x1
convolution, each tensor read by the next node alone (``Shape`` aside). Residual
streams and concatenations, whose channels several layers share, keep their order.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from engine.builder.graph import attribute, producers, readers
from engine.builder.weight_ranges import channel_ranges, is_depthwise

# Ops that act on each channel alone and read their data from input 0.
CHANNELWISE = {"Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh",
               "Pad", "MaxPool", "AveragePool"}
# Consumers that read only a tensor's shape, which a reordering leaves as it is.
SHAPE_READERS = {"Shape"}
# Entries of the pairing cost matrix computed at once (output channels x C x C).
COST_CHUNK = 1 << 24
# The most sums (output channels x C x C) a consumer's cost matrix may take, about a
# 2048 x 1024-channel layer: bigger layers keep their order and are listed as such (VGG's
# second classifier layer, a 1x1 convolution of 4096 x 4096 channels, would take 7e10).
MAX_COST_SUMS = 1 << 31


def pairing_cost(weights: np.ndarray) -> np.ndarray:
    """For 1x1 weights (O, C): the (C, C) matrix of the worst pair sum, over output
    channels, of two input channels placed side by side, in units of each output
    channel's largest weight (``engine.builder.weight_ranges.pair_sums``: same signs add,
    opposite ones take the larger). Above 1 a pair keeps its output channel from the
    full range."""
    peaks = np.abs(weights).max(axis=1, keepdims=True)
    scaled = (weights / np.where(peaks > 0, peaks, 1.0)).astype(np.float32)
    positive, negative = np.maximum(scaled, 0), np.maximum(-scaled, 0)
    channels = weights.shape[1]
    cost = np.zeros((channels, channels), np.float32)
    step = max(1, COST_CHUNK // (channels * channels))
    for start in range(0, len(scaled), step):
        for part in (positive[start:start + step], negative[start:start + step]):
            np.maximum(cost, (part[:, :, None] + part[:, None, :]).max(axis=0), out=cost)
    return cost


def pairing_order(weights: np.ndarray) -> np.ndarray:
    """An order of the input channels of 1x1 weights (O, C), C even, in which neighbours
    (2j, 2j+1) rarely hold large weights of the same sign: the channels with the largest
    weights choose first, each the free partner it costs least beside."""
    cost = pairing_cost(weights)
    np.fill_diagonal(cost, np.inf)
    peaks = np.abs(weights).max(axis=1, keepdims=True)
    largest = (np.abs(weights) / np.where(peaks > 0, peaks, 1.0)).max(axis=0)
    taken = np.zeros(weights.shape[1], bool)
    order = []
    for channel in np.argsort(-largest, kind="stable"):
        if taken[channel]:
            continue
        taken[channel] = True
        partner = int(np.argmin(np.where(taken, np.inf, cost[channel])))
        taken[partner] = True
        order += [int(channel), partner]
    return np.array(order)


def _group(node) -> int:
    return attribute(node, "group", 1)


def private_chains(model: onnx.ModelProto, skipped: set[str]) -> list[tuple]:
    """(producer, channel-wise nodes, 1x1 consumer) for every quantized 1x1 convolution
    whose input channels come from one convolution through nodes nothing else reads."""
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    producer = producers(graph)
    read_by = readers(graph)
    outputs = {o.name for o in graph.output}

    def conv_weights(node):
        """A Conv's weights, when they and its bias are initializers no other node reads."""
        params = [p for p in node.input[1:3] if p]
        if node.op_type != "Conv" or not params or any(p not in weights or len(read_by[p]) != 1 for p in params):
            return None
        return numpy_helper.to_array(weights[node.input[1]])

    chains = []
    for consumer in graph.node:
        w = conv_weights(consumer)
        if (w is None or consumer.name in skipped or _group(consumer) != 1 or w.shape[2:] != (1,) * (w.ndim - 2)
                or w.shape[1] % 2):
            continue
        between, tensor, reader = [], consumer.input[0], consumer
        while True:
            data_readers = [n for n in read_by.get(tensor, []) if n.op_type not in SHAPE_READERS]
            source = producer.get(tensor)
            if tensor in outputs or data_readers != [reader] or source is None:
                break
            source_w = conv_weights(source)
            if source.op_type in CHANNELWISE and len(source.output) == 1:
                between.append(source)
            elif source_w is not None and is_depthwise(_group(source), source_w) and len(source_w) == w.shape[1]:
                between.append(source)
            elif source_w is not None and _group(source) == 1 and len(source_w) == w.shape[1]:
                chains.append((source, between, consumer))
                break
            else:
                break
            tensor, reader = source.input[0], source
    return chains


def pair_channels(model: onnx.ModelProto, skipped: set[str]) -> list[dict]:
    """Reorder, in place, the channels of each private chain into its 1x1 consumer (see
    :func:`private_chains`) where that widens the consumer's ranges (the sum of their
    logarithms grows). Returns, per chain tried, the consumer and its median range before
    and after, or why it was not tried."""
    initializers = {init.name: init for init in model.graph.initializer}

    def read(name):
        return numpy_helper.to_array(initializers[name])

    def write(name, array):
        initializers[name].CopyFrom(numpy_helper.from_array(array, name))

    report = []
    for source, between, consumer in private_chains(model, skipped):
        w = read(consumer.input[1])
        if w.shape[0] * w.shape[1] ** 2 > MAX_COST_SUMS:
            report.append({"layer": consumer.name, "channels": int(w.shape[1]),
                           "not_tried": f"{w.shape[0]} x {w.shape[1]} channels: over {MAX_COST_SUMS:.1e} sums"})
            continue
        order = pairing_order(w.reshape(w.shape[0], w.shape[1]).astype(np.float64))
        before, after = channel_ranges(w), channel_ranges(w[:, order])
        if np.log(after).sum() <= np.log(before).sum():
            continue
        write(consumer.input[1], w[:, order])
        for node in [source, *between]:
            if node.op_type == "Conv":
                for name in node.input[1:3]:
                    write(name, read(name)[order])
        report.append({"layer": consumer.name, "channels": int(w.shape[1]),
                       "median_range": [float(np.median(before)), float(np.median(after))]})
    return report
