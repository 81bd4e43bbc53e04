"""What ``engine.run`` derives from its flags: the torch backend's options, where
normalisation happens, the ``--auto`` sweep's pick, and the progress bar."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from engine.backends import resolve_device
from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.dataconfig import DataConfig, ModelInfo
from engine.data.labels import imagenet_class_names
from engine.models.resolve import backend_for, check_model_args
from engine.pipeline.broker import Broker, RunStopped
from engine.pipeline.config import RunConfig
from engine.pipeline.sink import Sink


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """engine.run's flags that choose the backend, its device and the torch backend's options."""
    parser.add_argument("--backend", default="ort", choices=("ort", "torch"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"),
                        help="--backend torch: autocast precision (fp16 needs CUDA); an ONNX model's precision "
                             "is the one engine.build gave it")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="--backend torch on CUDA: capture one CUDA graph per batch size")
    parser.add_argument("--compile", action="store_true",
                        help="--backend torch: torch.compile the model first (seconds to minutes at start)")
    parser.add_argument("--normalize-on", choices=("auto", "host", "device"), default="auto",
                        help="where (x/255 - mean)/std happens: host (float32 slots) or device (uint8 slots, a "
                             "quarter of the bytes; --backend torch); auto: device for torch on CUDA, else host")


def check_backend_options(args) -> None:
    """The torch backend's options are refused with any other backend."""
    if (args.precision or args.cuda_graphs or args.compile) and args.backend != "torch":
        raise UsageError("--precision, --cuda-graphs and --compile apply to --backend torch; an ONNX model runs "
                         "at the precision engine.build gave it (fp32, fp16 or int8)")
    if args.normalize_on == "device" and args.backend != "torch":
        raise UsageError("--normalize-on device applies to --backend torch; an ONNX model takes the normalized "
                         "float32 input it was exported with")


def check_run_args(args) -> str | None:
    """Refuse every bad value, input and output path of engine.run before any work (one
    :class:`UsageError` line); the errors file's path."""
    check_backend_options(args)
    for flag, value, minimum in (("-b", args.batch, 1), ("-i", args.instances, 1), ("-p", args.processes, 1),
                                 ("--workers", args.workers, 1), ("--threads", args.threads, 1),
                                 ("--topk", args.topk, 1), ("--iterations", args.iterations, 1),
                                 ("--warmup", args.warmup, 0), ("--slots", args.slots, 0),
                                 ("--max-pixels", args.max_pixels, 0), ("--auto-budget", args.auto_budget, 1)):
        arg_checks.at_least(flag, value, minimum)
    if args.datalist:
        arg_checks.input_file("--datalist", args.datalist)
    else:
        arg_checks.input_dir("--images", args.images)
    if args.label:
        arg_checks.input_file("--label", args.label)
    check_model_args(args.onnx, args.model, args.model_library, args.weights, args.preprocess)
    errors_path = args.errors or (str(Path(args.report).with_suffix(".errors.jsonl")) if args.report else None)
    arg_checks.output_dir("--path_output", args.path_output)
    for flag, path in (("--save-topk", args.save_topk), ("--report", args.report), ("--errors", errors_path)):
        arg_checks.output_file(flag, path)
    return errors_path


def backend_options(precision: str | None, cuda_graphs: bool, compile_model: bool) -> dict:
    """The torch backend's options given on the command line."""
    options = {"precision": precision} if precision else {}
    if cuda_graphs:
        options["cuda_graphs"] = True
    if compile_model:
        options["compile"] = True
    return options


def normalize_on(choice: str, backend: str, device: str, data_config: DataConfig) -> str:
    """``auto``: on the device for torch on a GPU (uint8 over PCIe), else on the host (also
    when the model's preprocessing runs through its library, which normalizes itself)."""
    if choice != "auto":
        return choice
    on_kernel = data_config.kernel_limitation() is None
    return "device" if backend == "torch" and device.startswith("cuda") and on_kernel else "host"


