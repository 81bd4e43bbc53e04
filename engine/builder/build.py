"""Build a deploy folder (fp32, fp16 or int8) from a build config (``python -m engine.build``).

The folder is named like the seed compiler's, ``<model>-<dtype>-<method>-3_224_224-ort``,
and holds ``<model>.onnx``, its model-info JSON (so ``engine.run --onnx`` needs nothing
else) and ``build.json``: method, images used, classes covered, time taken and an
accuracy check of the built model against the fp32 one on held-out images (never the
calibration images).

int8 goes through onnxruntime's static quantization in QDQ format with per-channel
weights; see :func:`int8_types` for the data types and ``reduce_range`` chosen for the
CPU. fp16 converts weights and activations to float16 and keeps float32 inputs and
outputs, so the engine feeds every model the same way.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from engine.backends.ort import PRECISION_METADATA_KEY
from engine.builder.adaround import adaround
from engine.builder.bias_correction import correct_biases
from engine.builder.calibration import (
    ImageCalibrationReader,
    class_key_function,
    folder_labels_apply,
    iter_batches,
    list_items,
    spread_over_classes,
)
from engine.builder.channel_pairing import pair_channels
from engine.builder.config import BuildConfig, ConfigError, check_preprocess_ops
from engine.builder.error_budget import error_budget
from engine.builder.float_fallback import WEIGHTED_OPS, apply_float_fallback, guard_float_layers, output_snr_db
from engine.builder.pad_folding import fold_pads
from engine.builder.weight_ranges import FULL as FULL_RANGE
from engine.builder.weight_ranges import widened_weights
from engine.data.dataconfig import DataConfig, ModelInfo
from engine.data.labels import LabelSource

BACKEND_SUFFIX = "ort"


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_types(flags: set[str] | None = None) -> dict:
    """Activation/weight types and ``reduce_range`` for onnxruntime int8 on this CPU.

    onnxruntime's x86 int8 kernels multiply uint8 activations by int8 weights (U8S8).
    Without VNNI (AVX2-only CPUs such as this one, and AVX-512 parts without
    AVX512_VNNI) the inner step is ``VPMADDUBSW``, which multiplies pairs of u8 x s8
    and adds each pair into a *saturating int16*: 255*127 + 255*127 = 64770 overflows
    the int16 limit of 32767, so large activations meeting large weights are clipped and
    accuracy drops. ``reduce_range=True`` quantizes weights to 7 bits (-64..64), which
    bounds a pair at 255*64*2 = 32640 and removes the saturation. It is the default here,
    and with per-channel weights each convolution's channels then get wider ranges where
    no pair of neighbouring weights can overflow, and depthwise convolutions (int32
    accumulation) the full 8 bits: see :mod:`engine.builder.weight_ranges` (17.5 -> 22.95 dB on
    EfficientNet-Lite0's recommended build, same speed). S8S8 does not help here: on x86
    it is run as U8S8 after shifting the activations, with the same instruction.
    With VNNI (``VPDPBUSD`` accumulates straight into int32) or on ARM (``SDOT``/``UDOT``),
    there is no int16 intermediate and the full 8-bit range is used.

    Measured on this AVX2 machine (EfficientNet-Lite0, first and last layers in float,
    182 held-out photo crops; logit SNR against fp32): full-range weights gave 12.7 dB
    through the int8 kernels but 18.5 dB when the same QDQ model runs in float (graph
    optimizations off, so no int8 kernels): the gap is saturation. With reduce_range the
    kernels match their float simulation (13.8 dB both). U8U8 (uint8 weights, full 8 bits)
    avoids saturation too and is more accurate, but slow on this CPU. Measured
    2026-11-26, bias correction on: U8U8 24.0 dB against 17.5 dB for U8S8 with
    reduce_range, at 0.28x fp32's speed on EfficientNet-Lite0 (its depthwise layers) and
    1.34x on VGG11, where U8S8 with reduce_range runs at 1.28x and 2.02x.
    """
    from onnxruntime.quantization import QuantType

    flags = cpu_flags() if flags is None else flags
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "avx512vnni", "amx_int8"})
    x86 = bool(flags & {"sse2", "avx", "avx2"})
    reduce_range = x86 and not vnni
    return {
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        "reduce_range": reduce_range,
        "reason": ("x86 without VNNI: U8S8 with weights in ranges where VPMADDUBSW's int16 pairs "
                   "cannot saturate (reduce_range's 7 bits, wider per channel where safe)" if reduce_range else
                   "VNNI/ARM dot products accumulate in int32: U8S8, full 8-bit weights"),
    }


# -- model source ----------------------------------------------------------------------
def _info_for_onnx(path: Path, cfg: BuildConfig) -> ModelInfo:
    """The model-info beside an ONNX file, or one made from the file itself."""
    info_path = ModelInfo.path_for(path)
    if info_path.is_file():
        return ModelInfo.load(info_path)
    model = onnx.load(str(path), load_external_data=False)
    graph_input = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "batch")
            for d in graph_input.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise BuildError(f"{path}: input {graph_input.name} has shape {dims}, expected (N, C, H, W)")
    size = dims[2]
    config = DataConfig(input_size=tuple(dims[1:]), crop=size, resize=round(size / 0.875))
    return ModelInfo(name=cfg.model_name or path.stem.removesuffix(f"_{size}"), library="onnx",
                     model_file=path.name, input_name=graph_input.name,
                     output_names=[o.name for o in model.graph.output], input_shape=dims,
                     data_config=config, weights={"file": str(path)})


def source_model(cfg: BuildConfig, work: Path) -> tuple[Path, ModelInfo]:
    """The fp32 ONNX to build from (exported from the zoo when needed) and its model info."""
    if cfg.onnx is not None:
        if not cfg.onnx.is_file():
            raise ConfigError(f"{cfg.sources.get('model.onnx', 'model.onnx')}: {cfg.onnx}: no such file")
        return cfg.onnx, _info_for_onnx(cfg.onnx, cfg)
    from engine.models.onnx_export import export_onnx
    from engine.models.zoo import create

    size = cfg.input_shape[2] if cfg.input_shape else None
    zoo_model = create(cfg.model_name, library=cfg.library or "timm",
                       weights=None if cfg.weights is None else str(cfg.weights), seed=cfg.seed)
    size = size or zoo_model.data_config.crop
    # The built model keeps a dynamic batch axis; the engine batches on its own.
    path = export_onnx(zoo_model, work / "export", size=size, softmax=cfg.softmax)
    return path, ModelInfo.load(ModelInfo.path_for(path))


def check_inputs_match(cfg: BuildConfig, info: ModelInfo) -> None:
    if cfg.input_name is not None and cfg.input_name != info.input_name:
        raise ConfigError(f"{cfg.sources.get('model.input_name')}: input name {cfg.input_name!r}, "
                          f"but the model's input is {info.input_name!r}")
    if cfg.input_shape is not None and list(cfg.input_shape[1:]) != list(info.data_config.input_size):
        raise ConfigError(f"{cfg.sources.get('model.input_shape')}: shape {cfg.input_shape}, but the model "
                          f"takes (N, {', '.join(map(str, info.data_config.input_size))})")


def append_softmax(src: Path, dst: Path) -> None:
    """Add a Softmax over the class axis after the model's first output."""
    model = onnx.load(str(src))
    out = model.graph.output[0]
    logits = out.name + "_logits"
    for node in model.graph.node:
        node.output[:] = [logits if o == out.name else o for o in node.output]
    model.graph.node.append(helper.make_node("Softmax", [logits], [out.name], axis=-1, name="engine_softmax"))
    onnx.save(model, str(dst))


# -- conversions -----------------------------------------------------------------------
def set_precision(path: Path, precision: str) -> None:
    model = onnx.load(str(path))
    entries = [p for p in model.metadata_props if p.key != PRECISION_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(entries)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in entries}, PRECISION_METADATA_KEY: precision})
    onnx.save(model, str(path))


