"""The int8 build: onnxruntime's static quantization in QDQ format, then the steps that
make its result more accurate (learned rounding, bias correction, float outputs, float
fallback).

The float model the quantizer reads is kept as ``prepared.onnx`` in the work folder:
shape-inferred, every node named, and, on CPUs whose int8 kernels add weight pairs in
int16, its channels reordered for wider weight ranges (``engine.builder.channel_pairing``).
The int8 model's layers match it by name and channel order, which is what the float
fallback and the error budget need.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from engine.builder.adaround import adaround
from engine.builder.bias_correction import correct_biases
from engine.builder.calibration import ImageCalibrationReader, iter_batches
from engine.builder.config import BuildConfig, ConfigError
from engine.builder.cpu_target import Int8Types, int8_types, target_flags
from engine.builder.float_fallback import apply_float_fallback, guard_float_layers
from engine.builder.graph import WEIGHTED_OPS, producers, readers
from engine.builder.verified_rewrites import pair_prepared_channels
from engine.builder.weight_ranges import FULL as FULL_RANGE
from engine.builder.weight_ranges import widened_weights
from engine.data.dataconfig import ModelInfo

# The float model the quantizer reads (shape-inferred, every node named), in the build's work folder.
PREPARED_MODEL = "prepared.onnx"
# Calibration images AdaRound fits each layer's rounding on (fewer still for big layers,
# see engine.builder.adaround.MAX_ELEMENTS).
ADAROUND_IMAGES = 8
# Calibration images the float fallback ranks layers on (the first ones: the calibration
# list is spread over the classes in order). Each layer costs a pass over them.
FALLBACK_IMAGES = 64
# Ops in front of a float layer that stay in float with it: a quantized Pad between the
# network input and a float first layer would cost that layer its 8-bit input rounding
# (zero Pads are folded into their convolutions before this, engine.builder.pad_folding;
# the rule is for the Pads that cannot be).
FLOAT_WITH_LAYER = ("Pad",)


def name_unnamed_nodes(model_path: Path) -> None:
    """Give every unnamed node a name: the quantizer excludes nodes by name, and the
    float fallback finds a layer's float weights by it."""
    model = onnx.load(str(model_path))
    unnamed = [n for n in model.graph.node if not n.name]
    for i, node in enumerate(unnamed):
        node.name = f"engine_{node.op_type}_{i}"
    if unnamed:
        onnx.save(model, str(model_path))


def skipped_nodes(model_path: Path, cfg: BuildConfig) -> list[str]:
    """Names of the weighted layers ``quantization.skip_layers`` keeps in float.

    Indices count the Conv/Gemm/MatMul nodes in graph order (the seed's
    ``skip_conv_layers``); negative ones count from the end. The first and last layers
    are the usual candidates: the first sees the raw input, the last writes the logits.
    Pads feeding a float layer stay in float with it (see ``FLOAT_WITH_LAYER``).
    """
    if not cfg.quantization.skip_layers:
        return []
    model = onnx.load(str(model_path))
    nodes = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS]
    made_by = producers(model.graph)
    names = []
    for index in cfg.quantization.skip_layers:
        if not -len(nodes) <= index < len(nodes):
            raise ConfigError(f"{cfg.key('quantization.skip_layers')}: layer {index} does not exist; the model has "
                              f"{len(nodes)} Conv/Gemm/MatMul layers")
        names.append(nodes[index].name)
        source = made_by.get(nodes[index].input[0])
        while source is not None and source.op_type in FLOAT_WITH_LAYER:
            names.append(source.name)
            source = made_by.get(source.input[0])
    return names


def _final_qdq_pair(graph, outputs: set[str]):
    """A QuantizeLinear -> DequantizeLinear pair whose result is a graph output or feeds Softmax."""
    made_by, read_by = producers(graph), readers(graph)
    for dq in graph.node:
        if dq.op_type != "DequantizeLinear":
            continue
        q = made_by.get(dq.input[0])
        users = read_by.get(dq.output[0], [])
        final = dq.output[0] in outputs or (users and all(u.op_type == "Softmax" for u in users))
        if final and q is not None and q.op_type == "QuantizeLinear" and len(read_by[q.output[0]]) == 1:
            return q, dq
    return None


def keep_float_outputs(path: Path) -> int:
    """Drop the Quantize/Dequantize pairs on the model's outputs (and before a final Softmax).

    The quantizer puts a QDQ pair after every op, the classifier's logits and softmax
    included. 8-bit logits create ties among the top classes and 8-bit probabilities
    (steps of 1/255) make the top-5 order arbitrary. Without the trailing pair the last
    Gemm/MatMul still runs in int8 (onnxruntime fuses DQ -> Gemm into a QGemm with float
    output), so nothing is lost in speed. Returns the number of pairs removed.
    """
    model = onnx.load(str(path))
    graph = model.graph
    outputs = {o.name for o in graph.output}
    removed = 0
    while (found := _final_qdq_pair(graph, outputs)) is not None:
        q, dq = found
        source, result = q.input[0], dq.output[0]
        if result in outputs:
            # The float tensor takes the output's name, so the graph output stays as it is.
            old, new = source, result
        else:
            old, new = result, source
        for node in graph.node:
            node.output[:] = [new if o == old else o for o in node.output]
            if node is not q:
                node.input[:] = [new if i == old else i for i in node.input]
        graph.node.remove(q)
        graph.node.remove(dq)
        removed += 1
    used = {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)  # the dropped pairs' scales and zero points
    onnx.save(model, str(path))
    return removed


