"""GPU suite: VGG16 fp16 end to end through the engine against a plain torch loop.

Runs where torch sees a CUDA device and reports itself skipped elsewhere. Both sides use
the same card, the same network (timm vgg16, seeded random weights: speed only) and fp16:

1. Baseline, what a GPU user writes: the module in fp16 (``.half()``), channels_last,
   ``torch.inference_mode``, one pre-made batch already on the device, forward passes
   back to back, timed between ``torch.cuda.synchronize()`` calls; best of the batch
   sizes tried.
2. The engine: ``python -m engine.run --backend torch --device cuda --precision fp16
   --cuda-graphs`` over ImageNet-sized npz files at the loop's best batch: npz loading
   and resize/crop on the CPU, the uint8 copy to the card, normalize and inference on
   it, softmax/top-k, with engine.run's defaults for a GPU (3 instances, one CUDA stream
   each). Single runs beside it: 2 and 4 instances, and 2 device processes of 2.

Measured in alternating rounds; the ratio is engine / loop (median of the per-round
ratios), and each figure is also given as a share of the card's dense fp16 tensor rate:
VGG16 is 15.47 GMACs, about 31 GFLOP per image.

``BENCH_GPU_DEVICE=cpu`` runs the same code on the CPU in bf16 without CUDA graphs, a
dry run of the suite on a machine without a GPU (its figures mean nothing).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import SuiteSkipped
from bench.suite_pipeline import make_npz_set, run_engine
from engine.data.datalist import write_datalist

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
GFLOP_PER_IMAGE = 2 * 15.47  # VGG16 at 224x224: multiply-adds of conv + linear layers, x2
# Dense (no sparsity) fp16 tensor-core rates in TFLOP/s, from the vendors' data sheets.
DENSE_FP16_TFLOPS = (
    ("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
    ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0), ("T4", 65.0), ("V100", 125.0),
)


def dense_fp16_tflops(device_name: str) -> float | None:
    """The card's dense fp16 rate by its name, or None for a card not in the table."""
    for key, tflops in DENSE_FP16_TFLOPS:
        if key in device_name:
            return tflops
    return None


def torch_loop_rate(module, device: str, dtype, batch: int, seconds: float) -> float:
    """Images/s of back-to-back forward passes on one batch already on ``device``."""
    import torch

    x = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):
            module(x)
        sync()
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            module(x)
            done += batch
        sync()
        return done / (time.perf_counter() - t0)


