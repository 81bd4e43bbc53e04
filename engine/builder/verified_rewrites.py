"""Graph rewrites of the float model that are kept only if they are verified to compute
what the model did: pad folding (:mod:`engine.builder.pad_folding`) and channel pairing
(:mod:`engine.builder.channel_pairing`).

Both only make the sums run in another order, so a rewritten model whose outputs moved
further than float rounding can explain is a pattern the rewrite misread; the build then
keeps the model as it was and build.json says why.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from engine.builder.channel_pairing import pair_channels
from engine.builder.pad_folding import fold_pads

# How far a rewritten float model's outputs may move, relative to their largest magnitude.
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


def fold_source_pads(src: Path, input_name: str, sample: np.ndarray, work: Path) -> tuple[Path, dict]:
    """Pad folding on the model to build from, kept only if it computes the same on
    ``sample`` (an input of the model's size); returns the model to build from and what
    build.json records."""
    model = onnx.load(str(src))
    folded, count = fold_pads(model, input_name, sample)
    if not count:
        return src, {"pads_folded": 0}
    moved = largest_output_change(model, folded, input_name, sample)
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
    """Reorder the prepared model's private channel chains and keep the result only if it
    computes what the model did on ``sample``; returns what build.json records (the
    reordered layers, or why nothing was) and the prepared model as it now is on disk."""
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