def convert_fp16(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def _producers_and_consumers(graph):
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producer, consumers


def _final_qdq_pair(graph, outputs: set[str]):
    """A QuantizeLinear -> DequantizeLinear pair whose result is a graph output or feeds Softmax."""
    producer, consumers = _producers_and_consumers(graph)
    for dq in graph.node:
        if dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        users = consumers.get(dq.output[0], [])
        final = dq.output[0] in outputs or (users and all(u.op_type == "Softmax" for u in users))
        if final and q is not None and q.op_type == "QuantizeLinear" and len(consumers[q.output[0]]) == 1:
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


# Ops in front of a float layer that stay in float with it. A quantized Pad between the
# network input and a float first layer feeds that layer through a DequantizeLinear:
# before guard_float_layers, onnxruntime then quantized the layer's weights itself
# (EfficientNet-Lite0, TF "same" padding before the stem: 11.0 dB logit SNR, 13.8 dB with
# the Pad in float, before bias correction). With the guard, the quantized Pad still
# costs the first layer its 8-bit input rounding: 16.0 dB against 17.5 dB with the Pad in
# float (bias correction on, 2026-11-26). Zero Pads are folded into their convolutions
# before this (engine.builder.pad_folding); the rule is for the Pads that cannot be.
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
    if not cfg.skip_layers:
        return []
    model = onnx.load(str(model_path))
    nodes = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS]
    producers = {out: n for n in model.graph.node for out in n.output}
    key = cfg.sources.get("quantization.skip_layers", "quantization.skip_layers")
    names = []
    for index in cfg.skip_layers:
        if not -len(nodes) <= index < len(nodes):
            raise ConfigError(f"{key}: layer {index} does not exist; the model has {len(nodes)} "
                              f"Conv/Gemm/MatMul layers")
        names.append(nodes[index].name)
        source = producers.get(nodes[index].input[0])
        while source is not None and source.op_type in FLOAT_WITH_LAYER:
            names.append(source.name)
            source = producers.get(source.input[0])
    return names


