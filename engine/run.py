"""``python -m engine.run``: classify a datalist or an image folder through the pipeline.

Exit status: 0 when every item succeeded, 3 when some items failed (each is listed in
the errors file), 1 when the run could not start or had to stop, 2 on a usage error,
130/143 when interrupted by SIGINT/SIGTERM (what was done is flushed first).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import yaml
from tqdm import tqdm

from engine.backends import resolve_device
from engine.data.dataconfig import DataConfig, ModelInfo
from engine.data.datalist import read_datalist, scan_images
from engine.data.decode import DEFAULT_MAX_PIXELS
from engine.data.labels import LabelSource, imagenet_class_names
from engine.models.cache import cached_onnx
from engine.pipeline.broker import Broker, RunStopped
from engine.pipeline.config import RunConfig, default_workers
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
    p.add_argument("--backend", default="ort", choices=("ort", "torch"))
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"),
                   help="--backend torch: autocast precision (fp16 needs CUDA); an ONNX model's precision "
                        "is the one engine.build gave it")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="--backend torch on CUDA: capture one CUDA graph per batch size")
    p.add_argument("--compile", action="store_true",
                   help="--backend torch: torch.compile the model first (seconds to minutes at start)")
    p.add_argument("--normalize-on", choices=("auto", "host", "device"), default="auto",
                   help="where (x/255 - mean)/std happens: host (float32 slots) or device (uint8 slots, a "
                        "quarter of the bytes; --backend torch); auto: device for torch on CUDA, else host")
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
    p.add_argument("--warmup", type=int, default=0, help="items excluded from timing")
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
    return p


def load_data_config(path: str) -> DataConfig:
    text = Path(path).read_text()
    data = yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
    return DataConfig.from_dict(data.get("data_config", data))


def resolve_model(args) -> tuple[str, ModelInfo]:
    onnx_path = args.onnx or str(cached_onnx(args.model, args.model_library, args.weights, args.seed))
    if not Path(onnx_path).is_file():
        raise FileNotFoundError(f"model {onnx_path}: no such file")
    info_path = ModelInfo.path_for(onnx_path)
    if info_path.exists():
        info = ModelInfo.load(info_path)
    elif args.preprocess:
        info = ModelInfo(name=Path(onnx_path).stem, library="onnx", model_file=onnx_path)
    else:
        raise FileNotFoundError(f"model {onnx_path}: no model-info JSON at {info_path}; "
                                "give the preprocessing with --preprocess FILE")
    if args.preprocess:
        info.data_config = load_data_config(args.preprocess)
    return onnx_path, info


def apply_autotune(args, model_path: str) -> None:
    """Replace -i/--threads/-b with the fastest setting a short measured sweep finds."""
    from engine.pipeline.autotune import autotune

    print(f"engine: --auto: measuring settings for about {args.auto_budget:.0f} s", file=sys.stderr, flush=True)
    best, _ = autotune(model_path, args.device, time_budget_s=args.auto_budget, kind=args.backend,
                       **backend_options(args))
    args.instances, args.threads, args.batch = best["instances"], best["threads"], best["batch"]
    print(f"engine: --auto picked -i {args.instances} --threads {args.threads} -b {args.batch} "
          f"({best['images_per_s']:.1f} img/s measured on the model alone)", file=sys.stderr, flush=True)


def backend_options(args) -> dict:
    """The torch backend's options given on the command line."""
    options = {"precision": args.precision} if args.precision else {}
    if args.cuda_graphs:
        options["cuda_graphs"] = True
    if args.compile:
        options["compile"] = True
    return options


def normalize_on(choice: str, backend: str, device: str) -> str:
    """``auto``: on the device for torch on a GPU (uint8 over PCIe), else on the host."""
    if choice != "auto":
        return choice
    return "device" if backend == "torch" and device.startswith("cuda") else "host"


