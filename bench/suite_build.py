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

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import yaml
from PIL import Image

from bench.agreement_model import expected_agreement, snr_needed
from bench.suite_pipeline import make_npz_set, run_engine
from engine.backends import open_backend
from engine.builder.build import build
from engine.builder.calibration import iter_batches
from engine.builder.config import load_config
from engine.builder.error_budget import activations_alone, simulated_outputs
from engine.builder.quantize import PREPARED_MODEL
from engine.data.dataconfig import ModelInfo
from engine.data.datalist import write_datalist

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
OBJECT_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "grace_hopper")
OTHER_PHOTOS = ("hubble_deep_field", "retina", "immunohistochemistry", "brick", "grass", "gravel",
                "camera", "coins", "moon")
THREADS = 2
CONFIDENT = 0.5
MARGIN_EDGES = (0.0, 0.05, 0.2, 0.4, 1.0)  # buckets of fp32's top-1 minus top-2 probability
RECOMMENDED = "first/last layers float"  # the EfficientNet-Lite0 variant that carries the goal
BEST = "first/last layers float, adaround, float_fallback 4"  # the most accurate build offered


def photo(name: str) -> Image.Image:
    if name == "grace_hopper":
        from matplotlib import cbook

        return Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    import skimage.data

    array = getattr(skimage.data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]))


def make_photo_set(folder: Path, per_photo: int, seed: int = 0) -> None:
    """``per_photo`` JPEG crops (scale, aspect, flip, brightness varied) of every photo,
    one folder per photo so calibration and the check are spread over all of them."""
    rng = np.random.default_rng(seed)
    for name in OBJECT_PHOTOS + OTHER_PHOTOS:
        image = photo(name)
        w, h = image.size
        for j in range(per_photo):
            scale = rng.uniform(0.55, 1.0)
            cw = int(w * scale)
            ch = min(h, int(h * scale * rng.uniform(0.85, 1.15)))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = image.crop((x0, y0, x0 + cw, y0 + ch))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop = Image.fromarray(np.clip(np.asarray(crop) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8))
            path = folder / name / f"{name}_{j:03d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            crop.save(path, quality=92)


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


def object_photos(items: list[str]) -> np.ndarray:
    """Which of ``items`` are crops of the photos of objects ImageNet has classes for."""
    return np.asarray([Path(i).parent.name in OBJECT_PHOTOS for i in items])


