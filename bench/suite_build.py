"""Build suite: int8 against fp32 on this CPU, and the auto-tuner against an exhaustive sweep.

1. VGG11 (seeded random weights: no trained VGG weights install offline) exported to
   ONNX and built to int8 with ``engine.build``; images/s of the fp32 and the int8
   model through the engine (``engine.run`` over ImageNet-sized npz files, same batch
   and threads), run alternately so background load hits both. Goal: int8 >= 2.0x fp32.
   Also the inference-only ratio on pre-made tensors, the same ratio for the convolution
   and matrix kernels alone (onnxruntime's profiler: the bound on the whole model's), and
   VGG's top-1 agreement.
2. The trained EfficientNet-Lite0 built to int8 (percentile calibration, as the seed did
   for VGG; first and last layers kept in float; the full run also all-int8) from photos
   spread over their sources; top-1 agreement with fp32 on the held-out photos. Goal
   >= 99% on photos of objects ImageNet has classes for. Also built with learned
   rounding (``quantization.adaround``) and the float fallback of the 4 int8 layers that
   cost the most (``quantization.float_fallback``), with each variant's logit SNR against
   fp32 and inference-only speed (against the export as it is and against its fp32 build,
   which folds the export's computed Pads into the convolutions). The same figure
   on texture/medical/astronomy photos, where the fp32 model itself has no confident
   answer, is reported beside it, with the agreement on the confident ones. Beside each
   measured agreement: what Gaussian noise at the build's logit SNR would leave on the
   same photos, and the SNR that 99% on the object photos needs (``bench.agreement_model``).
3. ``engine.tune.autotune`` (short sweep) against the exhaustive sweep of the same grid
   on the VGG11 int8 model: both picks re-measured back to back. Goal: >= 0.95.
4. VGG11 int8 and fp32 through the engine again, each at the setting the short sweep
   picks for it (what ``engine.run --auto`` would run), alternately: reported beside the
   same-setting ratio of part 1, which carries the goal.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import yaml

from bench import Findings
from bench.agreement_model import expected_agreement, snr_needed
from bench.fixtures import make_npz_set, run_engine
from bench.ort_rates import alternate, inference_rates, kernel_split
from bench.photo_agreement import (
    CONFIDENT,
    OBJECT_PHOTOS,
    OTHER_PHOTOS,
    agreement_by_group,
    make_photo_set,
    object_photos,
)
from engine.backends import open_backend
from engine.builder.build import build
from engine.builder.calibration import iter_batches
from engine.builder.config import load_config
from engine.builder.error_budget import activations_alone, simulated_outputs
from engine.builder.quantize import PREPARED_MODEL
from engine.data.dataconfig import ModelInfo
from engine.data.datalist import write_datalist

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
THREADS = 2
RECOMMENDED = "first/last layers float"  # the EfficientNet-Lite0 variant that carries the goal
BEST = "first/last layers float, adaround, float_fallback 4"  # the most accurate build offered


def export(name: str, folder: Path) -> Path:
    from engine.models.onnx_export import export_onnx
    from engine.models.zoo import create

    return export_onnx(create(name, seed=0), folder, size=224)


def run_build(tmp: Path, tag: str, config: dict, work_dir: Path | None = None) -> Path:
    """Build from ``config`` written as ``tag``.yaml, keeping the intermediate files in
    ``work_dir`` when given."""
    path = tmp / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(config))
    return build(load_config(path), progress=False, work_dir=work_dir)


def logits(model, items: list[str], config, simulated: bool = False) -> np.ndarray:
    """First output of ``model`` (a path, or with ``simulated`` an ONNX model run as float
    arithmetic, see :func:`engine.builder.error_budget.simulated_outputs`) on ``items``."""
    batches = [batch for _, batch in iter_batches(items, config, 8)]
    if simulated:
        return np.concatenate(simulated_outputs(model, batches, THREADS))
    backend = open_backend("ort", model, threads=THREADS)
    try:
        return np.concatenate([backend.run(batch)[0] for batch in batches])
    finally:
        backend.close()


@dataclass(frozen=True)
class Mode:
    """How much work each part of the suite does in one mode."""

    crops_per_photo: int
    eff_calibration_per_photo: int  # times the 14 photos
    eff_extra_variants: bool  # the float fallback alone and every layer in int8
    eff_inference_rounds: int
    vgg_calibration: str  # the calibration method
    vgg_calibration_images: int
    vgg_check_images: int
    npz_items: int
    datalist_repeats: int
    engine_rounds: int  # whole engine runs and re-measured autotune picks, per model
    vgg_inference_rounds: int
    profiled_runs: int
    tune_batches: tuple[int, ...]
    tune_budget_s: float
    remeasure_window_s: float


MODES = {
    # Smoke: seconds of work for tests of the entry point; figures are not meaningful.
    "smoke": Mode(crops_per_photo=4, eff_calibration_per_photo=2, eff_extra_variants=False, eff_inference_rounds=2,
                  vgg_calibration="max", vgg_calibration_images=4, vgg_check_images=8, npz_items=24,
                  datalist_repeats=1, engine_rounds=1, vgg_inference_rounds=2, profiled_runs=2,
                  tune_batches=(1, 4), tune_budget_s=4, remeasure_window_s=1),
    "quick": Mode(crops_per_photo=16, eff_calibration_per_photo=3, eff_extra_variants=False, eff_inference_rounds=8,
                  vgg_calibration="max", vgg_calibration_images=16, vgg_check_images=28, npz_items=64,
                  datalist_repeats=3, engine_rounds=3, vgg_inference_rounds=12, profiled_runs=6,
                  tune_batches=(1, 4, 8), tune_budget_s=30, remeasure_window_s=4),
    "full": Mode(crops_per_photo=40, eff_calibration_per_photo=8, eff_extra_variants=True, eff_inference_rounds=20,
                 vgg_calibration="percentile", vgg_calibration_images=64, vgg_check_images=112, npz_items=64,
                 datalist_repeats=6, engine_rounds=3, vgg_inference_rounds=30, profiled_runs=6,
                 tune_batches=(1, 2, 4, 8, 16), tune_budget_s=120, remeasure_window_s=10),
}
BATCH = 8  # VGG11's batch through the engine and for inference alone


class EngineRuns:
    """Images/s of ``python -m engine.run`` over one datalist, each run with its own report file."""

    def __init__(self, datalist: Path, folder: Path):
        self.datalist, self.folder, self._count = datalist, folder, itertools.count()

    def rate(self, model: Path, *args) -> float:
        report = run_engine(self.datalist, model, self.folder / f"report_{next(self._count)}.json", *args)
        return report["throughput_qps"]


def efficientnet_variants(mode: Mode) -> dict[str, dict]:
    """The int8 builds measured, by name: their ``quantization`` settings."""
    variants = {RECOMMENDED: {"skip_layers": [0, -1]},
                BEST: {"skip_layers": [0, -1], "adaround": True, "float_fallback": 4}}
    if mode.eff_extra_variants:
        variants |= {"first/last layers float, float_fallback 4": {"skip_layers": [0, -1], "float_fallback": 4},
                     "all layers int8": {"skip_layers": []}}
    return variants


def agreement_rows(variant: str, groups: dict, report: dict, reference: np.ndarray, objects: np.ndarray) -> list:
    """The rows of one EfficientNet-Lite0 int8 build: agreement per photo group and margin
    bucket, logit SNR, what noise at that SNR would leave, build.json's check."""
    snr_db = report["check"]["output_snr_db"]
    prefix = f"efficientnet_lite0 int8 ({variant})"
    budget = report["check"]["error_budget"]
    return [
        {"name": f"{prefix} vs fp32 top-1 agreement, object photos",
         "value": 100 * groups["objects"]["agreement"], "unit": "%", "images": groups["objects"]["images"],
         "fp32_median_top1_prob": groups["objects_median_confidence"]},
        {"name": f"{prefix} vs fp32 top-1 agreement, texture/medical/space photos",
         "value": 100 * groups["others"]["agreement"], "unit": "%", "images": groups["others"]["images"],
         "fp32_median_top1_prob": groups["others_median_confidence"]},
        {"name": f"{prefix} vs fp32 top-1 agreement, fp32 top-1 prob > {CONFIDENT}",
         "value": 100 * groups["confident"]["agreement"], "unit": "%", "images": groups["confident"]["images"]},
        *({"name": f"{prefix} vs fp32 top-1 agreement, all photos, fp32 top-1 minus top-2 probability in {bucket}",
           "value": 100 * bucket_rate["agreement"], "unit": "%", "images": bucket_rate["images"]}
          for bucket, bucket_rate in groups["by_fp32_margin"].items() if bucket_rate["images"]),
        {"name": f"{prefix} logit SNR against fp32, all held-out photos",
         "value": snr_db, "unit": "dB", "images": report["check"]["images"]},
        {"name": f"efficientnet_lite0 fp32 logits plus Gaussian noise at the SNR of int8 ({variant}): "
                 "expected top-1 agreement, object photos (bench.agreement_model)",
         "value": 100 * expected_agreement(reference, snr_db, objects), "unit": "%",
         "all_photos": 100 * expected_agreement(reference, snr_db)},
        {"name": f"{prefix} build, all held-out photos (build.json)",
         "value": 100 * report["check"]["top1_agreement"], "unit": "% top-1 agreement",
         "top5_overlap": report["check"]["top5_overlap"],
         "calibration_images": report["calibration"]["images_used"], "build_s": report["time_s"]},
        *({"name": f"{prefix} logit SNR against fp32 with only the int8 {source.replace('_alone', '')} "
                   "(float arithmetic)",
           "value": budget[source]["output_snr_db"], "unit": "dB", "images": budget["images"]}
          for source in ("weights_alone", "activations_alone")),
    ]


