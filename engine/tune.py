"""``python -m engine.tune MODEL.onnx``: measure backend x precision x instances x threads x batch, print the table.

The sweep, and the regularities the short one relies on, are :mod:`engine.pipeline.autotune`'s;
``--exhaustive`` measures the whole grid. Each backend and precision allowed is swept in turn
(:mod:`engine.pipeline.precision_sweep`): onnxruntime and OpenVINO at the file's precision,
a lower one only with ``--precision`` or ``--max-accuracy-loss PCT --check-items ITEMS``.

Exit status: 0 measured, 2 usage error (a missing or directory model file, a grid or
budget the sweep refuses), 1 the sweep could not run (no usable device, a model the
backend cannot load).
"""
from __future__ import annotations

import sys
from pathlib import Path

from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.extras import require
from engine.models.resolve import deploy_model_file
from engine.pipeline.autotune import default_grid
from engine.pipeline.precision_sweep import auto_sweep, check_precision_options, items_at


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m engine.tune",
                                description="Measure instances x threads x batch settings and print the best.")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("model", nargs="?", help="ONNX model (its model-info JSON beside it for --backend torch)")
    given.add_argument("-m", dest="deploy_model", metavar="PATH",
                       help="the seed's spelling: a deploy-folder prefix DIR/NAME (DIR/NAME.onnx) or an .onnx file")
    p.add_argument("--backend", default=None, choices=("ort", "openvino", "torch"),
                   help="the one backend to measure (default: onnxruntime, and OpenVINO where installed)")
    p.add_argument("--precision", nargs="+", choices=("fp32", "bf16", "fp16"),
                   help="precisions the sweep may pick (default: the model file's own, fp32 for an export)")
    p.add_argument("--max-accuracy-loss", dest="max_accuracy_loss", type=float, metavar="PCT",
                   help="allow a lower precision whose top-1 disagreement with onnxruntime fp32 on --check-items "
                        "is at most PCT percent")
    p.add_argument("--check-items", dest="check_items",
                   help="datalist or image folder the accuracy loss is measured on (its first 64 items)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--budget", type=float, default=30.0, help="target seconds for the sweep")
    p.add_argument("--instances", type=int, nargs="+", help="instances to try (default: divisors of the cores)")
    p.add_argument("--threads", type=int, nargs="+", help="threads per instance to try")
    p.add_argument("--batch", type=int, nargs="+", help="batch sizes to try")
    p.add_argument("--exhaustive", action="store_true", help="measure every setting of the grid")
    p.add_argument("--json", help="write the best setting and the table here")
    args = p.parse_args(argv)
    from engine.backends import resolve_device

    try:
        if args.deploy_model is not None:
            args.model = deploy_model_file(args.deploy_model)
        arg_checks.input_file("model", args.model)
        if args.backend == "torch":
            require("torch", "--backend torch")
        check_precision_options(args.backend, None, True, args.max_accuracy_loss)
        if (args.max_accuracy_loss is None) != (args.check_items is None):
            raise UsageError("--max-accuracy-loss and --check-items go together (the loss is measured on the items)")
        if args.check_items and not Path(args.check_items).exists():
            raise UsageError(f"--check-items {args.check_items}: no such datalist or folder")
        if args.budget <= 0:
            raise UsageError(f"--budget must be positive, got {args.budget}")
        if args.json:
            arg_checks.check_output_file("--json", args.json)
    except UsageError as e:
        print(f"engine.tune: error: {e}", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device, args.backend or "ort")
        grid = default_grid(device)
        for key in ("instances", "threads", "batch"):
            if getattr(args, key):
                grid[key] = getattr(args, key)
        result = auto_sweep(args.model, device, args.backend, args.budget, {}, precisions=args.precision,
                            max_loss=args.max_accuracy_loss, items=items_at(args.check_items),
                            grid=grid, exhaustive=args.exhaustive, verbose=True)
    except ValueError as e:  # a grid the sweep refuses
        print(f"engine.tune: error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as e:
        print(f"engine.tune: error: {e}", file=sys.stderr)
        return 1
    best = {**result.setting, "backend": result.candidate.backend, "precision": result.candidate.precision}
    print(f"best: {best['instances']} instance(s) x {best['threads']} thread(s), batch {best['batch']}: "
          f"{best['images_per_s']:.2f} images/s on {result.candidate.label()}")
    for row in result.table:
        loss = (f", top-1 disagreement {row['top1_disagreement_pct']}% / SNR {row['output_snr_db']} dB"
                if "top1_disagreement_pct" in row else "")
        rate = f"{row['images_per_s']:.2f} images/s" if "images_per_s" in row else "not measured: over the loss bound"
        print(f"  {row['backend']} {row['precision']}: {rate}{loss}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"best": best, "table": result.settings, "candidates": result.table},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