def agreement_by_group(a: np.ndarray, b: np.ndarray, items: list[str]) -> dict:
    """Top-1 agreement of outputs ``b`` with reference outputs ``a`` (rows: ``items``)
    per photo group and on the images fp32 is confident about."""
    p = np.exp(a - a.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top2 = np.sort(p, axis=1)[:, -2:]
    confidence, margin = top2[:, 1], top2[:, 1] - top2[:, 0]
    same = a.argmax(axis=1) == b.argmax(axis=1)
    objects = object_photos(items)

    def rate(mask):
        return {"agreement": float(same[mask].mean()) if mask.any() else None, "images": int(mask.sum())}

    return {"objects": rate(objects), "others": rate(~objects), "all": rate(np.ones_like(objects)),
            "confident": rate(confidence > CONFIDENT),
            "by_fp32_margin": margin_buckets(margin, rate),
            "others_median_confidence": float(np.median(confidence[~objects])) if (~objects).any() else None,
            "objects_median_confidence": float(np.median(confidence[objects])) if objects.any() else None}


def margin_buckets(margin: np.ndarray, rate) -> dict:
    """``rate(mask)`` for each bucket of ``MARGIN_EDGES``, keyed "[lo, hi)" (the last one closed)."""
    buckets = {}
    last = len(MARGIN_EDGES) - 2
    for i, (lo, hi) in enumerate(zip(MARGIN_EDGES, MARGIN_EDGES[1:])):
        upper = margin <= hi if i == last else margin < hi
        buckets[f"[{lo}, {hi}{']' if i == last else ')'}"] = rate((margin >= lo) & upper)
    return buckets


def inference_rates(models: dict, batch: int, rounds: int) -> dict:
    """Inference-only images/s of each model: sessions stay open and take turns, two runs
    per turn, and each model keeps its best turn (see :func:`alternate`)."""
    backends = {k: open_backend("ort", m, threads=THREADS) for k, m in models.items()}
    x = np.random.default_rng(0).standard_normal((batch, *next(iter(backends.values())).input_shape))
    x = x.astype(np.float32)
    for b in backends.values():
        b.run(x)

    def turn(backend) -> float:
        t0 = time.perf_counter()
        backend.run(x)
        backend.run(x)
        return 2 * batch / (time.perf_counter() - t0)

    rates = alternate(turn, backends, rounds)
    for b in backends.values():
        b.close()
    return rates


WEIGHTED_KERNELS = ("Conv", "FusedConv", "QLinearConv", "ConvInteger", "Gemm", "FusedGemm", "QGemm",
                    "MatMul", "FusedMatMul", "MatMulInteger", "QLinearMatMul")


def kernel_split(models: dict, batch: int, runs: int, folder: Path) -> dict:
    """Per model, seconds per image in the convolution/matrix kernels and in all other
    kernels over ``runs`` batches (onnxruntime's profiler; the runs alternate between models)."""
    backends = {k: open_backend("ort", m, threads=THREADS, profile=folder / f"profile_{k}") for k, m in models.items()}
    x = np.random.default_rng(0).standard_normal((batch, *next(iter(backends.values())).input_shape))
    x = x.astype(np.float32)
    for _ in range(runs):
        for b in backends.values():
            b.run(x)
    split = {}
    for key, backend in backends.items():
        seconds = backend.kernel_seconds()
        weighted = sum(t for op, t in seconds.items() if op in WEIGHTED_KERNELS)
        split[key] = {"weighted": weighted / (runs * batch), "other": (sum(seconds.values()) - weighted) / (runs * batch)}
        backend.close()
    return split


def alternate(measure, models: dict, rounds: int, pick=max) -> dict:
    """Best (``pick=max``) of ``rounds`` for each model, measured in turn so background
    load hits all. Interference only ever slows a short timed run down, so the best
    round is the least disturbed one; whole engine runs use the median (their clock
    starts after the warm-up items, and items already in flight then inflate a round).
    """
    seen = {k: [] for k in models}
    for _ in range(rounds):
        for key, model in models.items():
            seen[key].append(measure(model))
    return {k: float(pick(v)) for k, v in seen.items()} | {f"{k}_rounds": [round(r, 2) for r in v] for k, v in seen.items()}


def run(quick: bool = True) -> dict:
    from engine.pipeline.autotune import Meter, Setting, autotune

    rows, ratios, notes, series = [], [], [], {}
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        tmp = Path(tmp)
        per_photo = 4 if SMOKE else (16 if quick else 40)
        make_photo_set(tmp / "photos", per_photo)

        # 2. EfficientNet-Lite0 (trained): agreement of int8 with fp32 on held-out photos.
        # First and last layers in float is the recommended setting (quantization.skip_layers);
        # beside it the same with learned rounding and the float fallback of the 4 int8 layers
        # that cost the most; the full run also measures the fallback alone and every layer in int8.
        eff = export("efficientnet_lite0", tmp / "eff")
        calib = 2 if SMOKE else (3 if quick else 8)
        variants = ({RECOMMENDED: {"skip_layers": [0, -1]},
                     BEST: {"skip_layers": [0, -1], "adaround": True, "float_fallback": 4}}
                    | ({} if quick else {"first/last layers float, float_fallback 4":
                                         {"skip_layers": [0, -1], "float_fallback": 4},
                                         "all layers int8": {"skip_layers": []}}))
        # Speed references: the export as it is and its fp32 build, which folds the export's
        # computed "same" Pads into the convolutions as the int8 builds do (engine.builder.pad_folding).
        fp32_folder = run_build(tmp, "eff_fp32", {"model": {"onnx": str(eff)}, "dtype": "fp32",
                                                  "output": str(tmp / "deploy" / "fp32")})
        eff_models = {"fp32 as exported": eff, "fp32": fp32_folder / "efficientnet_lite0.onnx"}
        config = ModelInfo.load(ModelInfo.path_for(eff)).data_config
        reference_items, reference = None, None
        for variant, quantization in variants.items():
            output = tmp / "deploy" / "".join(c if c.isalnum() else "_" for c in variant)
            eff_folder = run_build(tmp, "eff", {
                "model": {"onnx": str(eff)}, "dtype": "int8",
                "quantization": {"method": "percentile", "per_channel": True, **quantization},
                "calibration": {"path": str(tmp / "photos"), "count": calib * 14, "batch_size": 8},
                "check": {"count": 10_000},
                "output": str(output)}, work_dir=output / "work")
            eff_models[variant] = eff_folder / "efficientnet_lite0.onnx"
            eff_report = json.loads((eff_folder / "build.json").read_text())
            check_items = eff_report["check_items"]
            if check_items != reference_items:
                reference_items, reference = check_items, logits(eff, check_items, config)
            groups = agreement_by_group(reference, logits(eff_models[variant], check_items, config), check_items)
            series[f"efficientnet_lite0_agreement, {variant}"] = groups
            objects = object_photos(check_items)
            snr_db = eff_report["check"]["output_snr_db"]
            rows += [
                {"name": f"efficientnet_lite0 int8 ({variant}) vs fp32 top-1 agreement, object photos",
                 "value": 100 * groups["objects"]["agreement"], "unit": "%", "images": groups["objects"]["images"],
                 "fp32_median_top1_prob": groups["objects_median_confidence"]},
                {"name": f"efficientnet_lite0 int8 ({variant}) vs fp32 top-1 agreement, texture/medical/space photos",
                 "value": 100 * groups["others"]["agreement"], "unit": "%", "images": groups["others"]["images"],
                 "fp32_median_top1_prob": groups["others_median_confidence"]},
                {"name": f"efficientnet_lite0 int8 ({variant}) vs fp32 top-1 agreement, fp32 top-1 prob > {CONFIDENT}",
                 "value": 100 * groups["confident"]["agreement"], "unit": "%",
                 "images": groups["confident"]["images"]},
                *({"name": f"efficientnet_lite0 int8 ({variant}) vs fp32 top-1 agreement, all photos, "
                           f"fp32 top-1 minus top-2 probability in {bucket}",
                   "value": 100 * bucket_rate["agreement"], "unit": "%", "images": bucket_rate["images"]}
                  for bucket, bucket_rate in groups["by_fp32_margin"].items() if bucket_rate["images"]),
                {"name": f"efficientnet_lite0 int8 ({variant}) logit SNR against fp32, all held-out photos",
                 "value": snr_db, "unit": "dB", "images": eff_report["check"]["images"]},
                {"name": f"efficientnet_lite0 fp32 logits plus Gaussian noise at the SNR of int8 ({variant}): "
                         "expected top-1 agreement, object photos (bench.agreement_model)",
                 "value": 100 * expected_agreement(reference, snr_db, objects), "unit": "%",
                 "all_photos": 100 * expected_agreement(reference, snr_db)},
                {"name": f"efficientnet_lite0 int8 ({variant}) build, all held-out photos (build.json)",
                 "value": 100 * eff_report["check"]["top1_agreement"], "unit": "% top-1 agreement",
                 "top5_overlap": eff_report["check"]["top5_overlap"],
                 "calibration_images": eff_report["calibration"]["images_used"], "build_s": eff_report["time_s"]},
            ]
            budget = eff_report["check"]["error_budget"]
            rows += [{"name": f"efficientnet_lite0 int8 ({variant}) logit SNR against fp32 with only the int8 "
                              f"{source.replace('_alone', '')} (float arithmetic)",
                      "value": budget[source]["output_snr_db"], "unit": "dB", "images": budget["images"]}
                     for source in ("weights_alone", "activations_alone")]
            if variant == RECOMMENDED:
                agreement = groups["objects"]["agreement"]
                ratios.append({"name": f"efficientnet_lite0 int8 ({variant})/fp32 top-1 agreement on object photos",
                               "value": agreement, "goal": ">= 0.99", "met": agreement >= 0.99})
                rows.append({"name": "efficientnet_lite0 logit SNR against fp32 that 99% expected top-1 agreement "
                                     "on these object photos needs (Gaussian logit noise, bench.agreement_model)",
                             "value": snr_needed(reference, 0.99, objects), "unit": "dB",
                             "images": int(objects.sum())})
                # The ceiling of every weight-side method (adaround, float fallback): the
                # same build with all its weights back in float, only activations int8.
                # Float weights from the model the build quantized (channels in the int8 model's order).
                prepared = output / "work" / PREPARED_MODEL
                ceiling = activations_alone(onnx.load(str(eff_models[variant])), onnx.load(str(prepared)))
                ceiling_groups = agreement_by_group(reference, logits(ceiling, check_items, config, simulated=True),
                                                    check_items)
                series[f"efficientnet_lite0_agreement, {variant}, int8 activations alone"] = ceiling_groups
                rows.append({"name": f"efficientnet_lite0 int8 ({variant}) with float weights (only activations "
                                     "int8, float arithmetic) vs fp32 top-1 agreement, object photos",
                             "value": 100 * ceiling_groups["objects"]["agreement"], "unit": "%",
                             "images": ceiling_groups["objects"]["images"],
                             "all_photos": 100 * ceiling_groups["all"]["agreement"]})
            for step in ("adaround", "float_fallback"):
                if eff_report["quantization"][step]:
                    series[f"efficientnet_lite0_{step}, {variant}"] = eff_report["quantization"][step]
        eff_rates = inference_rates(eff_models, 8, 2 if SMOKE else (8 if quick else 20))
        for tag in eff_models:
            rows.append({"name": f"efficientnet_lite0 {tag if tag.startswith('fp32') else f'int8 ({tag})'} "
                                 f"onnxruntime inference only, batch 8, {THREADS} threads",
                         "value": eff_rates[tag], "unit": "img/s", "rounds": eff_rates[f"{tag}_rounds"]})
        ratios += [
            {"name": "efficientnet_lite0 fp32 build / fp32 as exported images/s, inference only (pads folded)",
             "value": eff_rates["fp32"] / eff_rates["fp32 as exported"], "goal": None, "met": None},
            {"name": f"efficientnet_lite0 int8 ({RECOMMENDED}) / fp32 build images/s, inference only",
             "value": eff_rates[RECOMMENDED] / eff_rates["fp32"], "goal": None, "met": None}]

        # 1. VGG11: int8 vs fp32 images/s through the engine
        vgg = export("vgg11", tmp / "vgg")
        method = "max" if quick else "percentile"
        vgg_folder = run_build(tmp, "vgg", {
            "model": {"onnx": str(vgg)}, "dtype": "int8",
            "quantization": {"method": method, "per_channel": True},
            "calibration": {"path": str(tmp / "photos"), "count": 4 if SMOKE else (16 if quick else 64),
                            "batch_size": 4},
            "check": {"count": 8 if SMOKE else (28 if quick else 112)}, "output": str(tmp / "deploy")})
        vgg_int8 = vgg_folder / "vgg11.onnx"
        vgg_report = json.loads((vgg_folder / "build.json").read_text())
        rows.append({"name": f"vgg11 (random weights) int8 vs fp32 top-1 agreement ({method} calibration)",
                     "value": 100 * vgg_report["check"]["top1_agreement"], "unit": "%",
                     "images": vgg_report["check"]["images"], "top5_overlap": vgg_report["check"]["top5_overlap"],
                     "build_s": vgg_report["time_s"]})

        # Runs of 24+ batches: with a handful, where the clock starts (the batch that
        # crosses --warmup) moved int8 figures by 10% between rounds.
        items = make_npz_set(tmp / "npz", 24 if SMOKE else 64)
        datalist = tmp / "list.txt"
        write_datalist(datalist, items * (1 if SMOKE else (3 if quick else 6)))
        batch = 8
        counter = iter(range(1000))

        def engine_rate(model: Path) -> float:
            report = run_engine(datalist, model, tmp / f"report_{next(counter)}.json", "-b", batch,
                                "--threads", THREADS, "--workers", 1, "--warmup", batch)
            return report["throughput_qps"]

        rounds = 1 if SMOKE else 3
        through_engine = alternate(engine_rate, {"fp32": vgg, "int8": vgg_int8}, rounds, pick=np.median)
        inference = inference_rates({"fp32": vgg, "int8": vgg_int8}, batch, 2 if SMOKE else (12 if quick else 30))
        for tag in ("fp32", "int8"):
            rows.append({"name": f"vgg11 {tag} engine end to end from npz, batch {batch}, {THREADS} threads",
                         "value": through_engine[tag], "unit": "img/s", "rounds": through_engine[f"{tag}_rounds"]})
            rows.append({"name": f"vgg11 {tag} onnxruntime inference only, batch {batch}, {THREADS} threads",
                         "value": inference[tag], "unit": "img/s", "rounds": inference[f"{tag}_rounds"]})
        speedup = through_engine["int8"] / through_engine["fp32"]
        ratios.append({"name": "vgg11 int8 / fp32 images/s through the engine", "value": speedup,
                       "goal": ">= 2.0", "met": speedup >= 2.0})
        ratios.append({"name": "vgg11 int8 / fp32 images/s, inference only",
                       "value": inference["int8"] / inference["fp32"], "goal": None, "met": None})
        # Where the time goes: the int8 speed-up of the convolution kernels alone bounds the whole model's.
        split = kernel_split({"fp32": vgg, "int8": vgg_int8}, batch, 2 if SMOKE else 6, tmp)
        series["vgg11_kernel_seconds_per_image"] = split
        for tag in ("fp32", "int8"):
            rows.append({"name": f"vgg11 {tag} convolution and matrix kernels, batch {batch} "
                                 "(onnxruntime profiler)", "value": 1000 * split[tag]["weighted"], "unit": "ms/img",
                         "other_kernels_ms": round(1000 * split[tag]["other"], 2)})
        ratios.append({"name": "vgg11 int8 / fp32 speed of the convolution and matrix kernels alone "
                               "(onnxruntime profiler)",
                       "value": split["fp32"]["weighted"] / split["int8"]["weighted"], "goal": None, "met": None})

        # 3. autotune (short sweep) vs exhaustive sweep, on the VGG11 int8 model
        grid = {"instances": [1, 2], "threads": [1, 2],
                "batch": [1, 4] if SMOKE else ([1, 4, 8] if quick else [1, 2, 4, 8, 16])}
        budget = 4 if SMOKE else (30 if quick else 120)
        t0 = time.perf_counter()
        short, short_table = autotune(vgg_int8, "cpu", grid, budget, verbose=False)
        short_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full, full_table = autotune(vgg_int8, "cpu", grid, budget * 2, exhaustive=True, verbose=False)
        full_s = time.perf_counter() - t0
        picks = {"short": Setting(short["instances"], short["threads"], short["batch"]),
                 "exhaustive": Setting(full["instances"], full["threads"], full["batch"])}
        window = 1 if SMOKE else (4 if quick else 10)

        def remeasure(setting: Setting) -> float:
            meter = Meter(vgg_int8, "cpu", window_s=window)
            try:
                return meter.measure(setting)
            finally:
                meter.close()

        again = alternate(remeasure, picks, rounds)
        tuned = again["short"] / again["exhaustive"]
        series["autotune"] = {"short_table": short_table, "exhaustive_table": full_table,
                              "short_pick": short, "exhaustive_pick": full, "remeasured": again}
        rows += [
            {"name": f"autotune short sweep pick {picks['short']}", "value": again["short"], "unit": "img/s",
             "settings_measured": len(short_table), "sweep_s": round(short_s, 1)},
            {"name": f"exhaustive sweep pick {picks['exhaustive']}", "value": again["exhaustive"],
             "unit": "img/s", "settings_measured": len(full_table), "sweep_s": round(full_s, 1)},
        ]
        ratios.append({"name": "autotune pick / exhaustive pick images/s (vgg11 int8, re-measured)",
                       "value": tuned, "goal": ">= 0.95", "met": tuned >= 0.95})

        # 4. int8 vs fp32 through the engine, each at the setting --auto picks for it
        fp32_pick, _ = autotune(vgg, "cpu", grid, budget, verbose=False)
        auto_picks = {"fp32": (vgg, fp32_pick), "int8": (vgg_int8, short)}

        def engine_rate_at_pick(tag: str) -> float:
            model, pick = auto_picks[tag]
            report = run_engine(datalist, model, tmp / f"report_{next(counter)}.json", "-b", pick["batch"],
                                "-i", pick["instances"], "--threads", pick["threads"], "--workers", 1,
                                "--warmup", pick["batch"] * pick["instances"])
            return report["throughput_qps"]

        at_picks = alternate(engine_rate_at_pick, {tag: tag for tag in auto_picks}, rounds, pick=np.median)
        for tag, (_, pick) in auto_picks.items():
            setting = Setting(pick["instances"], pick["threads"], pick["batch"])
            rows.append({"name": f"vgg11 {tag} engine end to end from npz at its --auto pick {setting}",
                         "value": at_picks[tag], "unit": "img/s", "rounds": at_picks[f"{tag}_rounds"]})
        auto_speedup = at_picks["int8"] / at_picks["fp32"]
        ratios.append({"name": "vgg11 int8 / fp32 images/s through the engine, each at its --auto pick",
                       "value": auto_speedup, "goal": None, "met": None})

    notes += [
        f"{THREADS} threads on a {os.cpu_count()}-core machine shared with other work: models are measured in "
        "alternating rounds; inference-only and tuning figures are the best round, engine runs the median.",
        "VGG11 has seeded random weights (no trained VGG weights install offline); its agreement figure "
        "measures quantization noise on a net whose logits are nearly tied, not a deployable accuracy.",
        "int8: onnxruntime QDQ, uint8 activations, int8 per-channel weights in ranges where VPMADDUBSW's "
        "int16 pairs cannot saturate, because this CPU has AVX2 without VNNI (engine.builder.weight_ranges).",
        f"EfficientNet-Lite0 photos: {per_photo} crops of each of {len(OBJECT_PHOTOS)} object photos "
        f"({', '.join(OBJECT_PHOTOS)}) and {len(OTHER_PHOTOS)} texture/medical/space photos; calibration "
        "round-robin over the photos, agreement on the held-out crops only.",
    ]
    if SMOKE:
        notes.append("smoke mode: tiny sample counts, figures are not meaningful")
    return {"suite": "build", "title": "int8 vs fp32 (speed, agreement) and auto-tuning vs exhaustive sweep",
            "rows": rows, "ratios": ratios, "notes": notes, "series": series}


if __name__ == "__main__":
    json.dump(run(quick="--full" not in sys.argv), sys.stdout, indent=1, default=str)