def make_progress(quiet: bool, total: int):
    if quiet:
        return None, None
    bar = tqdm(total=total, unit="img", dynamic_ncols=True, file=sys.stderr)

    def update(broker) -> None:
        bar.update(broker.finished - bar.n)
        acc = broker.sink.accuracy()
        postfix = {"img/s": f"{broker.throughput:.1f}",
                   "errors": broker.failed}
        if acc["labelled"]:
            postfix.update(top1=f"{acc['top1']:.2f}", top5=f"{acc['top5']:.2f}")
        bar.set_postfix(postfix, refresh=False)

    return bar, update


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.precision or args.cuda_graphs or args.compile) and args.backend != "torch":
        parser.error("--precision, --cuda-graphs and --compile apply to --backend torch; an ONNX model runs "
                     "at the precision engine.build gave it (fp32, fp16 or int8)")
    if args.normalize_on == "device" and args.backend != "torch":
        parser.error("--normalize-on device applies to --backend torch; an ONNX model takes the normalized "
                     "float32 input it was exported with")
    try:
        items = read_datalist(args.datalist) if args.datalist else scan_images(args.images)
        if not items:
            raise ValueError(f"{args.datalist or args.images}: no items to run")
        labels = LabelSource(args.label, args.labels_from_folders)
        model_path, info = resolve_model(args)
        args.device = resolve_device(args.device, args.backend)
        if args.instances is None:
            args.instances = 3 if args.device.startswith("cuda") else 1
        if args.auto:
            apply_autotune(args, model_path)
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.instances)
        cfg = RunConfig(
            model_path=model_path, data_config=info.data_config,
            class_names=info.class_names or (imagenet_class_names() if info.data_config.num_classes == 1000 else None),
            model_label=info.extra.get("weights_label", "weights not recorded in the model info"),
            backend=args.backend, device=args.device, backend_options=backend_options(args),
            normalize_on=normalize_on(args.normalize_on, args.backend, args.device),
            instances=args.instances, processes=args.processes, batch=args.batch, threads=threads,
            workers=args.workers, topk=args.topk, iterations=args.iterations, warmup=args.warmup,
            slots=args.slots, batch_delay_ms=args.batch_delay_ms, transport=args.transport,
            tcp_host=args.tcp_host, tcp_port=args.tcp_port, max_pixels=args.max_pixels or None,
            output_dtype=args.output_dtype, quiet=args.quiet)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"engine: error: {e}", file=sys.stderr)
        return EXIT_FATAL
    errors_path = args.errors or (str(Path(args.report).with_suffix(".errors.jsonl")) if args.report else None)
    for path in (args.save_topk, args.report, errors_path):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    print(f"engine: {len(items)} items x {cfg.iterations}; model {Path(model_path).name} ({cfg.model_label}); "
          f"backend {cfg.backend}/{cfg.device}; normalize on {cfg.normalize_on}; -i {cfg.instances} -p {cfg.processes} -b {cfg.batch}; "
          f"workers {cfg.workers}; threads {cfg.threads}; slots {cfg.slots}; transport {cfg.transport}",
          file=sys.stderr, flush=True)
    sink = Sink(items, topk=cfg.topk, class_names=cfg.class_names, labels=labels, path_output=args.path_output,
                output_dtype=cfg.output_dtype, save_topk=args.save_topk, errors_path=errors_path)
    bar, progress = make_progress(cfg.quiet, len(items) * cfg.iterations)
    broker = Broker(cfg, items, sink, progress)
    try:
        broker.run()
    except RunStopped as e:
        broker.stop_reason = str(e)
    finally:
        sink.close()
        if bar is not None:
            bar.close()
    model_meta = {"name": info.name, "library": info.library, "file": model_path, "weights_label": cfg.model_label}
    report = build_report(broker, cfg, sink, model_info=model_meta, items_total=len(items))
    report["errors"] = sink.errors
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    print(format_summary(report))
    if sink.errors:
        shown = sink.errors[:10]
        print(f"failed items: {len(sink.errors)}" + (f" (listed in {errors_path})" if errors_path else ""))
        for rec in shown:
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