# Calibration images AdaRound fits each layer's rounding on (fewer still for big layers,
# see engine.builder.adaround.MAX_ELEMENTS).
ADAROUND_IMAGES = 8
# Held-out images the error budget runs on (the first of the check list, which is spread
# over the classes in order): three float-arithmetic passes of the int8 model each.
ERROR_BUDGET_IMAGES = 64
# What engine.build prints after the error budget, by the source that limits the build.
ERROR_BUDGET_HINTS = {
    "weights": "the int8 weights limit this build: quantization.adaround and quantization.float_fallback "
               "act on them",
    "activations": "the int8 activations limit this build: try another quantization.method, more "
                   "calibration images, or quantization.skip_layers for the layers around the worst tensors",
    "both": "weights and activations add comparable error to this build",
}
# The float model the quantizer reads (shape-inferred, every node named), in the build's work folder.
PREPARED_MODEL = "prepared.onnx"
# Calibration images the float fallback ranks layers on (the first ones: the calibration
# list is spread over the classes in order). Each layer costs a pass over them.
FALLBACK_IMAGES = 64


def quantize_int8(src: Path, dst: Path, items: list[str], info: ModelInfo, cfg: BuildConfig,
                  work: Path, progress: bool) -> dict:
    """Static QDQ quantization calibrated on ``items``; returns what was chosen."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quant_pre_process, quantize_static
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    prepared = work / PREPARED_MODEL
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    name_unnamed_nodes(prepared)
    skipped = skipped_nodes(prepared, cfg)
    types = int8_types()
    method = {"max": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[cfg.method]
    fixed = info.input_shape[0] if isinstance(info.input_shape[0], int) else None
    batch_size = fixed or cfg.calibration_batch_size
    reader = ImageCalibrationReader(items, info.data_config, info.input_name, batch_size, progress=progress)
    # Statistics are collected one batch at a time (batches may differ in size, and the
    # calibrators would otherwise hold every intermediate tensor of every image at once).
    extra = {"CalibStridedMinMax": 1, "ActivationSymmetric": False, "WeightSymmetric": True}
    if cfg.method == "percentile":
        extra["CalibPercentile"] = cfg.percentile
    widened, paired = {}, None
    if types["reduce_range"] and cfg.per_channel:
        _, sample = next(iter_batches(items[:batch_size], info.data_config, batch_size))
        paired, float_model = pair_prepared_channels(prepared, set(skipped), info.input_name, sample)
        widened = widened_weights(float_model, set(skipped))
        extra["TensorQuantOverrides"] = widened
    try:
        quantize_static(
            str(prepared), str(dst), reader,
            quant_format=QuantFormat.QDQ,
            per_channel=cfg.per_channel,
            activation_type=types["activation_type"],
            weight_type=types["weight_type"],
            reduce_range=types["reduce_range"],
            calibrate_method=method,
            nodes_to_exclude=skipped,
            extra_options=extra,
        )
    finally:
        reader.close()
    guard_float_layers(dst, skipped)
    rounded = None
    if cfg.adaround:
        _, batch = next(iter_batches(items[:ADAROUND_IMAGES], info.data_config, ADAROUND_IMAGES))
        weight_range = get_qmin_qmax_for_qType(types["weight_type"].tensor_type,
                                               reduce_range=types["reduce_range"], symmetric=True)
        full_range = (-FULL_RANGE, FULL_RANGE)
        rounded = adaround(prepared, dst, batch, tuple(int(v) for v in weight_range),
                           wider=dict.fromkeys(widened, full_range), progress=progress)
    corrected = (correct_biases(prepared, dst, items, info.data_config, batch_size) if cfg.bias_correction
                 else None)
    keep_float_outputs(dst)
    fallback = None
    if cfg.float_fallback:
        batches = [batch for _, batch in iter_batches(items[:FALLBACK_IMAGES], info.data_config, batch_size)]
        fallback = apply_float_fallback(prepared, dst, batches, cfg.float_fallback, max_macs=cfg.float_fallback_macs,
                                        threads=max(1, os.cpu_count() or 1), progress=progress)
    return {
        "format": "QDQ",
        "activation_type": "uint8",
        "weight_type": "int8",
        "reduce_range": types["reduce_range"],
        "why": types["reason"],
        "widened_weights": _widened_summary(widened),
        "paired_channels": paired,
        "per_channel": cfg.per_channel,
        "calibration_method": cfg.method,
        "percentile": cfg.percentile if cfg.method == "percentile" else None,
        "batch_size": batch_size,
        "float_layers": skipped,
        "adaround": rounded,
        "bias_correction": corrected,
        "float_fallback": fallback,
    }


# How far a rewritten float model's outputs may move, relative to their largest magnitude
# (channel pairing and pad folding only make the sums run in another order).
REWRITE_TOLERANCE = 1e-4
FOLDED_MODEL = "pads_folded.onnx"


def largest_output_change(model: onnx.ModelProto, rewritten: onnx.ModelProto, input_name: str,
                          sample: np.ndarray) -> float:
    """The largest change of any output of ``rewritten`` against ``model`` on ``sample``,
    relative to that output's largest magnitude."""
    import onnxruntime as ort

    def outputs(proto: onnx.ModelProto) -> list[np.ndarray]:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {input_name: sample})

    return max(float(np.abs(before - after).max() / max(float(np.abs(before).max()), 1e-12))
               for before, after in zip(outputs(model), outputs(rewritten)))


