"""``--results DIR_OR_FILE.parquet``: one row per item in a Parquet table (pyarrow).

The columns are the contract (docs/formats.md): ``index`` (the item's position in the
datalist), ``source`` (its path, or ``SHARD#MEMBER``), ``label`` (null when unknown),
``topk_index``, ``topk_name``, ``topk_prob`` (lists, best first; null for a failed item),
``error`` (null unless the item failed) and, with ``--results-logits float16|float32``,
``logits`` (the model's first output).

Rows are built per batch from the arrays the device instances send back, and written in
row groups on a thread of their own behind a bounded queue, as the raw output files are
(engine/pipeline/output_files.py): the broker's thread only queues, and memory holds at
most one row group and the queue. Rows come in completion order, which is nearly datalist
order; ``index`` gives the exact one.

- ``FILE.parquet``: one file, written as ``.FILE.parquet.tmp`` and renamed once its footer
  is written when the run ends, however it ends (Ctrl-C/SIGTERM included); its key-value
  metadata say ``engine.complete`` and ``engine.rows``/``engine.items``.
- A directory: part files ``part-000000.parquet``, ... of at most ``PART_ROWS`` rows, each
  written as ``.part-*.tmp`` and renamed when closed, so even a killed run leaves whole
  parts (pyarrow, pandas, DuckDB and Ray Data skip names starting with ``.`` or ``_``),
  and ``_manifest.json`` (parts, rows, items, complete).

A cluster run writes one part per shard on the node that ran it (:func:`write_part`;
engine/cluster/node_table.py).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.data.atomic import replaced_when_written
from engine.data.labels import LabelSource
from engine.data.tar_shards import source_name
from engine.pipeline.results_options import results_to_file
from engine.pipeline.writer_thread import WriterThread

COLUMNS = ("index", "source", "label", "topk_index", "topk_name", "topk_prob", "error")
MANIFEST = "_manifest.json"
ROW_GROUP_BYTES = 32 << 20  # logits dominate a row; without them a group is ROW_GROUP_MAX_ROWS
ROW_GROUP_MAX_ROWS = 65536
PART_ROWS = 1 << 20
QUEUED_BATCHES = 256


@dataclass
class TableSpec:
    """What a row holds: picklable, so a cluster node builds the same rows."""

    topk: int
    class_names: list[str] | None
    labels: LabelSource
    logits: str | None = None  # None, float16 or float32

    def schema(self) -> pa.Schema:
        fields = [pa.field("index", pa.int64(), nullable=False), pa.field("source", pa.string(), nullable=False),
                  pa.field("label", pa.int32()), pa.field("topk_index", pa.list_(pa.int32())),
                  pa.field("topk_name", pa.list_(pa.string())), pa.field("topk_prob", pa.list_(pa.float32())),
                  pa.field("error", pa.string())]
        if self.logits:
            fields.append(pa.field("logits", pa.list_(pa.from_numpy_dtype(np.dtype(self.logits)))))
        return pa.schema(fields)

    def group_rows(self, classes: int) -> int:
        row_bytes = 64 + 12 * self.topk + (np.dtype(self.logits).itemsize * classes if self.logits else 0)
        return max(256, min(ROW_GROUP_MAX_ROWS, ROW_GROUP_BYTES // row_bytes))

    def _names(self, ranked: np.ndarray) -> pa.Array:
        flat = ranked.reshape(-1)
        if self.class_names:
            names = np.asarray(self.class_names, dtype=object)
            return pa.array(names[np.clip(flat, 0, len(names) - 1)], pa.string())
        return pa.array([str(c) for c in flat.tolist()], pa.string())

    def rows(self, items: list[str], seqs, ranked: np.ndarray, probs: np.ndarray,
             logits: np.ndarray | None) -> pa.RecordBatch:
        """The rows of items that have a result (``items`` are theirs, in ``seqs`` order)."""
        n, k = len(seqs), min(self.topk, ranked.shape[1])
        offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
        top = np.ascontiguousarray(ranked[:, :k])
        columns = [pa.array(np.asarray(seqs, dtype=np.int64)), pa.array([source_name(i) for i in items], pa.string()),
                   pa.array([self.labels(i) for i in items], pa.int32()),
                   pa.ListArray.from_arrays(offsets, pa.array(top.reshape(-1).astype(np.int32))),
                   pa.ListArray.from_arrays(offsets, self._names(top)),
                   pa.ListArray.from_arrays(offsets, pa.array(np.asarray(probs[:, :k], np.float32).reshape(-1))),
                   pa.nulls(n, pa.string())]
        if self.logits:
            values = np.ascontiguousarray(logits.reshape(n, -1), dtype=self.logits)
            columns.append(pa.ListArray.from_arrays(pa.array(np.arange(0, values.size + 1, max(1, values.shape[1]),
                                                                       dtype=np.int32)),
                                                    pa.array(values.reshape(-1))))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema())

    def error_rows(self, items: list[str], seqs, reasons: list[str]) -> pa.RecordBatch:
        """The rows of failed items: top-k and logits null, ``error`` the reason."""
        schema = self.schema()
        n = len(seqs)
        columns = [pa.array(np.asarray(seqs, dtype=np.int64)), pa.array([source_name(i) for i in items], pa.string()),
                   pa.array([self.labels(i) for i in items], pa.int32())]
        columns += [pa.nulls(n, schema.field(name).type) for name in schema.names[3:]]
        columns[COLUMNS.index("error")] = pa.array(reasons, pa.string())
        return pa.RecordBatch.from_arrays(columns, schema=schema)


def part_name(number: int) -> str:
    return f"part-{number:06d}.parquet"


def clear_folder(folder: Path) -> None:
    """A folder table's start: the folder made, an earlier run's parts and manifest removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("part-*.parquet"), folder / MANIFEST]:
        old.unlink(missing_ok=True)


