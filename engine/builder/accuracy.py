"""The accuracy check of a built model against the fp32 model it was built from, on
held-out images (never calibration images), and for int8 its error budget.

Top-1 agreement and top-5 overlap say what a user sees; the output SNR (dB, of the
model's first output: logits, or probabilities with softmax) still tells builds apart
where agreement is decided by near-ties. With labels (a label file or wnid folders) the
top-1/top-5 rates of both models are given too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from engine.builder.calibration import iter_batches
from engine.builder.error_budget import error_budget
from engine.builder.graph import output_snr_db
from engine.data.dataconfig import DataConfig
from engine.data.labels import LabelSource

# Images per batch of the check's sessions.
CHECK_BATCH = 8
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


def _compare(ref_outputs: list[np.ndarray], new_outputs: list[np.ndarray], truth: list) -> dict:
    a, b = (np.argsort(-np.concatenate(outs), axis=1, kind="stable")[:, :5] for outs in (ref_outputs, new_outputs))
    overlap = [len(set(x) & set(y)) / 5 for x, y in zip(a, b)]
    result = {
        "images": len(a),
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


def accuracy_check(reference: Path, built: Path, items: list[str], config: DataConfig,
                   labels: LabelSource | None, *, threads: int, progress: bool, backend: str = "ort") -> dict:
    """Top-1 agreement, top-5 overlap and output SNR of ``built`` (run on ``backend``: ort, or
    openvino at the precision the build gave it) vs ``reference`` (onnxruntime fp32) on ``items``."""
    from tqdm import tqdm

    from engine.backends import open_backend

    ref = open_backend("ort", reference, threads=threads)
    new = open_backend(backend, built, threads=threads)
    ref_outputs, new_outputs, truth = [], [], []
    with tqdm(total=len(items), desc="checking", unit="img", disable=not progress) as bar:
        for chunk, batch in iter_batches(items, config, CHECK_BATCH):
            ref_outputs.append(ref.run(batch)[0])
            new_outputs.append(new.run(batch)[0])
            truth.extend(labels(i) if labels is not None else None for i in chunk)
            bar.update(len(chunk))
    ref.close()
    new.close()
    return _compare(ref_outputs, new_outputs, truth)


def int8_error_budget(prepared: Path, built: Path, items: list[str], config: DataConfig, *, threads: int) -> dict:
    """:func:`engine.builder.error_budget.error_budget` of the int8 model ``built`` against the
    float model it was quantized from, on the first ERROR_BUDGET_IMAGES of ``items``; a
    QDQ layout the budget cannot take apart is reported, not raised (the model is fine)."""
    from engine.backends import open_backend

    batches = [batch for _, batch in iter_batches(items[:ERROR_BUDGET_IMAGES], config, CHECK_BATCH)]
    fp32 = open_backend("ort", prepared, threads=threads)
    try:
        reference = [fp32.run(batch)[0] for batch in batches]
    finally:
        fp32.close()
    try:
        return error_budget(onnx.load(str(prepared)), onnx.load(str(built)), batches, reference, threads)
    except ValueError as e:
        return {"error": str(e)}
