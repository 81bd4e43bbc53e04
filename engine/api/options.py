"""The options records the API takes and the commands parse their flags into.

One record per level, each extending the one below, so a command and the matching API
call take the same names (docs/api.md lists them with their flags):

- :class:`ModelOptions`: which model and how it is preprocessed (``onnx=`` or ``model=``);
- :class:`EngineOptions`: the pipeline around it (backend, device, ``batch_size`` (``-b``),
  ``instances`` (``-i``), ``processes`` (``-p``), workers, top-k, ...): what
  ``engine.Classifier`` takes;
- :class:`RunOptions`: a whole ``engine.run`` job (input list, outputs, labels, report,
  ``--ray``).

Every value is checked here and only here, by the record's ``check()``: one
:class:`~engine.data.arg_checks.UsageError` line naming the flag, the value and the reason,
which a command turns into exit status 2 and the API raises. The words are the command's
flags, which docs/api.md maps to the keywords.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.decode import DEFAULT_MAX_PIXELS
from engine.data.extras import require
from engine.models.catalog import UnknownModelError
from engine.models.resolve import check_model_args
from engine.pipeline.config import NORMALIZE_ON, default_workers
from engine.pipeline.precision_sweep import check_precision_options
from engine.pipeline.results_options import check_results_options

BACKENDS = ("ort", "openvino", "torch")


def _cores() -> int:
    return os.cpu_count() or 1


@dataclass(kw_only=True)
class Options:
    """The base of the records: built from keywords, refusing unknown ones."""

    @classmethod
    def from_keywords(cls, keywords: dict):
        """The record from ``keywords``; an unknown keyword is a :class:`UsageError` naming it."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(keywords) - names)
        if unknown:
            raise UsageError(f"unknown option(s) {', '.join(unknown)}; {cls.__name__} takes: "
                             f"{', '.join(sorted(names))}")
        return cls(**keywords)

    @classmethod
    def from_namespace(cls, namespace) -> Options:
        """The record from a command's parsed flags (its parser's dests are the field names)."""
        given = vars(namespace)
        return cls(**{f.name: given[f.name] for f in fields(cls) if f.name in given})


@dataclass(kw_only=True)
class ModelOptions(Options):
    onnx: str | None = None  # an ONNX file; its model-info JSON beside it gives the preprocessing
    model: str | None = None  # a zoo/timm/torchvision name, exported on the fly
    library: str | None = None  # --model-library: timm, torchvision or mmcls
    weights: str | None = None  # checkpoint for ``model``; seeded random weights without it
    seed: int = 0
    preprocess: str | None = None  # a JSON/YAML data config replacing the model's
    deploy_model: str | None = None  # -m: a deploy-folder prefix DIR/NAME or an .onnx file
    vdsp_params: str | None = None  # a vendor vdsp_params file replacing the model's data config

    def check(self) -> None:
        if sum(v is not None for v in (self.onnx, self.model, self.deploy_model)) != 1:
            raise UsageError("give one model: --onnx FILE, -m PATH or --model NAME (onnx=, deploy_model= or model=)")
        if self.onnx is not None:
            self.onnx = os.fspath(self.onnx)
        try:
            check_model_args(self.onnx, self.model, self.library, self.weights, self.preprocess,
                             deploy_model=self.deploy_model, vdsp_params=self.vdsp_params)
        except UnknownModelError as e:
            raise UsageError(str(e)) from None