def fold_source_pads(src: Path, info: ModelInfo, work: Path) -> tuple[Path, dict]:
    """``engine.builder.pad_folding`` on the model to build from, kept only if it computes the
    same on a seeded random input; returns the model to build from and what build.json
    records."""
    model = onnx.load(str(src))
    fixed = info.input_shape[0] if isinstance(info.input_shape[0], int) else None
    sample = np.random.default_rng(0).standard_normal((fixed or 2, *info.data_config.input_size))
    sample = sample.astype(np.float32)
    folded, count = fold_pads(model, info.input_name, sample)
    if not count:
        return src, {"pads_folded": 0}
    moved = largest_output_change(model, folded, info.input_name, sample)
    if moved > REWRITE_TOLERANCE:
        return src, {"pads_folded": 0, "error": f"folding {count} Pads into their convolutions changed the "
                                                f"model's outputs by {moved:.2g} of their largest value; kept "
                                                f"the Pads"}
    path = work / FOLDED_MODEL
    onnx.save(folded, str(path))
    return path, {"pads_folded": count,
                  "why": "zero Pads with amounts computed at run time folded into the convolutions that read "
                         "them (engine/builder/pad_folding.py)"}


def pair_prepared_channels(prepared: Path, skipped: set[str], input_name: str,
                           sample: np.ndarray) -> tuple[dict, onnx.ModelProto]:
    """Reorder the prepared model's private channel chains (``engine.builder.channel_pairing``)
    and keep the result only if it computes what the model did on ``sample``; returns
    what build.json records (the reordered layers, or why nothing was) and the prepared
    model as it now is on disk."""
    model = onnx.load(str(prepared))
    reordered = onnx.ModelProto()
    reordered.CopyFrom(model)
    layers = pair_channels(reordered, skipped)
    changed = sum("median_range" in layer for layer in layers)
    if not changed:
        return {"layers": layers}, model

    moved = largest_output_change(model, reordered, input_name, sample)
    if moved > REWRITE_TOLERANCE:
        return {"layers": [], "error": f"reordering the channels of {changed} layers changed the float "
                                       f"model's outputs by {moved:.2g} of their largest value; kept the "
                                       f"original order"}, model
    onnx.save(reordered, str(prepared))
    return {"layers": layers,
            "why": "channels between a convolution and the 1x1 convolution that reads them reordered so that "
                   "neighbouring pairs of large same-sign weights, which cap the int8 ranges, are rare; the "
                   "float model is unchanged (engine/builder/channel_pairing.py)"}, reordered


