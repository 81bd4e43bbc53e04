"""``--ray`` with ``--results DIR``: every node writes its shards' rows of the results table
itself, one part file per shard, into a folder every node can write (shared storage).

Why: with the driver writing, every item's ranked classes (and logits) cross the network
to one process, whose per-item work caps the cluster (docs/cluster.md). Here a node
builds its shard's rows (engine/pipeline/results_table.py, the same columns as a local
run), writes ``part-<shard>.parquet`` under a temporary name and renames it, and sends
the driver only the shard's tally (items, failed, labelled, top-1 and top-5 hits), its
failed items' reasons (the errors file) and the part's name and row count (the manifest).

Exactly once: a part is named by its shard, so a shard that runs again (its actor or node
died before the driver took its result) replaces its part whole, never adds a second; the
driver counts a shard once, when it takes its result, and writes ``_manifest.json`` with
the parts it took. When the job also writes ``--path_output`` or ``--save-topk``, the
node sends its rows back too (``return_rows``), and the driver writes those files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.cluster.shard_result import PartFile, ShardResult, ShardTally
from engine.pipeline.results_table import (
    TableSpec,
    clear_folder,
    part_name,
    say_if_incomplete,
    write_manifest,
    write_part,
)
from engine.pipeline.sink import NON_FINITE


@dataclass
class NodeTable:
    folder: str
    spec: TableSpec
    return_rows: bool = False  # the driver writes output files or top-k text too

    def prepare(self) -> None:
        """The driver, before any shard: the folder made, an earlier run's parts and manifest removed."""
        clear_folder(Path(self.folder))

    def write(self, result: ShardResult, items: list[str], start: int) -> ShardResult:
        """A node, once its shard is through: the part written, the result cut down to its tally."""
        spec, good = self.spec, result.ranked[:, 0] >= 0
        positions = result.positions[good]
        errors = list(result.errors) + [(int(p), NON_FINITE) for p in result.positions[~good]]
        batches = []
        if len(positions):
            logits = result.outputs[0][good] if spec.logits else None
            batches.append(spec.rows([items[p] for p in positions], start + positions, result.ranked[good],
                                     result.probs[good], logits))
        if errors:
            batches.append(spec.error_rows([items[p] for p, _ in errors], [start + p for p, _ in errors],
                                           [reason for _, reason in errors]))
        rows = write_part(Path(self.folder) / part_name(result.shard), spec, batches)
        result.part = PartFile(part_name(result.shard), rows, result.node)
        if self.return_rows:
            return result
        result.tally = _tally(spec, items, positions, result.ranked[good], len(errors))
        result.errors = errors
        empty = np.empty((0, result.ranked.shape[1]))
        result.positions, result.outputs = result.positions[:0], []
        result.ranked, result.probs = empty.astype(result.ranked.dtype), empty.astype(result.probs.dtype)
        return result


def _tally(spec: TableSpec, items: list[str], positions: np.ndarray, ranked: np.ndarray, failed: int) -> ShardTally:
    labels = np.array([spec.labels(items[p]) for p in positions] if spec.labels.active else [None] * len(positions),
                      dtype=object)
    known = np.flatnonzero(labels != None)  # noqa: E711 - elementwise on an object array
    truth = labels[known].astype(np.int64)
    top1 = int(np.count_nonzero(ranked[known, 0] == truth))
    top5 = int(np.count_nonzero((ranked[known, :5] == truth[:, None]).any(axis=1)))
    return ShardTally(done=len(positions), failed=failed, labelled=len(known), top1=top1, top5=top5)


@dataclass
class PartBook:
    """The driver's manifest: the part each shard's taken result names."""

    table: NodeTable
    items: int
    parts: dict[int, PartFile] = field(default_factory=dict)

    def took(self, shard: int, part: PartFile | None) -> None:
        if part is not None:
            self.parts[shard] = part

    def fail_shard(self, shard: int, items: list[str], start: int, reason: str) -> None:
        """A shard no actor could run: its items as error rows, written by the driver."""
        spec = self.table.spec
        batch = spec.error_rows(items, list(range(start, start + len(items))), [reason] * len(items))
        rows = write_part(Path(self.table.folder) / part_name(shard), spec, [batch])
        self.parts[shard] = PartFile(part_name(shard), rows, None)

    def close(self) -> None:
        """``_manifest.json``; stray temporary parts of killed nodes removed; said when incomplete."""
        folder = Path(self.table.folder)
        for tmp in folder.glob(".part-*.tmp"):
            tmp.unlink(missing_ok=True)
        rows = sum(p.rows for p in self.parts.values())
        write_manifest(folder, rows, self.items, [self.parts[s].file for s in sorted(self.parts)],
                       nodes=sorted({p.node for p in self.parts.values() if p.node}))
        say_if_incomplete(folder, rows, self.items)