@dataclass(kw_only=True)
class EngineOptions(ModelOptions):
    backend: str | None = None  # ort (the default), openvino or torch; None under --auto: measured
    device: str = "cpu"  # cpu, cuda or auto
    precision: str | None = None  # openvino: fp32|bf16; torch: its autocast precision
    max_accuracy_loss: float | None = None  # --auto: a lower precision allowed within this top-1 loss (%)
    cuda_graphs: bool = False
    compile: bool = False
    normalize_on: str = "auto"  # auto, host or device
    batch_size: int = 8  # -b
    instances: int | None = None  # -i; None: 1, or 3 on a GPU
    processes: int = 1  # -p
    workers: int = field(default_factory=lambda: default_workers(_cores()))
    threads: int | None = None  # per instance; None: cores / instances
    topk: int = 5
    slots: int = 0  # 0: from workers and batch
    batch_delay_ms: float = 2.0
    transport: str = "ipc"
    tcp_host: str = "127.0.0.1"
    tcp_port: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS  # 0 turns the decompression-bomb limit off
    fast_decode: bool = False  # JPEGs far above the resize target decoded at a reduced DCT scale
    auto: bool = False
    auto_budget: float = 30.0

    MINIMUMS = (("-b", "batch_size", 1), ("-i", "instances", 1), ("-p", "processes", 1), ("--workers", "workers", 1),
                ("--threads", "threads", 1), ("--topk", "topk", 1), ("--slots", "slots", 0),
                ("--max-pixels", "max_pixels", 0), ("--auto-budget", "auto_budget", 1),
                ("--batch-delay-ms", "batch_delay_ms", 0), ("--tcp-port", "tcp_port", 0))

    def check(self) -> None:
        for flag, name, minimum in self.MINIMUMS:
            arg_checks.at_least(flag, getattr(self, name), minimum)
        self._check_choices()
        ModelOptions.check(self)

    def _check_choices(self) -> None:
        for flag, value, choices in (("--backend", self.backend, (None, *BACKENDS)),
                                     ("--normalize-on", self.normalize_on, ("auto", *NORMALIZE_ON)),
                                     ("--transport", self.transport, ("ipc", "tcp")),
                                     ("--precision", self.precision, (None, "fp32", "fp16", "bf16"))):
            if value not in choices:
                shown = ", ".join(c for c in choices if c)
                raise UsageError(f"{flag} {value!r}: use one of {shown}")
        if self.backend == "torch":
            require("torch", "--backend torch")
        if (self.cuda_graphs or self.compile) and self.backend != "torch":
            raise UsageError("--cuda-graphs and --compile apply to --backend torch")
        check_precision_options(self.backend, self.precision, self.auto, self.max_accuracy_loss)
        if self.normalize_on == "device" and self.backend != "torch":
            raise UsageError("--normalize-on device applies to --backend torch; an ONNX model takes the normalized "
                             "float32 input it was exported with")

    def check_model_fit(self, num_classes: int) -> None:
        """What can only be checked once the model is known."""
        arg_checks.at_most("--topk", self.topk, num_classes, "the model's classes")


@dataclass(kw_only=True)
class RunOptions(EngineOptions):
    datalist: str | None = None  # text file, one npz or image path per line
    images: str | None = None  # or a folder searched recursively
    shards: str | None = None  # or WebDataset tar shards (engine/data/shard_spec.py)
    label: str | None = None  # '<file> <class index>' lines
    labels_from_folders: bool = False
    path_output: str | None = None  # output_XXXXXX.npz files
    results: str | None = None  # a Parquet results table: FILE.parquet or a folder of parts
    results_logits: str | None = None  # float16 or float32: the table's logits column
    output_dtype: str = "float32"
    save_topk: str | None = None
    report: str | None = None
    errors: str | None = None  # failed items as JSON lines (default: beside report)
    iterations: int = 1
    warmup: int | None = None
    quiet: bool = False
    ray: str | None = None  # auto or HOST:PORT
    ray_shard: int | None = None

    @property
    def errors_path(self) -> str | None:
        return self.errors or (str(Path(self.report).with_suffix(".errors.jsonl")) if self.report else None)

    def check(self) -> None:
        """Refuse every bad value, input and output path before any work."""
        EngineOptions.check(self)
        arg_checks.at_least("--iterations", self.iterations, 1)
        arg_checks.at_least("--warmup", self.warmup, 0)
        if self.output_dtype not in ("float32", "float16"):
            raise UsageError(f"--output-dtype {self.output_dtype!r}: use float32 or float16")
        if sum(given is not None for given in (self.datalist, self.images, self.shards)) != 1:
            raise UsageError("give one input: --datalist FILE, --images FOLDER or --shards SPEC (datalist=, images= "
                             "or shards=)")
        if self.datalist is not None:
            arg_checks.input_file("--datalist", self.datalist)
        elif self.images is not None:
            arg_checks.input_dir("--images", self.images)
        if self.label:
            arg_checks.input_file("--label", self.label)
        self._check_cluster()
        check_results_options(self.results, self.results_logits, self.ray)
        arg_checks.output_dir("--path_output", self.path_output)
        for flag, path in (("--save-topk", self.save_topk), ("--report", self.report), ("--errors", self.errors_path)):
            arg_checks.output_file(flag, path)

    def _check_cluster(self) -> None:
        if self.ray_shard is not None and not self.ray:
            raise UsageError("--ray-shard applies to --ray")
        if not self.ray:
            return
        require("ray", "--ray")
        arg_checks.at_least("--ray-shard", self.ray_shard, 1)
        if self.iterations != 1:
            raise UsageError("--iterations applies to a local run; a --ray run passes over the datalist once")
        if self.auto:
            raise UsageError("--auto measures on this host, not on the cluster's nodes; with --ray give -i, "
                             "--threads and -b (engine.tune on a node finds them)")
