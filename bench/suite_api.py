"""API suite: the Python API against the command and against what a user would otherwise run.

1. ``engine.Classifier.stream`` against ``python -m engine.run`` on the same datalist of
   ImageNet-sized npz files, same model (a cheap one, so the pipeline, not the model, sets
   the rate and any cost of the API path shows), same workers, batch and threads, in
   alternating rounds. Goal: >= 0.95 (the API is the same pipeline, not a slower path).
2. ``engine.preprocess`` against a torch ``DataLoader`` with the same worker count running
   the model library's own eval transform (torchvision's ResNet-18 transform: resize 256
   bilinear, centre crop 224, normalize) over the same npz files, batches checked equal
   bit for bit first. Goal: >= 4x.
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
from tinynet import write_pool_linear_onnx

from bench.fixtures import Goal, make_npz_set, ratio, run_engine
from engine.data.datalist import write_datalist

STREAM_GOAL = Goal(">=", 0.95)
PREPROCESS_GOAL = Goal(">=", 4.0)
WORKERS, BATCH = 2, 16
TORCHVISION_MODEL = "resnet18"


def _classifier_rate(clf, items: list[str], warmup: int) -> float:
    """Items/s of one stream, the clock started once ``warmup`` results are through: the
    command's report times its run the same way (``--warmup``), so neither counts the
    pipeline filling up."""
    done, start = 0, None
    for r in clf.stream(items):
        done += r.error is None
        if done == warmup:
            start = time.perf_counter()
    return (done - warmup) / (time.perf_counter() - start)


def stream_vs_command(tmp: Path, items: list[str], rounds: int) -> tuple[list[dict], dict]:
    import engine

    model = write_pool_linear_onnx(tmp / "cheap" / "cheap.onnx")
    datalist = tmp / "list.txt"
    write_datalist(datalist, items)
    knobs = {"batch_size": BATCH, "workers": WORKERS, "threads": 1}
    command, api = [], []
    with engine.Classifier(onnx=str(model), **knobs) as clf:
        clf.classify(items[:2 * BATCH])  # warm, as the command's warm-up batches are
        for r in range(rounds):
            report = run_engine(datalist, model, tmp / f"run_{r}.json", "-b", BATCH, "--workers", WORKERS,
                                "--threads", 1, "--warmup", 2 * BATCH)
            command.append(report["throughput_qps"])
            api.append(_classifier_rate(clf, items, warmup=2 * BATCH))
    per_round = [a / c for a, c in zip(api, command)]
    rows = [{"name": "cheap model, python -m engine.run (2 workers, batch 16)", "value": float(np.median(command)),
             "unit": "img/s", "rounds": command},
            {"name": "cheap model, engine.Classifier.stream, same settings", "value": float(np.median(api)),
             "unit": "img/s", "rounds": api, "key": True}]
    return rows, ratio("Classifier.stream / engine.run, same datalist and settings (median of paired rounds)",
                       float(np.median(per_round)), STREAM_GOAL, readme=True, per_round=per_round)


def _dataloader(items: list[str], transform, batch: int, workers: int):
    import torch

    class NpzImages(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return transform(Image.fromarray(np.load(items[i])["input_0"].transpose(1, 2, 0)))

    return torch.utils.data.DataLoader(NpzImages(), batch_size=batch, num_workers=workers)


def _rate(batches) -> float:
    iterator = iter(batches)
    next(iterator)  # workers started and warm before the clock
    count, start = 0, time.perf_counter()
    for batch in iterator:
        count += len(batch[1] if isinstance(batch, tuple) else batch)
    return count / (time.perf_counter() - start)


def preprocess_vs_dataloader(items: list[str], rounds: int) -> tuple[list[dict], dict, str]:
    import torchvision

    import engine

    transform = torchvision.models.get_model_weights(TORCHVISION_MODEL).DEFAULT.transforms()
    keywords = {"model": TORCHVISION_MODEL, "library": "torchvision", "batch_size": BATCH, "workers": WORKERS}
    ours = next(iter(engine.preprocess(items[:BATCH], **keywords)))[1]
    theirs = next(iter(_dataloader(items[:BATCH], transform, BATCH, 0))).numpy()
    exact = bool(np.array_equal(ours, theirs))
    loader, api = [], []
    for _ in range(rounds):
        loader.append(_rate(_dataloader(items, transform, BATCH, WORKERS)))
        api.append(_rate(engine.preprocess(items, **keywords)))
    value = float(np.median(api)) / float(np.median(loader))
    rows = [{"name": f"torch DataLoader(num_workers={WORKERS}) + torchvision {TORCHVISION_MODEL} eval transform",
             "value": float(np.median(loader)), "unit": "img/s", "rounds": loader},
            {"name": f"engine.preprocess(workers={WORKERS}), same transform", "value": float(np.median(api)),
             "unit": "img/s", "rounds": api, "key": True}]
    note = (f"engine.preprocess batches equal the DataLoader's bit for bit: {exact} (checked on the first "
            f"{BATCH} items before timing)")
    return rows, ratio("engine.preprocess / DataLoader with the library's transform (same workers)", value,
                       PREPROCESS_GOAL if exact else None, readme=True, bit_exact=exact), note


def run(quick: bool = True) -> dict:
    smoke = os.environ.get("BENCH_SMOKE") == "1"
    rounds = 1 if smoke else 5
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        tmp = Path(tmp)
        base = make_npz_set(tmp / "npz", 16 if smoke else 64)
        items = [base[i % len(base)] for i in range(64 if smoke else 3072 if quick else 8192)]
        stream_rows, stream_ratio = stream_vs_command(tmp, items, rounds)
        pre_rows, pre_ratio, exact_note = preprocess_vs_dataloader(items, rounds)
    return {"suite": "api", "title": "Classifier.stream vs engine.run; engine.preprocess vs DataLoader",
            "rows": stream_rows + pre_rows, "ratios": [stream_ratio, pre_ratio],
            "notes": [f"{len(items)} ImageNet-sized (500x375) npz items, {WORKERS} preprocess workers, batch {BATCH}, "
                      f"{rounds} alternating rounds; both rates are timed after the first {2 * BATCH} results "
                      "(the command's --warmup, the same count in the Classifier's stream).", exact_note]}


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