def run(quick: bool = True) -> dict:
    import torch

    from engine.models.onnx_export import export_onnx
    from engine.models.zoo import create

    device = os.environ.get("BENCH_GPU_DEVICE", "cuda")
    on_gpu = device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        raise SuiteSkipped("no CUDA device visible to torch")
    dtype, precision = (torch.float16, "fp16") if on_gpu else (torch.bfloat16, "bf16")
    card = torch.cuda.get_device_name(0) if on_gpu else "cpu (dry run)"
    peak = dense_fp16_tflops(card) if on_gpu else None
    batches = (8,) if SMOKE else ((32, 64, 128) if quick else (32, 64, 128, 256))
    seconds = 1.0 if SMOKE else (3.0 if quick else 8.0)
    rounds = 1 if SMOKE else (2 if quick else 4)
    run_seconds = 6.0 if quick else 15.0
    rows, ratios, notes = [], [], []

    def share_of_peak(images_per_s: float) -> float | None:
        return None if peak is None else images_per_s * GFLOP_PER_IMAGE / (peak * 1e3)

    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        tmp = Path(tmp)
        zoo_model = create("vgg16", library="timm", seed=0)
        onnx = export_onnx(zoo_model, tmp / "vgg16", check=False)  # its model-info tells the engine the net
        module = zoo_model.module.eval().to(device=device, dtype=dtype, memory_format=torch.channels_last)
        loop = {b: torch_loop_rate(module, device, dtype, b, seconds) for b in batches}
        best_b = max(loop, key=loop.get)
        for b, rate in loop.items():
            rows.append({"name": f"vgg16 {precision} torch loop on {card}, batch {b} (inference only)",
                         "value": rate, "unit": "img/s", "share_of_dense_fp16": share_of_peak(rate)})

        files = make_npz_set(tmp / "npz", 64)
        # enough batches for several seconds at the loop's rate, so start-up and drain stay small
        batches_per_run = 4 if SMOKE else int(np.clip(np.ceil(run_seconds * loop[best_b] / best_b), 20, 600))
        datalist = tmp / "list.txt"
        write_datalist(datalist, [files[i % len(files)] for i in range(best_b * batches_per_run)])
        workers = max(1, (os.cpu_count() or 2) - 2)
        engine_args = ["--backend", "torch", "--device", device, "--precision", precision, "-b", best_b,
                       "--workers", workers, "--warmup", best_b * min(4, batches_per_run // 4)]
        if on_gpu:
            engine_args.append("--cuda-graphs")
        paired_loop, paired_engine = [], []
        for r in range(rounds):
            paired_loop.append(torch_loop_rate(module, device, dtype, best_b, seconds))
            report = run_engine(datalist, onnx, tmp / f"report_{r}.json", *engine_args)
            paired_engine.append(report["throughput_qps"])
        per_round = [e / b for e, b in zip(paired_engine, paired_loop)]
        ratio = float(np.median(per_round))
        engine_rate = float(np.median(paired_engine))
        config = report["config"]
        setting = (f"batch {best_b}, {config['instances']} instances, {workers} preprocess workers, "
                   f"normalize on {config['normalize_on']}" + (", CUDA graphs" if on_gpu else ""))
        rows += [
            {"name": f"vgg16 {precision} torch loop, batch {best_b}, paired rounds (inference only)",
             "value": float(np.median(paired_loop)), "unit": "img/s", "rounds": paired_loop},
            {"name": f"vgg16 {precision} engine end to end from npz, {setting}" if on_gpu
                     else f"vgg16 {precision} engine end to end (dry run)",
             "value": engine_rate, "unit": "img/s", "rounds": paired_engine,
             "share_of_dense_fp16": share_of_peak(engine_rate), "stages_us": report["stages_us_per_item"]},
        ]
        variants = (("2 instances", ["-i", "2"]), ("4 instances", ["-i", "4"]),
                    ("2 device processes x 2 instances", ["-p", "2", "-i", "2"]))
        for label, extra in ([] if SMOKE else variants):
            other = run_engine(datalist, onnx, tmp / "report_variant.json", *engine_args, *extra)
            rows.append({"name": f"vgg16 {precision} engine end to end, {label}", "value": other["throughput_qps"],
                         "unit": "img/s", "share_of_dense_fp16": share_of_peak(other["throughput_qps"]),
                         "stages_us": other["stages_us_per_item"]})
        ratios.append({"name": f"vgg16 {precision} engine end to end / torch loop on pre-made device tensors "
                               f"(batch {best_b}, median of paired rounds)",
                       "value": ratio, "goal": None, "met": None, "per_round": per_round})
    notes += [
        f"Card: {card}; dense fp16 tensor rate {peak} TFLOP/s (data sheet)" if on_gpu else
        "Dry run on the CPU (BENCH_GPU_DEVICE=cpu): bf16, no CUDA graphs; figures mean nothing.",
        f"VGG16 is {GFLOP_PER_IMAGE:.1f} GFLOP per image; share_of_dense_fp16 = images/s x GFLOP / peak.",
        "VGG16 has seeded random weights (speed only). The engine's figures include npz loading and "
        "preprocessing on the CPU and the copy to the card (uint8 crops when normalizing on the device, "
        "float32 when on the host).",
    ]
    return {"suite": "gpu", "title": "VGG16 fp16 on a GPU: engine end to end vs a plain torch loop",
            "rows": rows, "ratios": ratios, "notes": notes}
