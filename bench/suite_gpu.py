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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import Findings, SuiteSkipped
from bench.fixtures import make_npz_set, run_engine
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


@dataclass(frozen=True)
class Mode:
    """How much work each part of the suite does in one mode."""

    batches: tuple[int, ...]  # the torch loop's batch sizes; the engine runs at the best
    loop_seconds: float  # one timed torch loop
    rounds: int  # paired loop/engine rounds
    run_seconds: float  # the length of one engine run at the loop's rate
    variants: bool  # single engine runs at other instance and process counts


MODES = {
    "smoke": Mode(batches=(8,), loop_seconds=1.0, rounds=1, run_seconds=6.0, variants=False),
    "quick": Mode(batches=(32, 64, 128), loop_seconds=3.0, rounds=2, run_seconds=6.0, variants=True),
    "full": Mode(batches=(32, 64, 128, 256), loop_seconds=8.0, rounds=4, run_seconds=15.0, variants=True),
}
VARIANTS = (("2 instances", ["-i", "2"]), ("4 instances", ["-i", "4"]),
            ("2 device processes x 2 instances", ["-p", "2", "-i", "2"]))


@dataclass(frozen=True)
class Target:
    """Where the suite runs: the device, its precision and the card's dense fp16 rate."""

    device: str
    dtype: object  # a torch dtype
    precision: str
    card: str
    peak_tflops: float | None

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def share_of_peak(self, images_per_s: float) -> float | None:
        return None if self.peak_tflops is None else images_per_s * GFLOP_PER_IMAGE / (self.peak_tflops * 1e3)

    @classmethod
    def find(cls) -> Target:
        import torch

        device = os.environ.get("BENCH_GPU_DEVICE", "cuda")
        if not device.startswith("cuda"):
            return cls(device, torch.bfloat16, "bf16", "cpu (dry run)", None)
        if not torch.cuda.is_available():
            raise SuiteSkipped("no CUDA device visible to torch")
        card = torch.cuda.get_device_name(0)
        return cls(device, torch.float16, "fp16", card, dense_fp16_tflops(card))


def loop_part(found: Findings, target: Target, mode: Mode, module) -> dict[int, float]:
    """The torch loop at each batch size; returns its images/s by batch."""
    loop = {b: torch_loop_rate(module, target.device, target.dtype, b, mode.loop_seconds) for b in mode.batches}
    for b, rate in loop.items():
        found.rows.append({"name": f"vgg16 {target.precision} torch loop on {target.card}, batch {b} (inference only)",
                           "value": rate, "unit": "img/s", "share_of_dense_fp16": target.share_of_peak(rate)})
    return loop


def engine_part(found: Findings, target: Target, mode: Mode, module, onnx: Path, tmp: Path,
                loop: dict[int, float]) -> None:
    """The engine at the loop's best batch in rounds paired with the loop, then single runs
    at other instance and process counts."""
    best_b = max(loop, key=loop.get)
    files = make_npz_set(tmp / "npz", 64)
    # enough batches for several seconds at the loop's rate, so start-up and drain stay small
    batches_per_run = 4 if SMOKE else int(np.clip(np.ceil(mode.run_seconds * loop[best_b] / best_b), 20, 600))
    datalist = tmp / "list.txt"
    write_datalist(datalist, [files[i % len(files)] for i in range(best_b * batches_per_run)])
    workers = max(1, (os.cpu_count() or 2) - 2)
    engine_args = ["--backend", "torch", "--device", target.device, "--precision", target.precision, "-b", best_b,
                   "--workers", workers, "--warmup", best_b * min(4, batches_per_run // 4)]
    if target.on_gpu:
        engine_args.append("--cuda-graphs")
    paired_loop, paired_engine = [], []
    for r in range(mode.rounds):
        paired_loop.append(torch_loop_rate(module, target.device, target.dtype, best_b, mode.loop_seconds))
        report = run_engine(datalist, onnx, tmp / f"report_{r}.json", *engine_args)
        paired_engine.append(report["throughput_qps"])
    per_round = [e / b for e, b in zip(paired_engine, paired_loop)]
    engine_rate = float(np.median(paired_engine))
    config = report["config"]
    setting = (f"batch {best_b}, {config['instances']} instances, {workers} preprocess workers, "
               f"normalize on {config['normalize_on']}" + (", CUDA graphs" if target.on_gpu else ""))
    precision = target.precision
    found.rows += [
        {"name": f"vgg16 {precision} torch loop, batch {best_b}, paired rounds (inference only)",
         "value": float(np.median(paired_loop)), "unit": "img/s", "rounds": paired_loop},
        {"name": f"vgg16 {precision} engine end to end from npz, {setting}" if target.on_gpu
                 else f"vgg16 {precision} engine end to end (dry run)",
         "value": engine_rate, "unit": "img/s", "rounds": paired_engine,
         "share_of_dense_fp16": target.share_of_peak(engine_rate), "stages_us": report["stages_us_per_item"]},
    ]
    for label, extra in (VARIANTS if mode.variants else ()):
        other = run_engine(datalist, onnx, tmp / "report_variant.json", *engine_args, *extra)
        found.rows.append({"name": f"vgg16 {precision} engine end to end, {label}", "value": other["throughput_qps"],
                           "unit": "img/s", "share_of_dense_fp16": target.share_of_peak(other["throughput_qps"]),
                           "stages_us": other["stages_us_per_item"]})
    found.ratios.append({"name": f"vgg16 {precision} engine end to end / torch loop on pre-made device tensors "
                                 f"(batch {best_b}, median of paired rounds)",
                         "value": float(np.median(per_round)), "goal": None, "met": None, "per_round": per_round,
                         "readme": True})


def suite_notes(target: Target) -> list[str]:
    return [
        f"Card: {target.card}; dense fp16 tensor rate {target.peak_tflops} TFLOP/s (data sheet)" if target.on_gpu else
        "Dry run on the CPU (BENCH_GPU_DEVICE=cpu): bf16, no CUDA graphs; figures mean nothing.",
        f"VGG16 is {GFLOP_PER_IMAGE:.1f} GFLOP per image; share_of_dense_fp16 = images/s x GFLOP / peak.",
        "VGG16 has seeded random weights (speed only). The engine's figures include npz loading and "
        "preprocessing on the CPU and the copy to the card (uint8 crops when normalizing on the device, "
        "float32 when on the host).",
    ]


def run(quick: bool = True) -> dict:
    import torch

    from engine.models.onnx_export import export_onnx
    from engine.models.zoo import create

    target = Target.find()
    mode = MODES["smoke" if SMOKE else "quick" if quick else "full"]
    found = Findings()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        tmp = Path(tmp)
        zoo_model = create("vgg16", library="timm", seed=0)
        onnx = export_onnx(zoo_model, tmp / "vgg16", check=False)  # its model-info tells the engine the net
        module = zoo_model.module.eval().to(device=target.device, dtype=target.dtype,
                                            memory_format=torch.channels_last)
        loop = loop_part(found, target, mode, module)
        engine_part(found, target, mode, module, onnx, tmp, loop)
    found.notes += suite_notes(target)
    return found.result("gpu", "VGG16 fp16 on a GPU: engine end to end vs a plain torch loop")
