"""Build a deploy folder (fp32, fp16, bf16 or int8) from a YAML config.

    python -m engine.build CONFIG.yaml [--output DIR] [--no-progress]

The folder is named like the seed compiler's, ``<model>-<dtype>-<method>-3_224_224-ort``,
and holds ``<model>.onnx``, its model-info JSON (so ``engine.run --onnx`` needs nothing
else) and ``build.json``: method, images used, classes covered, time taken and an
accuracy check of the built model against the fp32 one on held-out images (never the
calibration images).

int8 goes through onnxruntime's static quantization in QDQ format with per-channel
weights; see :func:`int8_types` for the data types and ``reduce_range`` chosen for the
CPU. fp16 converts weights and activations to float16 and keeps float32 inputs and
outputs, so the engine feeds every model the same way.

The config's paths (model, weights, calibration and check images, labels, output) and
its zoo name are checked before the model is exported or loaded. A calibration or check
image that does not decode is skipped and listed, as engine.run does.

Exit status: 0 built, 3 built with some images skipped (each listed, in build.json too),
2 usage error (a bad config, a missing path, an unknown model), 1 the build failed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from engine.builder.accuracy import ERROR_BUDGET_HINTS
from engine.builder.build import build
from engine.builder.config import BuildConfig, load_config
from engine.builder.source_model import BuildError
from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.extras import require
from engine.models.catalog import UnknownModelError
from engine.models.library_models import resolve_model_ref

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.build", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="build config (YAML); see engine/builder/config.py for the keys")
    p.add_argument("--output", help="folder to create the deploy folder in (overrides the config's output)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--work-dir", help="keep the intermediate files in this folder, among them prepared.onnx: the "
                                      "float model an int8 model was quantized from, channels in its order")
    return p


def check_config(cfg: BuildConfig) -> None:
    """What can be refused before the model is exported or loaded (seconds, for a zoo model)."""
    if cfg.model.onnx is None:
        require("torch", f"{cfg.key('model.name')}: {cfg.model.name} (a zoo model, exported first)")
        resolve_model_ref(cfg.model.name, cfg.model.library)
    if cfg.quantization.adaround:
        require("torch", cfg.key("quantization.adaround"))
    for key, path in (("model.onnx", cfg.model.onnx), ("model.weights", cfg.model.weights),
                      ("calibration.labels", cfg.calibration.labels), ("check.labels", cfg.check.labels)):
        if path is not None:
            arg_checks.input_file(f"{cfg.key(key)}:", path)
    for key, path in (("calibration.path", cfg.calibration.path), ("check.path", cfg.check.path)):
        if path is not None and not Path(path).exists():
            raise UsageError(f"{cfg.key(key)}: {path}: no such folder or datalist")
    arg_checks.check_output_dir(f"{cfg.key('output')}:", cfg.output)


def quiet_build(cfg: BuildConfig, work_dir: Path | None) -> Path:
    """The build with onnxruntime's calibration chatter (prints and log warnings) silenced."""
    import onnxruntime

    root = logging.getLogger()
    level = root.level
    onnxruntime.set_default_logger_severity(3)
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return build(cfg, progress=False, work_dir=work_dir)
    finally:
        root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work_dir = None if args.work_dir is None else Path(args.work_dir)
    try:
        cfg = load_config(args.config)
        if args.output:
            cfg = replace(cfg, output=Path(args.output))
        check_config(cfg)
        folder = quiet_build(cfg, work_dir) if args.no_progress else build(cfg, progress=True, work_dir=work_dir)
    except (UsageError, UnknownModelError, BuildError, ValueError) as e:  # ConfigError, CheckpointError
        print(f"engine.build: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, RuntimeError) as e:  # RuntimeError: a runtime that cannot run the built model (bf16)
        print(f"engine.build: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    report = json.loads((folder / "build.json").read_text())
    check = report["check"]
    print(f"built {folder}  ({report['dtype']}, {report['method']}, {report['time_s']:.1f} s)")
    if check.get("backend", "ort") != "ort":
        print(f"checked on {check['backend']} (at the model's {report['dtype']}) against onnxruntime fp32")
    if check.get("images"):
        line = (f"check on {check['images']} held-out images: top-1 agreement {100 * check['top1_agreement']:.2f}%"
                f", top-5 overlap {100 * check['top5_overlap']:.2f}%, output SNR {check['output_snr_db']:.1f} dB")
        if "fp32_top1" in check:
            line += (f"; top-1 fp32 {100 * check['fp32_top1']:.2f}% built {100 * check['built_top1']:.2f}%"
                     f", top-5 fp32 {100 * check['fp32_top5']:.2f}% built {100 * check['built_top5']:.2f}%")
        print(line)
    budget = check.get("error_budget")
    if budget and "error" in budget:
        print(f"no error budget: {budget['error']}")
    elif budget:
        print(f"error budget on {budget['images']} of them, as float arithmetic: output SNR "
              f"{budget['both']['output_snr_db']:.1f} dB, int8 weights alone "
              f"{budget['weights_alone']['output_snr_db']:.1f} dB, int8 activations alone "
              f"{budget['activations_alone']['output_snr_db']:.1f} dB")
        print(ERROR_BUDGET_HINTS[budget["limited_by"]])
    if 0 < check.get("images", 0) < cfg.check.count:
        print(f"note: {cfg.key('check.count')} {cfg.check.count}: the check used the {check['images']} "
              "held-out images there were", file=sys.stderr)
    for skipped in report.get("skipped_images", []):
        print(f"engine.build: skipped {skipped['item']}: {skipped['error']}", file=sys.stderr)
    return EXIT_SKIPPED if report.get("skipped_images") else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
