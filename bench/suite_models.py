"""Models suite: classifiers beyond VGG end to end through ``engine.run`` (issue 17).

ResNet-50 and ConvNeXt-Tiny from timm (seeded random weights; their data configs are
timm's: bicubic, crop_pct 0.95 and 0.875) in fp32 on onnxruntime CPU. The engine's
end-to-end images/s over ImageNet-sized npz files (the pipeline suite's) against a bare
onnxruntime loop over the same items, preprocessed beforehand by timm's own eval
transform (inference only), the two in alternating rounds at the same batch and thread
count. Goal: the median per-round ratio >= 0.95 at a steady state (the engine's warm-up
items excluded), i.e. preprocessing and transport hidden behind inference.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.fixtures import make_npz_set, paired_rounds, run_engine
from engine.data.datalist import write_datalist

MODELS = ("resnet50", "convnext_tiny")
BATCH = 8
THREADS = 2


def export_model(name: str, folder: Path) -> Path:
    """``name`` from timm exported as the engine's cache would (its data config in the model info)."""
    from engine.models.onnx_export import export_onnx
    from engine.models.zoo import create

    model = create(name, library="timm", seed=0)
    return Path(export_onnx(model, folder, size=model.data_config.input_size[-1]))


def library_tensors(name: str, items: list[str]) -> np.ndarray:
    """The items as timm's own eval transform gives them: (N, 3, H, W) float32."""
    import timm
    import timm.data

    model = timm.create_model(name, pretrained=False)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    return np.stack([transform(Image.fromarray(np.load(p)["input_0"].transpose(1, 2, 0))).numpy() for p in items])


def ort_items_throughput(model: Path, tensors: np.ndarray, seconds: float) -> float:
    """Images/s of a bare onnxruntime session over the pre-made items, BATCH at a time."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    batches = [tensors[i:i + BATCH] for i in range(0, len(tensors) - BATCH + 1, BATCH)]
    session.run(None, {"input": batches[0]})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2 * BATCH:
        session.run(None, {"input": batches[(n // BATCH) % len(batches)]})
        n += BATCH
    return n / (time.perf_counter() - t0)


def _measure_model(name: str, tmp: Path, items: list[str], datalist: Path, rounds: int,
                   seconds: float, iterations: int) -> tuple[list[dict], dict]:
    model = export_model(name, tmp / name)
    tensors = library_tensors(name, items)
    paired = paired_rounds(rounds, lambda: ort_items_throughput(model, tensors, seconds), lambda r: run_engine(
        datalist, model, tmp / f"{name}_report_{r}.json", "-b", BATCH, "--threads", THREADS, "--workers", 1,
        "--warmup", 2 * BATCH, "--iterations", iterations))
    rows = [
        {"name": f"{name} fp32 onnxruntime loop over the items, batch {BATCH} (inference only)",
         "value": float(np.median(paired.loop)), "unit": "img/s", "rounds": paired.loop},
        {"name": f"{name} fp32 engine end to end from npz, batch {BATCH}", "value": float(np.median(paired.engine)),
         "unit": "img/s", "key": True, "rounds": paired.engine, "stages_us": paired.report.get("stages_us_per_item")},
    ]
    return rows, {"name": f"{name} engine end-to-end / bare onnxruntime loop (median of paired rounds)",
                  "value": paired.ratio, "goal": ">= 0.95", "met": paired.ratio >= 0.95, "per_round": paired.per_round}


def run(quick: bool = True) -> dict:
    smoke = os.environ.get("BENCH_SMOKE") == "1"
    rows, ratios = [], []
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        tmp = Path(tmp)
        items = make_npz_set(tmp / "npz", 16 if smoke else 48 if quick else 256)
        datalist = tmp / "list.txt"
        write_datalist(datalist, items)
        for name in MODELS[:1] if smoke else MODELS:
            model_rows, ratio = _measure_model(name, tmp, items, datalist, rounds=1 if smoke else 3,
                                               seconds=2 if smoke else 8 if quick else 20,
                                               iterations=1 if smoke else 2 if quick else 4)
            rows += model_rows
            ratios.append(ratio)
    notes = [f"timm models with random weights (seed 0): speed only. Both sides use {THREADS} onnxruntime threads "
             f"and batch {BATCH}; the engine's figure includes npz loading, the model's own preprocessing "
             "(timm's data config), transport, softmax/top-k, with one preprocess worker; the loop runs on the "
             "same items preprocessed beforehand by timm's eval transform. Loop and engine alternate; the goal "
             "ratio is the median of the per-round ratios."]
    return {"suite": "models", "title": "ResNet-50 and ConvNeXt-Tiny: engine end to end vs bare onnxruntime",
            "rows": rows, "ratios": ratios, "notes": notes}


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
