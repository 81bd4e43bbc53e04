"""The model zoo: the VGG family from timm, torchvision and mmcls, EfficientNet-Lite0, and
every image classifier of the installed timm and torchvision.

Every entry is built by its own library (mmcls by :mod:`engine.models.mmcls_vgg`, which
reproduces mmcls's network and key names without depending on mmcls) and carries its
data config, the way timm's ``pretrained_cfg`` travels with a timm model. Parameter and
MAC counts of the table's models are measured on the built networks and kept in the
catalog's table (checked by a test), so ``list`` and ``show`` of a table model without
weights answer without importing torch; ``show`` builds a table model only to load a
checkpoint. Only the reference accuracies are transcribed from the published tables (the
seed's, ``shared/seed/README-en.md``). ``list --all`` adds every timm and torchvision
classifier with its library's input size and preprocessing (no network built; cached per
library version); ``show`` of one of them prints its library's data config and measures
its parameters and MACs on the ``meta`` device (no weights, no arithmetic).

Exit status: 0 done, 2 usage error (unknown model or library, unreadable checkpoint).

    python -m engine.zoo list [--all] [--json]
    python -m engine.zoo show vgg11 --model-library mmcls [--weights FILE] [--seed N] [--json]
    python -m engine.zoo show resnet50.a1_in1k
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from engine.data.extras import MissingExtra, require
from engine.models import catalog
from engine.models.catalog import EFFICIENTNET_LIBRARY, LIBRARIES, UnknownModelError, list_models
from engine.models.library_models import resolve_model_ref


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


def _format_all(rows) -> str:
    header = f"{'model':<50} {'source':<26} {'input':<12} {'interpolation':<13} crop"
    lines = [header, "-" * len(header)]
    lines += [f"{r.name:<50} {r.library:<26} {'x'.join(map(str, r.input_size)) or '-':<12} "
              f"{r.interpolation:<13} {r.crop}{'  (' + r.note + ')' if r.note else ''}" for r in rows]
    lines.append(f"{len(rows)} classifiers; crop: resize (shorter side, or HxW exactly) -> center crop; "
                 "python -m engine.zoo show NAME for the whole data config, parameters and MACs")
    return "\n".join(lines)


def _describe(name: str, library: str | None, weights: str | None, seed: int) -> dict:
    """The facts of one model; a table model is built only when weights must be loaded, any
    other is built on the ``meta`` device to count its parameters and MACs."""
    ref = resolve_model_ref(name, library)
    if weights is None and ref.library != EFFICIENTNET_LIBRARY:
        weights_info = catalog.random_weights(seed)
    else:
        require("torch", f"engine.zoo show {ref.name}" + (" --weights" if weights else ""))
        from engine.models.zoo import create

        weights_info = create(ref.name, ref.library, weights=weights, seed=seed).weights
    if ref.in_table:
        c, data_config = ref.entry.complexity, ref.entry.data_config
    else:
        from engine.models import zoo

        c, data_config = zoo.complexity(ref.name, ref.library), zoo.get_spec(ref.name, ref.library).data_config
    return {"name": ref.name, "library": ref.library, "weights": weights_info,
            "weights_label": catalog.weights_label(weights_info), "params_m": c.params_m, "gmacs": c.gmacs,
            "data_config": data_config.to_dict()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.zoo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="one row per model and source")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list.add_argument("--all", action="store_true",
                        help="every timm and torchvision classifier too: input size, interpolation, crop")
    p_info = sub.add_parser("show", aliases=["info"],
                            help="describe one model: data config, parameters, MACs (weights loaded if given)")
    p_info.add_argument("name")
    p_info.add_argument("--library", "--model-library", default=None, choices=LIBRARIES + (EFFICIENTNET_LIBRARY,),
                        help="default: timm for the VGGs and any name timm has, else torchvision")
    p_info.add_argument("--weights", default=None, help="checkpoint file (.pth/.pt/.safetensors)")
    p_info.add_argument("--seed", type=int, default=0, help="seed of the random weights (no --weights)")
    p_info.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "list" and args.all:
        try:  # the table's rows come from the catalog; the libraries' from timm and torchvision
            require("torch", "engine.zoo list --all")
        except MissingExtra as e:
            print(f"engine.zoo: error: {e}", file=sys.stderr)
            return 2
        from engine.models.listing import all_models

        rows = all_models()
        print(json.dumps([asdict(r) for r in rows], indent=1) if args.json else _format_all(rows))
        return 0
    if args.command == "list":
        rows = list_models()
        print(json.dumps(rows, indent=2) if args.json else _format_table(rows))
        return 0
    try:
        info = _describe(args.name, args.library, args.weights, args.seed)
    except (UnknownModelError, OSError, ValueError) as e:  # CheckpointError is a ValueError
        print(f"engine.zoo: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['library']} {info['name']}: {info['params_m']:.3f} M params, {info['gmacs']:.3f} GMACs, "
              f"{info['weights_label']}")
        print(f"data config: {json.dumps(info['data_config'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
