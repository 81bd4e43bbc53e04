"""``python -m engine.run``: classify a datalist or an image folder through the pipeline.

Exit status: 0 when every item succeeded, 3 when some items failed (each is listed in
the errors file), 2 on a usage error (a bad flag value, a missing input, an output path
that cannot be written, an unknown model: all checked before any work), 1 when the run
could not start or had to stop, 130/143 when interrupted by SIGINT/SIGTERM (what was
done is flushed first). One run at a time writes into a --path_output folder.
With --ray the same job runs on a Ray cluster and writes the same files (docs/cluster.md).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from engine.cluster.run_options import add_cluster_options, check_cluster_args, run_on_cluster
from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.datalist import read_datalist, scan_images
from engine.data.decode import DEFAULT_MAX_PIXELS
from engine.data.labels import LabelSource
from engine.data.output_lock import FolderLock
from engine.models.catalog import UnknownModelError
from engine.models.resolve import resolve_model
from engine.pipeline.config import default_workers
from engine.pipeline.run_options import add_backend_options, check_run_args, run_config, run_with_progress, start_line
from engine.pipeline.sink import Sink
from engine.pipeline.summary import build_report, format_summary

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_ITEMS_FAILED = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(prog="python -m engine.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--datalist", help="text file, one .npz or image path per line")
    src.add_argument("--images", help="folder searched recursively for images")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--onnx", help="ONNX model; its model-info JSON beside it gives the preprocessing")
    model.add_argument("--model", help="zoo model name (exported on the fly into a cache folder)")
    p.add_argument("--model-library", default=None,
                   help="timm (default for VGG), torchvision or mmcls; models with one source ignore it")
    p.add_argument("--weights", help="checkpoint for --model (.pth/.pt/.safetensors); random weights without it")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights when no --weights")
    p.add_argument("--preprocess", help="JSON/YAML data config (resize, crop, mean, std, ...) overriding the model's")
    add_backend_options(p)
    p.add_argument("-i", "--instances", type=int, default=None,
                   help="model instances per device process (default 1; 3 on a GPU, each on its own CUDA "
                        "stream, so their host-side work overlaps each other's kernels)")
    p.add_argument("-p", "--processes", type=int, default=1, help="device worker processes")
    p.add_argument("-b", "--batch", type=int, default=8, help="batch size")
    p.add_argument("--workers", type=int, default=default_workers(cores), help="preprocess processes")
    p.add_argument("--threads", type=int, default=None, help="threads per instance (default: cores / instances)")
    p.add_argument("--auto", action="store_true",
                   help="measure instances x threads x batch first (engine.tune) and run with the fastest")
    p.add_argument("--auto-budget", type=float, default=30.0, help="seconds the --auto sweep aims to take")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--iterations", type=int, default=1, help="loop over the datalist N times (benchmark)")
    p.add_argument("--warmup", type=int, default=None, help="items excluded from timing")
    p.add_argument("--slots", type=int, default=0, help="shared-memory slots (default: from workers/batch)")
    p.add_argument("--batch-delay-ms", type=float, default=2.0, help="longest wait for a partial batch")
    p.add_argument("--transport", default="ipc", choices=("ipc", "tcp"), help="stage endpoints")
    p.add_argument("--tcp-host", default="127.0.0.1")
    p.add_argument("--tcp-port", type=int, default=0, help="broker port for --transport tcp (0: any free)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="decompression-bomb limit in pixels per image (0 turns it off)")
    p.add_argument("--label", help="labels: '<file> <class index>' lines")
    p.add_argument("--labels-from-folders", action="store_true", help="labels from val/<wnid>/ folders")
    p.add_argument("--path_output", "--path-output", dest="path_output", help="write output_XXXXXX.npz here")
    p.add_argument("--output-dtype", default="float32", choices=("float32", "float16"))
    p.add_argument("--save-topk", help="write top-k results in the sample script's text format")
    p.add_argument("--report", help="write every figure and the configuration as JSON")
    p.add_argument("--errors", help="failed items as JSON lines (default: beside --report)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cluster_options(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        errors_path = check_run_args(args)
        items = read_datalist(args.datalist) if args.datalist else scan_images(args.images)
        if not items:
            raise UsageError(f"{args.datalist or args.images}: no items to run")
        labels = LabelSource(args.label, args.labels_from_folders)
        lock = FolderLock("--path_output", args.path_output) if args.path_output else None
        model_path, info = resolve_model(args.onnx, args.model, args.model_library, args.weights, args.seed,
                                         args.preprocess)
        arg_checks.at_most("--topk", args.topk, info.data_config.num_classes, "the model's classes")
        check_cluster_args(args)
    except (UsageError, UnknownModelError, OSError, ValueError) as e:
        print(f"engine: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = run_config(args, model_path, info)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"engine: error: {e}", file=sys.stderr)
        return EXIT_FATAL
    warning = labels.shared_label_warning(items, args.label)
    if warning:
        print(f"engine: {warning}", file=sys.stderr)
    print(start_line(cfg, len(items), model_path), file=sys.stderr, flush=True)
    sink = Sink(items, topk=cfg.topk, class_names=cfg.class_names, labels=labels, path_output=args.path_output,
                output_dtype=cfg.output_dtype, save_topk=args.save_topk, errors_path=errors_path)
    broker = run_on_cluster(args, cfg, items, sink) if args.ray else run_with_progress(cfg, items, sink)
    if lock is not None:
        lock.release()
    model_meta = {"name": info.name, "library": info.library, "file": model_path, "weights_label": cfg.model_label}
    report = build_report(broker, cfg, sink, model_info=model_meta, items_total=len(items))
    report["errors"] = sink.errors
    if args.ray:
        report.update(broker.cluster_figures())
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    print(format_summary(report))
    if sink.errors:
        print(f"failed items: {len(sink.errors)}" + (f" (listed in {errors_path})" if errors_path else ""))
        for rec in sink.errors[:10]:
            print(f"  {rec['item']}: {rec['error']}")
    if broker.exit_signal is not None:
        return 128 + broker.exit_signal
    if broker.stop_reason:
        print(f"engine: error: the run stopped: {broker.stop_reason}", file=sys.stderr)
        return EXIT_FATAL
    return EXIT_ITEMS_FAILED if sink.errors else EXIT_OK


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