def recommended_extras(found: Findings, model: Path, prepared: Path, groups: dict, reference: np.ndarray,
                       check_items: list[str], config) -> None:
    """The goal ratio of the recommended build, the SNR 99% needs, and the ceiling of every
    weight-side method (adaround, float fallback): the same build with all its weights back
    in float (from the model the build quantized, channels in the int8 model's order), only
    activations int8."""
    objects = object_photos(check_items)
    agreement = groups["objects"]["agreement"]
    found.ratios.append({"name": f"efficientnet_lite0 int8 ({RECOMMENDED})/fp32 top-1 agreement on object photos",
                         "value": agreement, "goal": ">= 0.99", "met": agreement >= 0.99, "readme": True})
    found.rows.append({"name": "efficientnet_lite0 logit SNR against fp32 that 99% expected top-1 agreement "
                               "on these object photos needs (Gaussian logit noise, bench.agreement_model)",
                       "value": snr_needed(reference, 0.99, objects), "unit": "dB", "images": int(objects.sum())})
    ceiling = activations_alone(onnx.load(str(model)), onnx.load(str(prepared)))
    ceiling_groups = agreement_by_group(reference, logits(ceiling, check_items, config, simulated=True), check_items)
    found.series[f"efficientnet_lite0_agreement, {RECOMMENDED}, int8 activations alone"] = ceiling_groups
    found.rows.append({"name": f"efficientnet_lite0 int8 ({RECOMMENDED}) with float weights (only activations "
                               "int8, float arithmetic) vs fp32 top-1 agreement, object photos",
                       "value": 100 * ceiling_groups["objects"]["agreement"], "unit": "%",
                       "images": ceiling_groups["objects"]["images"],
                       "all_photos": 100 * ceiling_groups["all"]["agreement"]})


