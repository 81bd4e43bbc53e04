"""The build driver (``python -m engine.build``): from the source model to a deploy folder.

The folder is named like the seed compiler's, ``<model>-<dtype>-<method>-3_224_224-ort``,
and holds ``<model>.onnx``, its model-info JSON (so ``engine.run --onnx`` needs nothing
else) and ``build.json``: method, images used, classes covered, time taken and an
accuracy check of the built model against the fp32 one on held-out images (never the
calibration images).

int8 goes through :mod:`engine.builder.quantize`. fp16 converts weights and activations
to float16 and keeps float32 inputs and outputs, so the engine feeds every model the
same way. bf16 keeps the float32 graph and records bf16 as its precision: OpenVINO runs it
in bf16 (the folder ends in ``-openvino``; onnxruntime, which has no bf16 CPU kernels,
refuses it), and the check runs it there against onnxruntime fp32.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from engine.backends.ort import PRECISION_METADATA_KEY
from engine.builder.accuracy import accuracy_check, int8_error_budget
from engine.builder.config import BuildConfig, check_preprocess_ops
from engine.builder.image_sets import ImageSets, choose_images
from engine.builder.quantize import PREPARED_MODEL, quantize_int8
from engine.builder.source_model import append_softmax, check_inputs_match, fixed_batch, source_model
from engine.builder.vdsp_export import write_vdsp_params
from engine.builder.verified_rewrites import fold_source_pads
from engine.data.dataconfig import ModelInfo
from engine.data.extras import require

# The runtime a deploy folder is for, the last part of its name: bf16 runs on OpenVINO.
BACKEND_SUFFIX = {"bf16": "openvino"}
# The batch of the random input pad folding is verified on, for a model with a dynamic batch.
REWRITE_SAMPLE_BATCH = 2


def deploy_folder_name(model: str, cfg: BuildConfig, input_size) -> str:
    shape = "_".join(str(d) for d in input_size)
    return f"{model}-{cfg.dtype}-{cfg.method_label}-{shape}-{BACKEND_SUFFIX.get(cfg.dtype, 'ort')}"


def set_precision(path: Path, precision: str) -> None:
    """Record ``precision`` in the model's metadata, where the ort backend reads it."""
    model = onnx.load(str(path))
    entries = [p for p in model.metadata_props if p.key != PRECISION_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(entries)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in entries}, PRECISION_METADATA_KEY: precision})
    onnx.save(model, str(path))


