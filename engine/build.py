"""Build a deploy folder (fp32, fp16 or int8) from a YAML config.

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
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from engine.builder.accuracy import ERROR_BUDGET_HINTS
from engine.builder.build import build
from engine.builder.config import load_config
from engine.builder.source_model import BuildError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.build", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="build config (YAML); see engine/builder/config.py for the keys")
    p.add_argument("--output", help="folder to create the deploy folder in (overrides the config's output)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--work-dir", help="keep the intermediate files in this folder, among them prepared.onnx: the "
                                      "float model an int8 model was quantized from, channels in its order")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        if args.output:
            cfg = replace(cfg, output=Path(args.output))
        folder = build(cfg, progress=not args.no_progress,
                       work_dir=None if args.work_dir is None else Path(args.work_dir))
    except KeyError as e:  # the zoo's "model 'x' is not in the zoo; choose from ..."
        print(f"engine.build: {e.args[0]}", file=sys.stderr)
        return 2
    except (BuildError, OSError, ValueError) as e:  # ConfigError and CheckpointError are ValueErrors
        print(f"engine.build: {e}", file=sys.stderr)
        return 2
    report = json.loads((folder / "build.json").read_text())
    check = report["check"]
    print(f"built {folder}  ({report['dtype']}, {report['method']}, {report['time_s']:.1f} s)")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
