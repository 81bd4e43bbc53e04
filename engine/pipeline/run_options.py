"""What ``engine.run`` derives from its options: the backend's flags and options, where
normalisation happens, the ``--auto`` sweep's pick, the start line and the progress bar.
The options themselves are checked, once, in engine/api/options.py, and turned into a
:class:`RunConfig` by engine/api/run_config.py."""
from __future__ import annotations

import argparse
import os
import sys

from tqdm import tqdm

from engine.data.dataconfig import DataConfig
from engine.data.vdsp_params import start_line_note
from engine.pipeline.broker import Broker, ListFeed, RunStopped
from engine.pipeline.config import RunConfig
from engine.pipeline.precision_sweep import auto_sweep
from engine.pipeline.sink import Sink


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """engine.run's flags that choose the backend, its device and the torch backend's options."""
    parser.add_argument("--backend", default=None, choices=("ort", "openvino", "torch"),
                        help="ort (onnxruntime, the default), openvino (CPU; the openvino extra) or torch; "
                             "under --auto without it, ort and openvino are both measured")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"),
                        help="--backend openvino: fp32 or bf16 (default: the precision engine.build gave the "
                             "file, else fp32; never chosen silently); --backend torch: autocast precision "
                             "(fp16 needs CUDA); under --auto: the only precision the sweep may pick")
    parser.add_argument("--max-accuracy-loss", dest="max_accuracy_loss", type=float, default=None, metavar="PCT",
                        help="--auto: let the sweep pick a lower precision (bf16) whose top-1 disagreement with "
                             "onnxruntime fp32, measured on the first 64 items, is at most PCT percent")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="--backend torch on CUDA: capture one CUDA graph per batch size")
    parser.add_argument("--compile", action="store_true",
                        help="--backend torch: torch.compile the model first (seconds to minutes at start)")
    parser.add_argument("--normalize-on", choices=("auto", "host", "device"), default="auto",
                        help="where (x/255 - mean)/std happens: host (float32 slots) or device (uint8 slots, a "
                             "quarter of the bytes; --backend torch); auto: device for torch on CUDA, else host")


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


def autotuned(model_path: str, device: str, backend: str | None, budget_s: float, options: dict, *,
              max_loss: float | None = None, items: list[str] | None = None, data_config=None) -> dict:
    """The fastest backend, precision and instances/threads/batch a short measured sweep finds
    within what the user allows (:mod:`engine.pipeline.precision_sweep`), said on stderr:
    the setting, plus ``backend`` and ``backend_options`` to run with."""
    print(f"engine: --auto: measuring settings for about {budget_s:.0f} s", file=sys.stderr, flush=True)
    result = auto_sweep(model_path, device, backend, budget_s, options, max_loss=max_loss, items=items,
                        data_config=data_config)
    print(f"engine: --auto picked {result.picked()}", file=sys.stderr, flush=True)
    return {**result.setting, "backend": result.candidate.backend,
            "backend_options": result.options, "sweep": result.table}


def start_line(cfg: RunConfig, items: int, model_path: str) -> str:
    """The one line engine.run prints before it starts: what runs, on what, how."""
    return (f"engine: {items} items x {cfg.iterations}; model {os.path.basename(model_path)} ({cfg.model_label}); "
            f"backend {cfg.backend}/{cfg.device}; normalize on {cfg.normalize_on}; -i {cfg.instances} "
            f"-p {cfg.processes} -b {cfg.batch}; workers {cfg.workers}; threads {cfg.threads}; slots {cfg.slots}; "
            f"transport {cfg.transport}{start_line_note(cfg.data_config)}")


def run_with_progress(cfg: RunConfig, items: list[str], sink: Sink) -> Broker:
    """Run the broker over ``items`` with a progress bar; the sink is closed however it ends
    (a stop is recorded as the broker's ``stop_reason``, a signal as its ``exit_signal``)."""
    bar, progress = make_progress(cfg.quiet, len(items) * cfg.iterations)
    broker = Broker(cfg, ListFeed(items, cfg.iterations), sink, progress)
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