def efficientnet_part(found: Findings, tmp: Path, mode: Mode) -> None:
    """Part 2: EfficientNet-Lite0 (trained), agreement of each int8 build with fp32 on the
    held-out photos, and every build's inference-only speed against the export as it is
    and against its fp32 build (which folds the export's computed "same" Pads into the
    convolutions as the int8 builds do, engine.builder.pad_folding)."""
    eff = export("efficientnet_lite0", tmp / "eff")
    fp32_folder = run_build(tmp, "eff_fp32", {"model": {"onnx": str(eff)}, "dtype": "fp32",
                                              "output": str(tmp / "deploy" / "fp32")})
    models = {"fp32 as exported": eff, "fp32": fp32_folder / "efficientnet_lite0.onnx"}
    config = ModelInfo.load(ModelInfo.path_for(eff)).data_config
    reference_items, reference = None, None
    for variant, quantization in efficientnet_variants(mode).items():
        output = tmp / "deploy" / "".join(c if c.isalnum() else "_" for c in variant)
        folder = run_build(tmp, "eff", {
            "model": {"onnx": str(eff)}, "dtype": "int8",
            "quantization": {"method": "percentile", "per_channel": True, **quantization},
            "calibration": {"path": str(tmp / "photos"), "count": mode.eff_calibration_per_photo * 14,
                            "batch_size": 8},
            "check": {"count": 10_000},
            "output": str(output)}, work_dir=output / "work")
        models[variant] = folder / "efficientnet_lite0.onnx"
        report = json.loads((folder / "build.json").read_text())
        check_items = report["check_items"]
        if check_items != reference_items:
            reference_items, reference = check_items, logits(eff, check_items, config)
        groups = agreement_by_group(reference, logits(models[variant], check_items, config), check_items)
        found.series[f"efficientnet_lite0_agreement, {variant}"] = groups
        found.rows += agreement_rows(variant, groups, report, reference, object_photos(check_items))
        if variant == RECOMMENDED:
            recommended_extras(found, models[variant], output / "work" / PREPARED_MODEL, groups, reference,
                               check_items, config)
        for step in ("adaround", "float_fallback"):
            if report["quantization"][step]:
                found.series[f"efficientnet_lite0_{step}, {variant}"] = report["quantization"][step]
    rates = inference_rates(models, 8, mode.eff_inference_rounds, THREADS)
    for tag in models:
        found.rows.append({"name": f"efficientnet_lite0 {tag if tag.startswith('fp32') else f'int8 ({tag})'} "
                                   f"onnxruntime inference only, batch 8, {THREADS} threads",
                           "value": rates[tag], "unit": "img/s", "rounds": rates[f"{tag}_rounds"]})
    found.ratios += [
        {"name": "efficientnet_lite0 fp32 build / fp32 as exported images/s, inference only (pads folded)",
         "value": rates["fp32"] / rates["fp32 as exported"], "goal": None, "met": None},
        {"name": f"efficientnet_lite0 int8 ({RECOMMENDED}) / fp32 build images/s, inference only",
         "value": rates[RECOMMENDED] / rates["fp32"], "goal": None, "met": None}]


