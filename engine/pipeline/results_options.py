"""engine.run's dataset-scale input and output options, checked before any work:
``--shards SPEC`` (tar shards: engine/data/shard_spec.py) and ``--results DIR_OR_FILE.parquet``
with ``--results-logits float16|float32`` (engine/pipeline/results_table.py).

Kept apart from the results writer, which imports pyarrow: pyarrow is the ``results``
extra, and a run without ``--results`` never imports it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.extras import require
from engine.data.labels import LabelSource
from engine.data.shard_spec import read_shards

LOGITS_DTYPES = ("float16", "float32")


def results_to_file(results: str | Path) -> bool:
    """``--results FILE.parquet`` is one file; any other path a folder of parts."""
    return str(results).endswith(".parquet")


def check_results_options(results: str | None, results_logits: str | None, ray: str | None) -> None:
    """Refuse what ``--results`` cannot do (one :class:`UsageError` line), pyarrow missing included."""
    if results_logits is not None and results is None:
        raise UsageError("--results-logits applies to --results")
    if results is None:
        return
    require("results", "--results")
    if results_logits is not None and results_logits not in LOGITS_DTYPES:
        raise UsageError(f"--results-logits {results_logits!r}: use float16 or float32")
    if results_to_file(results):
        if ray:
            raise UsageError(f"--results {results}: with --ray give a folder (each node writes its own part "
                             "files there), not a .parquet file")
        arg_checks.output_file("--results", results)
    else:
        arg_checks.output_dir("--results", results)


def shard_items(spec: str, workers: int = 1) -> list[str]:
    """``--shards SPEC``'s items (references to members; faults found by the scan included,
    each to become its item's error record); label members that do not parse, said once."""
    found = read_shards(spec, workers)
    if found.warnings:
        print(f"engine: warning: --shards: {len(found.warnings)} label member(s) could not be read, their samples "
              f"run unlabelled (first: {found.warnings[0]})", file=sys.stderr)
    if not found.items:
        raise UsageError(f"--shards {spec}: the {len(found.shards)} shard(s) hold no image member")
    return found.items


def shard_labels(label: str | None, labels_from_folders: bool, shards: str | None) -> LabelSource:
    """The run's labels: a label file or folder names when given, else the shards' own ``cls``/``json``."""
    return LabelSource(label, labels_from_folders, embedded=bool(shards) and not label and not labels_from_folders)


def open_results(results: str | None, results_logits: str | None, *, topk: int, class_names, labels: LabelSource,
                 items: list[str]):
    """The sink's :class:`~engine.pipeline.results_table.ResultsTable`, or None without ``--results``."""
    if results is None:
        return None
    from engine.pipeline.results_table import ResultsTable, TableSpec

    spec = TableSpec(topk, list(class_names) if class_names else None, labels, results_logits)
    return ResultsTable(results, spec, items)