def autotuned(model_path: str, device: str, backend: str, budget_s: float, options: dict) -> dict:
    """The fastest instances/threads/batch a short measured sweep finds, said on stderr."""
    from engine.pipeline.autotune import autotune

    print(f"engine: --auto: measuring settings for about {budget_s:.0f} s", file=sys.stderr, flush=True)
    best, _ = autotune(model_path, device, time_budget_s=budget_s, kind=backend, **options)
    print(f"engine: --auto picked -i {best['instances']} --threads {best['threads']} -b {best['batch']} "
          f"({best['images_per_s']:.1f} img/s measured on the model alone)", file=sys.stderr, flush=True)
    return best


def run_config(args, model_path: str, info: ModelInfo) -> RunConfig:
    """The run's configuration from engine.run's flags: the device resolved, the default
    instances for it, and -i/--threads/-b replaced by the sweep's pick under ``--auto``."""
    backend = backend_for(info, args.backend)
    device = resolve_device(args.device, backend)
    instances = args.instances or (3 if device.startswith("cuda") else 1)
    threads, batch = args.threads, args.batch
    options = backend_options(args.precision, args.cuda_graphs, args.compile)
    if args.auto:
        best = autotuned(model_path, device, backend, args.auto_budget, options)
        instances, threads, batch = best["instances"], best["threads"], best["batch"]
    num_classes = info.data_config.num_classes
    return RunConfig(
        model_path=model_path, data_config=info.data_config,
        class_names=info.class_names or (imagenet_class_names() if num_classes == 1000 else None),
        model_label=info.extra.get("weights_label", "weights not recorded in the model info"),
        backend=backend, device=device, backend_options=options,
        normalize_on=normalize_on(args.normalize_on, backend, device, info.data_config),
        instances=instances, processes=args.processes, batch=batch,
        threads=threads or max(1, (os.cpu_count() or 1) // instances),
        workers=args.workers, topk=args.topk, iterations=args.iterations, warmup=args.warmup,
        slots=args.slots, batch_delay_ms=args.batch_delay_ms, transport=args.transport,
        tcp_host=args.tcp_host, tcp_port=args.tcp_port, max_pixels=args.max_pixels or None,
        output_dtype=args.output_dtype, quiet=args.quiet)


def start_line(cfg: RunConfig, items: int, model_path: str) -> str:
    """The one line engine.run prints before it starts: what runs, on what, how."""
    return (f"engine: {items} items x {cfg.iterations}; model {os.path.basename(model_path)} ({cfg.model_label}); "
            f"backend {cfg.backend}/{cfg.device}; normalize on {cfg.normalize_on}; -i {cfg.instances} "
            f"-p {cfg.processes} -b {cfg.batch}; workers {cfg.workers}; threads {cfg.threads}; slots {cfg.slots}; "
            f"transport {cfg.transport}")


def run_with_progress(cfg: RunConfig, items: list[str], sink: Sink) -> Broker:
    """Run the broker over ``items`` with a progress bar; the sink is closed however it ends
    (a stop is recorded as the broker's ``stop_reason``, a signal as its ``exit_signal``)."""
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
    return broker


def make_progress(quiet: bool, total: int):
    """A tqdm bar on stderr and the broker's progress callback (both None when quiet).

    The bar reaching ``total`` is left to ``close()`` to draw, so the last line says 100%
    once; without a terminal the bar is redrawn every 10 s rather than animated.
    """
    if quiet:
        return None, None
    terminal = sys.stderr.isatty()
    bar = tqdm(total=total, unit="img", dynamic_ncols=True, file=sys.stderr, mininterval=0.1 if terminal else 10)

    def update(broker) -> None:
        acc = broker.sink.accuracy()
        postfix = {"img/s": f"{broker.throughput:.1f}",
                   "errors": broker.failed}
        if acc["labelled"]:
            postfix.update(top1=f"{acc['top1']:.2f}", top5=f"{acc['top5']:.2f}")
        bar.set_postfix(postfix, refresh=False)
        if broker.finished >= total:
            bar.n = broker.finished
        else:
            bar.update(broker.finished - bar.n)

    return bar, update