def vgg_build(found: Findings, tmp: Path, mode: Mode) -> tuple[Path, Path]:
    """VGG11 exported and built to int8; its agreement row. Returns the fp32 and int8 models."""
    vgg = export("vgg11", tmp / "vgg")
    folder = run_build(tmp, "vgg", {
        "model": {"onnx": str(vgg)}, "dtype": "int8",
        "quantization": {"method": mode.vgg_calibration, "per_channel": True},
        "calibration": {"path": str(tmp / "photos"), "count": mode.vgg_calibration_images, "batch_size": 4},
        "check": {"count": mode.vgg_check_images}, "output": str(tmp / "deploy")})
    report = json.loads((folder / "build.json").read_text())
    found.rows.append({"name": f"vgg11 (random weights) int8 vs fp32 top-1 agreement "
                               f"({mode.vgg_calibration} calibration)",
                       "value": 100 * report["check"]["top1_agreement"], "unit": "%",
                       "images": report["check"]["images"], "top5_overlap": report["check"]["top5_overlap"],
                       "build_s": report["time_s"]})
    return vgg, folder / "vgg11.onnx"


def vgg_speed_part(found: Findings, engine: EngineRuns, tmp: Path, mode: Mode, models: dict) -> None:
    """Part 1: VGG11 int8 against fp32, through the engine (the goal), inference only, and
    in the convolution and matrix kernels alone (whose speed-up bounds the whole model's)."""
    def engine_rate(model: Path) -> float:
        return engine.rate(model, "-b", BATCH, "--threads", THREADS, "--workers", 1, "--warmup", BATCH)

    through_engine = alternate(engine_rate, models, mode.engine_rounds, pick=np.median)
    inference = inference_rates(models, BATCH, mode.vgg_inference_rounds, THREADS)
    for tag in ("fp32", "int8"):
        found.rows.append({"name": f"vgg11 {tag} engine end to end from npz, batch {BATCH}, {THREADS} threads",
                           "value": through_engine[tag], "unit": "img/s", "rounds": through_engine[f"{tag}_rounds"]})
        found.rows.append({"name": f"vgg11 {tag} onnxruntime inference only, batch {BATCH}, {THREADS} threads",
                           "value": inference[tag], "unit": "img/s", "rounds": inference[f"{tag}_rounds"]})
    speedup = through_engine["int8"] / through_engine["fp32"]
    found.ratios.append({"name": "vgg11 int8 / fp32 images/s through the engine", "value": speedup,
                         "goal": ">= 2.0", "met": speedup >= 2.0, "readme": True})
    found.ratios.append({"name": "vgg11 int8 / fp32 images/s, inference only",
                         "value": inference["int8"] / inference["fp32"], "goal": None, "met": None})
    split = kernel_split(models, BATCH, mode.profiled_runs, tmp, THREADS)
    found.series["vgg11_kernel_seconds_per_image"] = split
    for tag in ("fp32", "int8"):
        found.rows.append({"name": f"vgg11 {tag} convolution and matrix kernels, batch {BATCH} "
                                   "(onnxruntime profiler)", "value": 1000 * split[tag]["weighted"],
                           "unit": "ms/img", "other_kernels_ms": round(1000 * split[tag]["other"], 2)})
    found.ratios.append({"name": "vgg11 int8 / fp32 speed of the convolution and matrix kernels alone "
                                 "(onnxruntime profiler)",
                         "value": split["fp32"]["weighted"] / split["int8"]["weighted"], "goal": None, "met": None})


