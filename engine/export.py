"""Export a zoo model or any timm/torchvision image classifier to ONNX, with its model-info JSON.

    python -m engine.export --model-library timm --model-name vgg11 --size 224 --save-dir onnx/
        [--weights FILE] [--static-batch N] [--softmax] [--seed N]
    python -m engine.export --model-name resnet50.a1_in1k --save-dir onnx/

The seed's spellings (``--model_library``, ``--model_name``, ``--save_dir``,
``--pretrained_weights``) work too. Writes ``<save_dir>/<name>_<size>.onnx`` (input
``input``, output ``output``, dynamic batch axis unless ``--static-batch``) and
``<save_dir>/<name>_<size>.json`` (:class:`engine.data.dataconfig.ModelInfo`, with the data
config of the model's library; ``--size`` defaults to the model's input size). The ONNX model
is then run under onnxruntime against the torch model on random input (batches 1 and 3
when the batch axis is dynamic); a maximum relative error above 1e-4 fails the export.

Exit status: 0 written, 2 usage error (unknown model or library, bad --size or
--static-batch, a --save-dir that cannot be written, a missing or unloadable checkpoint),
1 the export or its check failed.
"""
from __future__ import annotations

import argparse
import sys

from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.dataconfig import ModelInfo
from engine.data.extras import require
from engine.models.catalog import EFFICIENTNET_LIBRARY, LIBRARIES, UnknownModelError
from engine.models.library_models import resolve_model_ref

# Classifiers halve their input five times: below 32 pixels nothing is left.
MIN_SIZE = 32


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-library", "--model_library", dest="library", default=None,
                   choices=LIBRARIES + (EFFICIENTNET_LIBRARY,),
                   help="library that builds the model (default: timm for the VGGs and any name timm has, "
                        "else torchvision; efficientnet_lite0 has its own)")
    p.add_argument("--model-name", "--model_name", dest="name", required=True,
                   help="zoo model (vgg11, vgg16_bn, efficientnet_lite0) or any timm/torchvision image "
                        "classifier (resnet50, resnet50.a1_in1k, mobilenet_v3_small; see engine.zoo list --all)")
    p.add_argument("--weights", "--pretrained_weights", "--pretrained-weights", dest="weights",
                   default=None, help="checkpoint file (.pth/.pt/.safetensors); default: seeded random weights")
    p.add_argument("--size", type=int, default=None, help="input height and width (default: the model's)")
    p.add_argument("--save-dir", "--save_dir", dest="save_dir", default="onnx", help="output folder")
    p.add_argument("--static-batch", "--static_batch", dest="static_batch", type=int, default=None,
                   help="fix the batch axis to N (default: dynamic)")
    p.add_argument("--softmax", action="store_true", help="append a softmax over classes")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (without --weights)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the onnxruntime comparison")
    return p


def check_args(args) -> None:
    """Everything that can be refused before torch is imported."""
    require("torch", "engine.export")
    resolve_model_ref(args.name, args.library)
    arg_checks.at_least("--size", args.size, MIN_SIZE)
    arg_checks.at_least("--static-batch", args.static_batch, 1)
    if args.weights is not None:
        arg_checks.input_file("--weights", args.weights)
    arg_checks.check_output_dir("--save-dir", args.save_dir)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
    except (UsageError, UnknownModelError) as e:
        print(f"engine.export: error: {e}", file=sys.stderr)
        return 2
    from engine.models.checkpoints import CheckpointError  # torch: imported once the arguments are known good
    from engine.models.onnx_export import ExportError, export_onnx
    from engine.models.zoo import create

    try:
        model = create(args.name, args.library, weights=args.weights, seed=args.seed)
    except CheckpointError as e:
        print(f"engine.export: error: {e}", file=sys.stderr)
        return 2
    size = args.size or model.data_config.input_size[-1]
    complexity = model.complexity(size)
    print(f"{model.library} {model.name} ({model.weights_label})")
    print(f"flops: {complexity.gmacs:.3f} G (conv+linear MACs at {size}x{size}), "
          f"params: {complexity.params_m:.3f} M")
    try:
        path = export_onnx(model, args.save_dir, size=size, static_batch=args.static_batch,
                           softmax=args.softmax, check=args.check)
    except (ExportError, OSError) as e:
        print(f"engine.export: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} and {ModelInfo.path_for(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