def convert_fp16(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def _warn(message: str) -> None:
    print(f"engine.build: {message}", file=sys.stderr)


def _check(cfg: BuildConfig, reference: Path, built: Path, images: ImageSets, info: ModelInfo, work: Path,
           threads: int, progress: bool, timings: dict) -> dict:
    """The accuracy check of ``built`` (with its error budget for int8), or why there is none."""
    if not images.check:
        if cfg.check.count:
            _warn(f"warning: no accuracy check of the built model: {images.no_check}")
        return {"images": 0, "skipped": images.no_check}
    t = time.perf_counter()
    check = accuracy_check(reference, built, images.check, info.data_config, images.check_labels,
                           threads=threads, progress=progress, backend=cfg.check.backend)
    check["backend"] = cfg.check.backend
    timings["check_s"] = time.perf_counter() - t
    if cfg.dtype == "int8":
        t = time.perf_counter()
        check["error_budget"] = int8_error_budget(work / PREPARED_MODEL, built, images.check, info.data_config,
                                                  threads=threads)
        timings["error_budget_s"] = time.perf_counter() - t
    return check


def _report(cfg: BuildConfig, info: ModelInfo, built: Path, images: ImageSets, rewrites: dict,
            quantization: dict | None, check: dict) -> dict:
    """What build.json says of the build (its time is added by :func:`build`)."""
    class_of = images.class_of
    return {
        "model": info.name,
        "library": info.library,
        "weights": info.weights,
        "dtype": cfg.dtype,
        "method": cfg.method_label,
        "calibration_method": cfg.quantization.method,
        "graph_rewrites": rewrites,
        "quantization": quantization,
        "softmax": cfg.softmax,
        "model_file": built.name,
        "model_bytes": built.stat().st_size,
        "calibration": {
            "path": None if cfg.calibration.path is None else str(cfg.calibration.path),
            "images_used": len(images.calibration),
            "classes_covered": len({class_of(i) for i in images.calibration}),
            "classes_present": len({class_of(i) for i in images.pool}),
            "held_out_for_check": images.held_out,
            "items": images.calibration,
        },
        "check": check,
        "check_items": images.check,
        "skipped_images": images.skipped,
        "ignored_config_keys": cfg.ignored,
    }


def _deploy_info(cfg: BuildConfig, info: ModelInfo, built: Path, softmax_done: bool) -> None:
    extra = dict(info.extra)
    extra.update({"precision": cfg.dtype, "softmax": cfg.softmax or softmax_done,
                  "built_from": str(cfg.model.onnx or f"{info.library} {info.name}")})
    replace(info, model_file=built.name, extra=extra).save(ModelInfo.path_for(built))


def _build_in(cfg: BuildConfig, work: Path, progress: bool, timings: dict) -> tuple[Path, dict]:
    """The build in the work folder ``work``; returns the built model and its report."""
    threads = max(1, os.cpu_count() or 1)
    t = time.perf_counter()
    src, info = source_model(cfg, work)
    timings["source_s"] = time.perf_counter() - t
    check_inputs_match(cfg, info)
    check_preprocess_ops(cfg.preprocess_ops, info.data_config, cfg.key("preprocess_ops"))
    softmax_done = bool(info.extra.get("softmax"))
    if cfg.softmax and not softmax_done:
        append_softmax(src, work / "with_softmax.onnx")
        src = work / "with_softmax.onnx"
    reference = src
    batch = fixed_batch(info)
    t = time.perf_counter()
    sample = np.random.default_rng(0).standard_normal((batch or REWRITE_SAMPLE_BATCH, *info.data_config.input_size))
    src, rewrites = fold_source_pads(src, info.input_name, sample.astype(np.float32), work)
    timings["fold_pads_s"] = time.perf_counter() - t

    images = choose_images(cfg)
    if images.held_out:
        _warn(f"note: {images.held_out['why']}")
    folder = cfg.output / deploy_folder_name(info.name, cfg, info.data_config.input_size)
    folder.mkdir(parents=True, exist_ok=True)
    built = folder / f"{info.name}.onnx"
    t = time.perf_counter()
    quantization = None
    if cfg.dtype == "int8":
        quantization = quantize_int8(src, built, images.calibration, info, cfg, work,
                                     batch_size=batch or cfg.calibration.batch_size, threads=threads,
                                     progress=progress)
    elif cfg.dtype == "fp16":
        convert_fp16(src, built)
    else:
        shutil.copyfile(src, built)
    set_precision(built, cfg.dtype)
    timings["convert_s"] = time.perf_counter() - t
    check = _check(cfg, reference, built, images, info, work, threads, progress, timings)
    _deploy_info(cfg, info, built, softmax_done)
    vdsp_file, not_expressed = write_vdsp_params(folder, info.library, info.name, info.data_config)
    for line in not_expressed:
        _warn(f"note: {vdsp_file.name} cannot say: {line}")
    report = _report(cfg, info, built, images, rewrites, quantization, check)
    report["vdsp_params"] = {"file": vdsp_file.name, "not_expressed": not_expressed}
    return built, report


def build(cfg: BuildConfig, *, progress: bool = True, work_dir: Path | None = None) -> Path:
    """Run the build described by ``cfg``; returns the deploy folder. Intermediate files
    go to a temporary folder, or to ``work_dir``, which keeps them: among them
    ``prepared.onnx``, the float model an int8 model was quantized from, its channels in
    the int8 model's order (``engine.builder.channel_pairing``)."""
    if cfg.check.backend == "openvino":
        require("openvino", f"{cfg.key('dtype')} bf16" if cfg.dtype == "bf16" else cfg.key("check.backend"))
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="engine-build-") if work_dir is None
          else contextlib.nullcontext(str(work_dir))) as tmp:
        built, report = _build_in(cfg, Path(tmp), progress, timings)
    report["time_s"] = round(time.perf_counter() - started, 3)
    report["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    (built.parent / "build.json").write_text(json.dumps(report, indent=2) + "\n")
    return built.parent