def write_manifest(folder: Path, rows: int, items: int, parts: list[str], **more) -> None:
    manifest = {"complete": rows == items, "rows": rows, "items": items, "parts": parts, **more}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def say_if_incomplete(path: Path, rows: int, items: int) -> None:
    """Say when a table holds fewer rows than the run has items."""
    if rows != items:
        print(f"engine: results table {path}: {rows} of {items} items (the run did not finish; the table is "
              "readable and holds what finished)", file=sys.stderr, flush=True)


def write_part(path: Path, spec: TableSpec, batches: list[pa.RecordBatch]) -> int:
    """One whole part file from ``batches`` (sorted by ``index``), written under a temporary
    name and renamed: a part written again (a retried shard) replaces the old one whole."""
    table = pa.Table.from_batches(batches, schema=spec.schema()).sort_by("index")
    with replaced_when_written(path) as tmp:
        pq.write_table(table, tmp, row_group_size=spec.group_rows(_classes(table)))
    return table.num_rows


def _classes(table: pa.Table) -> int:
    if "logits" not in table.column_names or table.num_rows == 0:
        return 0
    first = table.column("logits").drop_null()
    return len(first[0]) if len(first) else 0


class ResultsTable:
    """The sink's table writer (see the module docstring): ``put``/``put_error`` from the
    broker's thread, ``close`` when the run ends."""

    def __init__(self, path: str, spec: TableSpec, items: list[str]):
        self.path, self.spec, self.items = Path(path), spec, items
        self.to_file = results_to_file(path)
        if not self.to_file:
            clear_folder(self.path)
        self.rows = 0
        self.parts: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._part_rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._group_rows = spec.group_rows(0)
        self._thread = WriterThread("engine-results-table", self._take, queued=QUEUED_BATCHES,
                                    errors=(OSError, pa.ArrowException))

    @property
    def wants_logits(self) -> bool:
        return self.spec.logits is not None

    def put(self, seqs: np.ndarray, ranked: np.ndarray, probs: np.ndarray, logits: np.ndarray | None) -> None:
        """Queue the rows of one batch's items that have a result (copies: the caller's arrays are reused)."""
        if len(seqs):
            self._thread.put(("rows", np.array(seqs), ranked.copy(), probs.copy(),
                              None if logits is None else logits.copy()))

    def put_error(self, seq: int, reason: str) -> None:
        self._thread.put(("error", seq, reason))

    def close(self) -> None:
        """Write what is queued, the last row group and the footer (or the manifest); say so
        when the table holds fewer rows than the run has items."""
        try:
            self._thread.close()
        finally:
            self._finish()
        self._thread.raise_error()
        say_if_incomplete(self.path, self.rows, len(self.items))

    def _take(self, entry: tuple) -> None:
        if entry[0] == "rows":
            _, seqs, ranked, probs, logits = entry
            if logits is not None and self._pending_rows == 0 and not self.rows:
                self._group_rows = self.spec.group_rows(int(np.prod(logits.shape[1:])))
            batch = self.spec.rows([self.items[s] for s in seqs.tolist()], seqs, ranked, probs, logits)
        else:
            _, seq, reason = entry
            batch = self.spec.error_rows([self.items[seq]], [seq], [reason])
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self._group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        if self._writer is None:
            self._open()
        table = pa.Table.from_batches(self._pending, schema=self.spec.schema())
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.rows += table.num_rows
        self._part_rows += table.num_rows
        self._pending, self._pending_rows = [], 0
        if not self.to_file and self._part_rows >= PART_ROWS:
            self._close_part()

    def _open(self) -> None:
        if self.to_file:
            self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        else:
            self._tmp = self.path / f".{part_name(len(self.parts))}.tmp"
        self._writer = pq.ParquetWriter(self._tmp, self.spec.schema())

    def _close_part(self) -> None:
        self._writer.close()
        self._writer = None
        name = part_name(len(self.parts))
        os.replace(self._tmp, self.path / name)
        self.parts.append(name)
        self._part_rows = 0

    def _finish(self) -> None:
        try:
            self._flush()
        except (OSError, pa.ArrowException) as exc:
            self._thread.fail(exc)
        if self.to_file:
            if self._writer is None:
                self._open()  # an empty run still leaves a table with the columns
            self._writer.add_key_value_metadata({"engine.complete": json.dumps(self.rows == len(self.items)),
                                                 "engine.rows": str(self.rows), "engine.items": str(len(self.items))})
            self._writer.close()
            os.replace(self._tmp, self.path)
            return
        if self._writer is not None:
            self._close_part()
        write_manifest(self.path, self.rows, len(self.items), self.parts)