def _widened_summary(widened: dict[str, list[dict]]) -> dict | None:
    """What build.json says of :func:`engine.builder.weight_ranges.widened_weights`'s overrides."""
    if not widened:
        return None
    return {"layers": len(widened), "channels": sum(len(c) for c in widened.values()),
            "why": "each channel of an ordinary convolution gets the widest range in which no pair of "
                   "neighbouring weights can saturate VPMADDUBSW, depthwise ones the full 8 bits "
                   "(engine/builder/weight_ranges.py)"}


# -- accuracy check --------------------------------------------------------------------
def accuracy_check(reference: Path, built: Path, items: list[str], config: DataConfig,
                   labels: LabelSource | None, progress: bool) -> dict:
    """Top-1 agreement, top-5 overlap and output SNR (dB, of the model's first output:
    logits, or probabilities with softmax) of ``built`` vs ``reference`` on ``items``.
    The SNR still tells builds apart where agreement is decided by near-ties."""
    from tqdm import tqdm

    from engine.backends import open_backend

    threads = max(1, os.cpu_count() or 1)
    ref = open_backend("ort", reference, threads=threads)
    new = open_backend("ort", built, threads=threads)
    ref_outputs, new_outputs, truth = [], [], []
    with tqdm(total=len(items), desc="checking", unit="img", disable=not progress) as bar:
        for chunk, batch in iter_batches(items, config, 8):
            ref_outputs.append(ref.run(batch)[0])
            new_outputs.append(new.run(batch)[0])
            truth.extend(labels(i) if labels is not None else None for i in chunk)
            bar.update(len(chunk))
    ref.close()
    new.close()
    a, b = (np.argsort(-np.concatenate(outs), axis=1, kind="stable")[:, :5] for outs in (ref_outputs, new_outputs))
    overlap = [len(set(x) & set(y)) / 5 for x, y in zip(a, b)]
    result = {
        "images": len(items),
        "top1_agreement": float(np.mean(a[:, 0] == b[:, 0])),
        "top5_overlap": float(np.mean(overlap)),
        "output_snr_db": round(output_snr_db(ref_outputs, new_outputs), 2),
    }
    known = [i for i, t in enumerate(truth) if t is not None]
    if known:
        t = np.asarray([truth[i] for i in known])
        for tag, top in (("fp32", a[known]), ("built", b[known])):
            result[f"{tag}_top1"] = float(np.mean(top[:, 0] == t))
            result[f"{tag}_top5"] = float(np.mean((top == t[:, None]).any(axis=1)))
        result["labelled_images"] = len(known)
    return result


def int8_error_budget(prepared: Path, built: Path, items: list[str], config: DataConfig) -> dict:
    """:func:`engine.builder.error_budget.error_budget` of the int8 model ``built`` against the
    float model it was quantized from, on ``items``."""
    from engine.backends import open_backend

    threads = max(1, os.cpu_count() or 1)
    batches = [batch for _, batch in iter_batches(items, config, 8)]
    fp32 = open_backend("ort", prepared, threads=threads)
    try:
        reference = [fp32.run(batch)[0] for batch in batches]
    finally:
        fp32.close()
    return error_budget(onnx.load(str(prepared)), onnx.load(str(built)), batches, reference, threads)


def _labels_for(label_file: Path | None, items: list[str]) -> LabelSource | None:
    if label_file is not None:
        return LabelSource(label_file)
    if folder_labels_apply(items):
        return LabelSource(from_folders=True)
    return None


# -- the build -------------------------------------------------------------------------
def deploy_folder_name(model: str, cfg: BuildConfig, input_size) -> str:
    shape = "_".join(str(d) for d in input_size)
    return f"{model}-{cfg.dtype}-{cfg.method_label}-{shape}-{BACKEND_SUFFIX}"


