"""``engine.run(...)``: a whole ``python -m engine.run`` job as a function.

:func:`prepare` checks everything and resolves the model (every refusal is one
:class:`UsageError` line: the command's exit status 2); :func:`execute` runs the job and
returns a :class:`JobOutcome` (the report, the exit status the command would end with).
The command prints the outcome; :func:`run` returns its report, raising
:class:`RunFailed` for what the command ends with status 1, and ``KeyboardInterrupt``
for a run stopped by SIGINT/SIGTERM (what was done is flushed first, as in the command).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.api.model import resolve
from engine.api.options import RunOptions
from engine.api.run_config import build_run_config
from engine.cluster.run_options import join_cluster, run_on_cluster
from engine.data.arg_checks import UsageError
from engine.data.dataconfig import ModelInfo
from engine.data.datalist import read_datalist, scan_images
from engine.data.labels import LabelSource
from engine.data.output_lock import FolderLock
from engine.pipeline.config import RunConfig
from engine.pipeline.results_options import open_results, shard_items, shard_labels
from engine.pipeline.run_options import run_with_progress, start_line
from engine.pipeline.sink import Sink
from engine.pipeline.summary import build_report

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_ITEMS_FAILED = 0, 1, 2, 3


class RunFailed(RuntimeError):
    """The run could not start, or had to stop (the command's exit status 1)."""


@dataclass
class PreparedJob:
    options: RunOptions
    items: list[str]
    labels: LabelSource
    lock: FolderLock | None
    model_path: str
    info: ModelInfo

    def release(self) -> None:
        """Let another run write into ``path_output`` (however this one ended)."""
        if self.lock is not None:
            self.lock.release()


@dataclass
class JobOutcome:
    report: dict
    exit_status: int
    errors_path: str | None


def prepare(options: RunOptions) -> PreparedJob:
    """Check every option, read the inputs, resolve the model and join the cluster; raises
    :class:`UsageError` (and nothing else) for what cannot work."""
    options.check()
    try:
        if options.shards:
            items = shard_items(options.shards, options.workers)
        else:
            items = read_datalist(options.datalist) if options.datalist else scan_images(options.images)
        labels = shard_labels(options.label, options.labels_from_folders, options.shards)
    except (OSError, ValueError) as e:
        raise UsageError(str(e)) from None
    if not items:
        raise UsageError(f"{options.datalist or options.images or options.shards}: no items to run")
    model_path, info = resolve(options)
    lock = FolderLock("--path_output", options.path_output) if options.path_output else None
    if options.ray:
        join_cluster(options.ray)
    return PreparedJob(options, items, labels, lock, model_path, info)


def configure(job: PreparedJob) -> RunConfig:
    """The run's configuration (the --auto sweep runs here); :class:`RunFailed` when it cannot be made."""
    o = job.options
    try:
        return build_run_config(o, job.model_path, job.info, iterations=o.iterations, warmup=o.warmup,
                                output_dtype=o.output_dtype, quiet=o.quiet,
                                loss_items=job.items if o.max_accuracy_loss is not None else None)
    except (OSError, ValueError, RuntimeError) as e:
        raise RunFailed(str(e)) from None


def execute(job: PreparedJob, cfg: RunConfig) -> JobOutcome:
    """Run the job through the local pipeline (or the cluster with ``ray``) and write its files."""
    o = job.options
    warning = job.labels.shared_label_warning(job.items, o.label)
    if warning:
        print(f"engine: {warning}", file=sys.stderr)
    print(start_line(cfg, len(job.items), job.model_path), file=sys.stderr, flush=True)
    sink = Sink(job.items, topk=cfg.topk, class_names=cfg.class_names, labels=job.labels,
                path_output=o.path_output, output_dtype=cfg.output_dtype, save_topk=o.save_topk,
                errors_path=o.errors_path,
                results_table=None if o.ray else open_results(o.results, o.results_logits, topk=cfg.topk,
                                                              class_names=cfg.class_names, labels=job.labels,
                                                              items=job.items))
    if o.ray:
        broker = run_on_cluster(cfg, job.items, sink, shard_size=o.ray_shard, threads_given=o.threads is not None,
                                results=o.results, results_logits=o.results_logits)
    else:
        broker = run_with_progress(cfg, job.items, sink)
    job.release()
    model_meta = {"name": job.info.name, "library": job.info.library, "file": job.model_path,
                  "weights_label": cfg.model_label}
    report = build_report(broker, cfg, sink, model_info=model_meta, items_total=len(job.items))
    report["errors"] = sink.errors
    if o.ray:
        report.update(broker.cluster_figures())
    if o.report:
        Path(o.report).write_text(json.dumps(report, indent=2) + "\n")
    if broker.exit_signal is not None:
        status = 128 + broker.exit_signal
    elif broker.stop_reason:
        status = EXIT_FATAL
    else:
        status = EXIT_ITEMS_FAILED if sink.errors else EXIT_OK
    return JobOutcome(report, status, o.errors_path)


def run(**keywords) -> dict:
    """Do what ``python -m engine.run`` does with these flags as keywords (``datalist=`` or
    ``images=``, ``onnx=`` or ``model=``, ``batch_size=`` for ``-b``, ``instances=`` for
    ``-i``, ``processes=`` for ``-p``, ``path_output=``, ``label=``, ...: the fields of
    :class:`RunOptions`) and return the report dict (what ``--report`` writes). Failed
    items are listed in ``report["errors"]``; they do not raise."""
    keywords.setdefault("quiet", True)
    job = prepare(RunOptions.from_keywords(keywords))
    try:
        outcome = execute(job, configure(job))
    finally:
        job.release()
    if outcome.exit_status > 128:
        raise KeyboardInterrupt(f"the run was interrupted by signal {outcome.exit_status - 128}")
    if outcome.exit_status == EXIT_FATAL:
        raise RunFailed(f"the run stopped: {outcome.report['stopped']}")
    return outcome.report