def tune_grid(mode: Mode) -> dict:
    return {"instances": [1, 2], "threads": [1, 2], "batch": list(mode.tune_batches)}


def autotune_part(found: Findings, mode: Mode, vgg_int8: Path) -> dict:
    """Part 3: the short sweep's pick against the exhaustive sweep's on the VGG11 int8 model,
    both re-measured back to back. Returns the short sweep's pick."""
    from engine.pipeline.autotune import Meter, Setting, autotune

    grid, budget = tune_grid(mode), mode.tune_budget_s
    t0 = time.perf_counter()
    short, short_table = autotune(vgg_int8, "cpu", grid, budget, verbose=False)
    short_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    full, full_table = autotune(vgg_int8, "cpu", grid, budget * 2, exhaustive=True, verbose=False)
    full_s = time.perf_counter() - t0
    picks = {"short": Setting(short["instances"], short["threads"], short["batch"]),
             "exhaustive": Setting(full["instances"], full["threads"], full["batch"])}

    def remeasure(setting: Setting) -> float:
        meter = Meter(vgg_int8, "cpu", window_s=mode.remeasure_window_s)
        try:
            return meter.measure(setting)
        finally:
            meter.close()

    again = alternate(remeasure, picks, mode.engine_rounds)
    tuned = again["short"] / again["exhaustive"]
    found.series["autotune"] = {"short_table": short_table, "exhaustive_table": full_table,
                                "short_pick": short, "exhaustive_pick": full, "remeasured": again}
    found.rows += [
        {"name": f"autotune short sweep pick {picks['short']}", "value": again["short"], "unit": "img/s",
         "settings_measured": len(short_table), "sweep_s": round(short_s, 1)},
        {"name": f"exhaustive sweep pick {picks['exhaustive']}", "value": again["exhaustive"],
         "unit": "img/s", "settings_measured": len(full_table), "sweep_s": round(full_s, 1)},
    ]
    found.ratios.append({"name": "autotune pick / exhaustive pick images/s (vgg11 int8, re-measured)",
                         "value": tuned, "goal": ">= 0.95", "met": tuned >= 0.95})
    return short