def build(cfg: BuildConfig, *, progress: bool = True, work_dir: Path | None = None) -> Path:
    """Run the build described by ``cfg``; returns the deploy folder. Intermediate files
    go to a temporary folder, or to ``work_dir``, which keeps them: among them
    ``prepared.onnx``, the float model an int8 model was quantized from, its channels in
    the int8 model's order (``engine.builder.channel_pairing``)."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="engine-build-") if work_dir is None
          else contextlib.nullcontext(str(work_dir))) as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        src, info = source_model(cfg, work)
        timings["source_s"] = time.perf_counter() - t
        check_inputs_match(cfg, info)
        check_preprocess_ops(cfg.preprocess_ops, info.data_config,
                             cfg.sources.get("preprocess_ops", "preprocess_ops"))
        softmax_done = bool(info.extra.get("softmax"))
        if cfg.softmax and not softmax_done:
            with_softmax = work / "with_softmax.onnx"
            append_softmax(src, with_softmax)
            src = with_softmax
        reference = src
        t = time.perf_counter()
        src, rewrites = fold_source_pads(src, info, work)
        timings["fold_pads_s"] = time.perf_counter() - t

        pool = list_items(cfg.calibration_path, cfg.calibration_suffix) if cfg.calibration_path else []
        calib_labels = _labels_for(cfg.calibration_labels, pool)
        calib_items = (spread_over_classes(pool, cfg.calibration_count, class_key_function(calib_labels))
                       if cfg.dtype == "int8" else [])
        chosen = set(calib_items)
        check_pool = [i for i in (list_items(cfg.check_path) if cfg.check_path else pool) if i not in chosen]
        check_labels = _labels_for(cfg.check_labels or cfg.calibration_labels, check_pool)
        check_items = spread_over_classes(check_pool, cfg.check_count, class_key_function(check_labels))

        name = info.name
        folder = cfg.output / deploy_folder_name(name, cfg, info.data_config.input_size)
        folder.mkdir(parents=True, exist_ok=True)
        built = folder / f"{name}.onnx"

        t = time.perf_counter()
        quantization = None
        if cfg.dtype == "int8":
            quantization = quantize_int8(src, built, calib_items, info, cfg, work, progress)
        elif cfg.dtype == "fp16":
            convert_fp16(src, built)
        else:
            shutil.copyfile(src, built)
        set_precision(built, cfg.dtype)
        timings["convert_s"] = time.perf_counter() - t

        t = time.perf_counter()
        check = None
        if check_items:
            check = accuracy_check(reference, built, check_items, info.data_config, check_labels, progress)
        timings["check_s"] = time.perf_counter() - t
        if check is not None and cfg.dtype == "int8":
            t = time.perf_counter()
            try:
                check["error_budget"] = int8_error_budget(work / PREPARED_MODEL, built,
                                                          check_items[:ERROR_BUDGET_IMAGES], info.data_config)
            except ValueError as e:  # a QDQ layout the budget cannot take apart; the model is fine
                check["error_budget"] = {"error": str(e)}
            timings["error_budget_s"] = time.perf_counter() - t

    extra = dict(info.extra)
    extra.update({"precision": cfg.dtype, "softmax": cfg.softmax or softmax_done,
                  "built_from": str(cfg.onnx or f"{info.library} {info.name}")})
    deployed = replace(info, model_file=built.name, extra=extra)
    deployed.save(ModelInfo.path_for(built))

    class_of = class_key_function(calib_labels)
    report = {
        "model": name,
        "library": info.library,
        "weights": info.weights,
        "dtype": cfg.dtype,
        "method": cfg.method_label,
        "calibration_method": cfg.method,
        "graph_rewrites": rewrites,
        "quantization": quantization,
        "softmax": cfg.softmax,
        "model_file": built.name,
        "model_bytes": built.stat().st_size,
        "calibration": {
            "path": None if cfg.calibration_path is None else str(cfg.calibration_path),
            "images_used": len(calib_items),
            "classes_covered": len({class_of(i) for i in calib_items}),
            "classes_present": len({class_of(i) for i in pool}),
            "items": calib_items,
        },
        "check": check if check is not None else {"images": 0, "skipped": "no held-out images"},
        "check_items": check_items,
        "ignored_config_keys": cfg.ignored,
        "time_s": round(time.perf_counter() - started, 3),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    (folder / "build.json").write_text(json.dumps(report, indent=2) + "\n")
    return folder