def _widened_summary(widened: dict[str, list[dict]]) -> dict | None:
    """What build.json says of :func:`engine.builder.weight_ranges.widened_weights`'s overrides."""
    if not widened:
        return None
    return {"layers": len(widened), "channels": sum(len(c) for c in widened.values()),
            "why": "each channel of an ordinary convolution gets the widest range in which no pair of "
                   "neighbouring weights can saturate VPMADDUBSW, depthwise ones the full 8 bits "
                   "(engine/builder/weight_ranges.py)"}


def _quantize_static(prepared: Path, dst: Path, items: list[str], info: ModelInfo, cfg: BuildConfig,
                     types: Int8Types, skipped: list[str], batch_size: int, progress: bool) -> tuple[dict, dict | None]:
    """onnxruntime's static QDQ quantization of ``prepared`` into ``dst``; returns the
    widened weight ranges it was given and the channel pairing done before."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    spec = cfg.quantization
    method = {"max": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[spec.method]
    # Statistics are collected one batch at a time (batches may differ in size, and the
    # calibrators would otherwise hold every intermediate tensor of every image at once).
    extra = {"CalibStridedMinMax": 1, "ActivationSymmetric": False, "WeightSymmetric": True}
    if spec.method == "percentile":
        extra["CalibPercentile"] = spec.percentile
    widened, paired = {}, None
    if types.reduce_range and spec.per_channel:
        _, sample = next(iter_batches(items[:batch_size], info.data_config, batch_size))
        paired, float_model = pair_prepared_channels(prepared, set(skipped), info.input_name, sample)
        widened = widened_weights(float_model, set(skipped))
        extra["TensorQuantOverrides"] = widened
    reader = ImageCalibrationReader(items, info.data_config, info.input_name, batch_size, progress=progress)
    try:
        quantize_static(str(prepared), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=spec.per_channel,
                        activation_type=types.activation_type, weight_type=types.weight_type,
                        reduce_range=types.reduce_range, calibrate_method=method, nodes_to_exclude=skipped,
                        extra_options=extra)
    finally:
        reader.close()
    return widened, paired


def quantize_int8(src: Path, dst: Path, items: list[str], info: ModelInfo, cfg: BuildConfig, work: Path, *,
                  batch_size: int, threads: int, progress: bool) -> dict:
    """Static QDQ quantization of ``src`` into ``dst`` calibrated on ``items``, batches of
    ``batch_size``, then the configured accuracy steps; returns what build.json records."""
    from onnxruntime.quantization import quant_pre_process
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    spec = cfg.quantization
    prepared = work / PREPARED_MODEL
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    name_unnamed_nodes(prepared)
    skipped = skipped_nodes(prepared, cfg)
    types = int8_types(target_flags(spec.target_cpu))
    widened, paired = _quantize_static(prepared, dst, items, info, cfg, types, skipped, batch_size, progress)
    guard_float_layers(dst, skipped)
    rounded = None
    if spec.adaround:
        _, batch = next(iter_batches(items[:ADAROUND_IMAGES], info.data_config, ADAROUND_IMAGES))
        weight_range = get_qmin_qmax_for_qType(types.weight_type.tensor_type, reduce_range=types.reduce_range,
                                               symmetric=True)
        rounded = adaround(prepared, dst, batch, tuple(int(v) for v in weight_range),
                           wider=dict.fromkeys(widened, (-FULL_RANGE, FULL_RANGE)), progress=progress)
    corrected = (correct_biases(prepared, dst, items, info.data_config, batch_size) if spec.bias_correction
                 else None)
    keep_float_outputs(dst)
    fallback = None
    if spec.float_fallback:
        batches = [batch for _, batch in iter_batches(items[:FALLBACK_IMAGES], info.data_config, batch_size)]
        fallback = apply_float_fallback(prepared, dst, batches, spec.float_fallback,
                                        max_macs=spec.float_fallback_macs, threads=threads, progress=progress)
    return {
        "format": "QDQ", "activation_type": "uint8", "weight_type": "int8",
        "target_cpu": spec.target_cpu,
        "reduce_range": types.reduce_range,
        "why": types.reason,
        "widened_weights": _widened_summary(widened),
        "paired_channels": paired,
        "per_channel": spec.per_channel,
        "calibration_method": spec.method,
        "percentile": spec.percentile if spec.method == "percentile" else None,
        "batch_size": batch_size,
        "float_layers": skipped,
        "adaround": rounded,
        "bias_correction": corrected,
        "float_fallback": fallback,
    }
