"""Pipeline suite: the engine end to end against what a user would otherwise run.

1. VGG11 fp32 on onnxruntime CPU: the engine's end-to-end images/s over ImageNet-sized
   npz files against a plain onnxruntime loop on pre-made tensors at its best batch
   size (inference only), the two in alternating rounds. Goal: median per-round ratio
   >= 0.95, i.e. preprocessing and transport hidden.
2. Pipeline capacity with a model so cheap that the pipeline is the bottleneck: the
   engine against a torch DataLoader(num_workers=2) running the torchvision transforms
   over the same npz files and feeding the same model. Goal: >= 4x.
3. Peak RSS of the whole run (broker + workers) for 1k and 10k items.
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

from bench.fixtures import make_npz_set, run_engine
from engine.data.dataconfig import ModelInfo
from engine.data.datalist import write_datalist


def ort_loop_throughput(model: Path, batch: int, threads: int, seconds: float, size: int = 224) -> float:
    """Images/s of a bare onnxruntime session on one pre-made batch, run back to back."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    session.run(None, {"input": x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        session.run(None, {"input": x})
        n += 1
    return n * batch / (time.perf_counter() - t0)


def dataloader_throughput(items: list[str], model: Path, batch: int, threads: int, workers: int = 2) -> float:
    """Images/s of torch DataLoader + torchvision transforms feeding an onnxruntime session."""
    import onnxruntime as ort
    import torch
    import torchvision.transforms as T

    cfg = ModelInfo.load(ModelInfo.path_for(model)).data_config
    transform = T.Compose([T.Resize(cfg.resize), T.CenterCrop(cfg.crop), T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])

    class NpzDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            chw = np.load(items[i])["input_0"]
            return transform(Image.fromarray(chw.transpose(1, 2, 0)))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    loader = torch.utils.data.DataLoader(NpzDataset(), batch_size=batch, num_workers=workers)
    it = iter(loader)
    session.run(None, {"input": next(it).numpy()})  # workers started and warm before the clock
    n, t0 = 0, time.perf_counter()
    for x in it:
        session.run(None, {"input": x.numpy()})
        n += len(x)
    return n / (time.perf_counter() - t0)


def vgg11_model(folder: Path) -> Path:
    from engine.models.onnx_export import export_onnx
    from engine.models.zoo import create

    return Path(export_onnx(create("vgg11", library="timm", seed=0), folder, check=False))


def run(quick: bool = True) -> dict:
    smoke = os.environ.get("BENCH_SMOKE") == "1"
    rows, ratios, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tmp = Path(tmp)
        items = make_npz_set(tmp / "npz", 8 if smoke else 64)
        datalist = tmp / "list.txt"
        write_datalist(datalist, items)

        # 1. VGG11: engine end to end vs bare onnxruntime on pre-made tensors
        vgg = vgg11_model(tmp / "vgg")
        threads = 2
        batches = (1, 8) if quick else (1, 2, 4, 8, 16)
        seconds = 1 if smoke else 8 if quick else 20
        loop = {b: ort_loop_throughput(vgg, b, threads, seconds=seconds) for b in batches}
        best_b = max(loop, key=loop.get)
        for b, v in loop.items():
            rows.append({"name": f"vgg11 fp32 onnxruntime loop, batch {b} (inference only)", "value": v,
                         "unit": "img/s"})
        # then both at that batch in alternating rounds, so background load hits both
        paired_loop, paired_engine = [], []
        for r in range(1 if smoke else 3):
            paired_loop.append(ort_loop_throughput(vgg, best_b, threads, seconds=seconds))
            report = run_engine(datalist, vgg, tmp / f"vgg_report_{r}.json", "-b", best_b, "--threads", threads,
                                "--workers", 1, "--warmup", best_b, "--iterations", 1 if quick else 2)
            paired_engine.append(report["throughput_qps"])
        per_round = [e / b for e, b in zip(paired_engine, paired_loop)]
        ratio = float(np.median(per_round))
        rows += [
            {"name": f"vgg11 fp32 onnxruntime loop, batch {best_b}, paired rounds (inference only)",
             "value": float(np.median(paired_loop)), "unit": "img/s", "rounds": paired_loop},
            {"name": f"vgg11 fp32 engine end to end from npz, batch {best_b}, paired rounds",
             "value": float(np.median(paired_engine)), "unit": "img/s", "key": True, "rounds": paired_engine,
             "stages_us": report["stages_us_per_item"]},
        ]
        ratios.append({"name": "vgg11 engine end-to-end / bare onnxruntime loop (best batch, median of paired rounds)",
                       "value": ratio, "goal": ">= 0.95", "met": ratio >= 0.95, "per_round": per_round,
                       "readme": True})

        # 2. pipeline capacity: cheap model, engine vs DataLoader(num_workers=2) + torchvision
        cheap = write_pool_linear_onnx(tmp / "cheap" / "cheap.onnx")
        n_items = 64 if smoke else 512 if quick else 2048
        many = [items[i % len(items)] for i in range(n_items)]
        many_list = tmp / "many.txt"
        write_datalist(many_list, many)
        baseline = dataloader_throughput(many, cheap, batch=16, threads=1)
        report = run_engine(many_list, cheap, tmp / "cheap_report.json", "-b", 16, "--threads", 1,
                            "--workers", 2, "--warmup", 32)
        engine_cheap = report["throughput_qps"]
        rows += [
            {"name": "cheap model, torch DataLoader(num_workers=2) + torchvision transforms", "value": baseline,
             "unit": "img/s"},
            {"name": "cheap model, engine (2 preprocess workers)", "value": engine_cheap, "unit": "img/s", "key": True,
             "stages_us": report["stages_us_per_item"]},
        ]
        ratios.append({"name": "pipeline capacity: engine / DataLoader+torchvision", "value": engine_cheap / baseline,
                       "goal": ">= 4", "met": engine_cheap / baseline >= 4})

        # 3. memory against datalist length
        peaks = {}
        for n in (100, 1000) if smoke else (1000, 10000):
            lst = tmp / f"rss{n}.txt"
            write_datalist(lst, [items[i % len(items)] for i in range(n)])
            peaks[n] = run_engine(lst, cheap, tmp / f"rss{n}.json", "-b", 16, "--threads", 1,
                                  "--workers", 2, "--save-topk", tmp / f"topk{n}.txt")["peak_rss_mb"]
            rows.append({"name": f"peak RSS, {n} items (broker + workers)", "value": peaks[n], "unit": "MB"})
        small, large = sorted(peaks)
        ratios.append({"name": f"peak RSS {large} items / {small} items", "value": peaks[large] / peaks[small],
                       "goal": "<= 1.10", "met": peaks[large] / peaks[small] <= 1.10})
    notes.append("VGG11 has random weights (seed 0): speed only. Both sides use 2 onnxruntime threads; "
                 "the engine's figure includes npz loading, preprocessing, transport, softmax/top-k. The loop "
                 "picks its best batch first; then loop and engine run at that batch in alternating rounds "
                 "and the goal ratio is the median of the per-round ratios.")
    return {"suite": "pipeline", "title": "engine end to end vs bare onnxruntime and vs DataLoader+torchvision",
            "rows": rows, "ratios": ratios, "notes": notes,
            "series": {"throughput": {"vgg11 ort fp32 bare loop": {str(k): v for k, v in loop.items()}},
                       "throughput_unit": "img/s"}}


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