def auto_pick_part(found: Findings, engine: EngineRuns, mode: Mode, vgg: Path, vgg_int8: Path,
                   int8_pick: dict) -> None:
    """Part 4: int8 against fp32 through the engine, each at the setting ``--auto`` picks for it."""
    from engine.pipeline.autotune import Setting, autotune

    fp32_pick, _ = autotune(vgg, "cpu", tune_grid(mode), mode.tune_budget_s, verbose=False)
    auto_picks = {"fp32": (vgg, fp32_pick), "int8": (vgg_int8, int8_pick)}

    def engine_rate_at_pick(tag: str) -> float:
        model, pick = auto_picks[tag]
        return engine.rate(model, "-b", pick["batch"], "-i", pick["instances"], "--threads", pick["threads"],
                           "--workers", 1, "--warmup", pick["batch"] * pick["instances"])

    at_picks = alternate(engine_rate_at_pick, {tag: tag for tag in auto_picks}, mode.engine_rounds, pick=np.median)
    for tag, (_, pick) in auto_picks.items():
        setting = Setting(pick["instances"], pick["threads"], pick["batch"])
        found.rows.append({"name": f"vgg11 {tag} engine end to end from npz at its --auto pick {setting}",
                           "value": at_picks[tag], "unit": "img/s", "rounds": at_picks[f"{tag}_rounds"]})
    found.ratios.append({"name": "vgg11 int8 / fp32 images/s through the engine, each at its --auto pick",
                         "value": at_picks["int8"] / at_picks["fp32"], "goal": None, "met": None})


def suite_notes(mode: Mode) -> list[str]:
    return [
        f"{THREADS} threads on a {os.cpu_count()}-core machine shared with other work: models are measured in "
        "alternating rounds; inference-only and tuning figures are the best round, engine runs the median.",
        "VGG11 has seeded random weights (no trained VGG weights install offline); its agreement figure "
        "measures quantization noise on a net whose logits are nearly tied, not a deployable accuracy.",
        "int8: onnxruntime QDQ, uint8 activations, int8 per-channel weights in ranges where VPMADDUBSW's "
        "int16 pairs cannot saturate, because this CPU has AVX2 without VNNI (engine.builder.weight_ranges).",
        f"EfficientNet-Lite0 photos: {mode.crops_per_photo} crops of each of {len(OBJECT_PHOTOS)} object photos "
        f"({', '.join(OBJECT_PHOTOS)}) and {len(OTHER_PHOTOS)} texture/medical/space photos; calibration "
        "round-robin over the photos, agreement on the held-out crops only.",
    ] + (["smoke mode: tiny sample counts, figures are not meaningful"] if SMOKE else [])


def run(quick: bool = True) -> dict:
    mode = MODES["smoke" if SMOKE else "quick" if quick else "full"]
    found = Findings()
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        tmp = Path(tmp)
        make_photo_set(tmp / "photos", mode.crops_per_photo)
        efficientnet_part(found, tmp, mode)
        vgg, vgg_int8 = vgg_build(found, tmp, mode)
        # Runs of 24+ batches: with a handful, where the clock starts (the batch that
        # crosses --warmup) moved int8 figures by 10% between rounds.
        datalist = tmp / "list.txt"
        write_datalist(datalist, make_npz_set(tmp / "npz", mode.npz_items) * mode.datalist_repeats)
        engine = EngineRuns(datalist, tmp)
        vgg_speed_part(found, engine, tmp, mode, {"fp32": vgg, "int8": vgg_int8})
        int8_pick = autotune_part(found, mode, vgg_int8)
        auto_pick_part(found, engine, mode, vgg, vgg_int8, int8_pick)
    found.notes += suite_notes(mode)
    return found.result("build", "int8 vs fp32 (speed, agreement) and auto-tuning vs exhaustive sweep")


if __name__ == "__main__":
    json.dump(run(quick="--full" not in sys.argv), sys.stdout, indent=1, default=str)
