"""The model zoo: the VGG family from timm, torchvision and mmcls, plus EfficientNet-Lite0.

Every entry is built by its own library (mmcls by :mod:`engine.models.mmcls_vgg`, which
reproduces mmcls's network and key names without depending on mmcls) and carries its
data config, the way timm's ``pretrained_cfg`` travels with a timm model. Parameter and
MAC counts are measured on the built network (on the ``meta`` device, so listing all
models takes seconds); only the reference accuracies are transcribed from the published
tables (the seed's, ``shared/seed/README-en.md``).

    python -m engine.zoo list [--json]
    python -m engine.zoo info vgg11 --library mmcls [--weights FILE] [--seed N]
"""
from __future__ import annotations

import argparse
import json
import sys

from engine.models.checkpoints import CheckpointError
from engine.models.zoo import EFFICIENTNET_LIBRARY, LIBRARIES, create, list_models


def _format_table(rows: list[dict]) -> str:
    header = f"{'model':<20} {'source':<26} {'params(M)':>10} {'GMACs':>8} {'GFLOPs*':>8} {'top1':>7} {'top5':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        digits = 2 if r["library"] == "mmcls" else 3  # the reference table's precision
        acc = "".join(f" {v:>7.3f}" if v is not None else f" {'-':>7}" for v in (r["ref_top1"], r["ref_top5"]))
        lines.append(f"{r['name']:<20} {r['library']:<26} {r['params_m']:>10.{digits}f} "
                     f"{r['gmacs']:>8.3f} {r['gflops_card']:>8.{digits}f}{acc}")
    lines.append("params and GMACs (conv + linear multiply-accumulates, 224x224) are measured on the "
                 "built networks; GFLOPs* counts as the source's model card does (timm/torchvision: "
                 "MACs + 4 ops per batch-norm element; mmcls: mmcv's counter, adding bias, ReLU, "
                 "pooling and batch-norm ops); top1/top5 are the "
                 "published reference accuracies.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.zoo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="one row per model and source")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_info = sub.add_parser("info", help="build one model and describe it")
    p_info.add_argument("name")
    p_info.add_argument("--library", "--model-library", default=None, choices=LIBRARIES + (EFFICIENTNET_LIBRARY,))
    p_info.add_argument("--weights", default=None, help="checkpoint file (.pth/.pt/.safetensors)")
    p_info.add_argument("--seed", type=int, default=0, help="seed of the random weights (no --weights)")
    p_info.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "list":
        rows = list_models()
        print(json.dumps(rows, indent=2) if args.json else _format_table(rows))
        return 0
    try:
        model = create(args.name, args.library, weights=args.weights, seed=args.seed)
    except (KeyError, CheckpointError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    c = model.complexity()
    info = {"name": model.name, "library": model.library, "weights": model.weights,
            "weights_label": model.weights_label, "params_m": c.params_m, "gmacs": c.gmacs,
            "data_config": model.data_config.to_dict()}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{model.library} {model.name}: {c.params_m:.3f} M params, {c.gmacs:.3f} GMACs, {model.weights_label}")
        print(f"data config: {json.dumps(model.data_config.to_dict())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
