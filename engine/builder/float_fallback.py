"""Pick which layers of a finished int8 model to put back in float (float fallback), and
keep the float layers of an int8 model in float when onnxruntime loads it.

Quantization error is not spread evenly over a network: one or two layers often cost
more than all the others together, and which ones depends on the model and its weights,
so they are measured, not guessed. Each quantized Conv/Gemm/MatMul in turn is dequantized
back to its float weights in the finished int8 model, and the model's output on
calibration images is compared with fp32's (the signal-to-noise ratio of the outputs, in
dB). The layers whose return to float gains the most are put back in float for good, in
the same way, so the model that ships is the one that was measured. Each such layer runs
at float speed, so ``max_macs`` (``quantization.float_fallback_macs``) skips those that
would take the float layers over a share of the model's multiply-accumulates: gains and
costs differ by orders of magnitude between layers. That share is a proxy for time that
understates memory-bound layers (depthwise convolutions), which is why it is a cap
chosen by the user and not a target.

This is a different step from ``quantization.skip_layers``, which the quantizer leaves
out before calibration (by index, the seed's ``skip_conv_layers``); here the choice is
made after, from measurements of the int8 model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from engine.builder.graph import (
    WEIGHTED_OPS,
    first_outputs,
    guard_graph,
    output_snr_db,
    quantized_layers,
    session_with_outputs,
    with_float_layers,
)


def guard_float_layers(path: Path, names: list[str]) -> int:
    """:func:`engine.builder.graph.guard_graph` on the model at ``path``, rewritten in place."""
    model = onnx.load(str(path))
    guarded = guard_graph(model.graph, names)
    onnx.save(model, str(path))
    return guarded


def rank_layers(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, batches: list[np.ndarray],
                reference: list[np.ndarray], *, threads: int = 1,
                progress: bool = False) -> tuple[float, list[tuple[str, float]]]:
    """The int8 model's output SNR against ``reference`` (the float model's outputs on
    ``batches``), and for each quantized layer the SNR gained when it alone runs in
    float, largest gain first."""
    from tqdm import tqdm

    base = output_snr_db(reference, first_outputs(int8_model, batches, threads))
    gains = []
    for name in tqdm(quantized_layers(int8_model), desc="ranking layers", unit="layer", disable=not progress):
        trial = with_float_layers(int8_model, float_model, [name])
        gains.append((name, output_snr_db(reference, first_outputs(trial, batches, threads)) - base))
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
    reference = first_outputs(float_model, batches, threads)
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
    after = output_snr_db(reference, first_outputs(model, batches, threads))
    onnx.save(model, str(int8_path))
    return {
        "layers": chosen,
        "images": int(sum(len(b) for b in batches)),
        "output_snr_db": {"int8": round(base, 2), "with_fallback": round(after, 2)},
        "macs_share": {"float_layers": round(used / total, 4), "limit": max_macs},
        "gain_db_alone": {name: round(gain, 3) for name, gain in gains[:max(count, 10)]},
        "layer_macs_share": {name: round(macs[name] / total, 4) for name, _ in gains[:max(count, 10)]},
    }
