"""The sink: takes each batch's ranked classes, scores them against labels, writes
outputs in datalist order.

The device instances rank their logits (engine/pipeline/device_worker.py), so the sink
works per batch: a batch with nothing per item to do (no labels, no top-k text, no output
files) costs a few array operations whatever its size.

Results reach the sink in completion order; everything a user reads as a sequence (the
top-k text file, the errors file) goes through a reorder buffer keyed by sequence
number, so files come out in datalist order. The buffer holds at most the items in
flight, because the broker hands out sequence numbers in order and bounds them by the
slot count. Raw outputs are written under their own sequence number, on a thread of their own
(engine/pipeline/output_files.py).
"""
from __future__ import annotations

import bisect
import json
from pathlib import Path

import numpy as np

from engine.data.labels import LabelSource, class_name
from engine.data.tar_shards import source_name
from engine.data.topk_text import format_topk_lines
from engine.pipeline.output_files import OutputFiles

NON_FINITE = "model output holds NaN or inf"  # an item's error when its logits are not all finite


class OrderedWriter:
    """Writes per-item text blocks to a file in sequence order, whatever the arrival order."""

    def __init__(self, path: Path | None):
        self._file = open(path, "w") if path is not None else None
        self._pending: dict[int, str] = {}
        self._next = 0

    @property
    def active(self) -> bool:
        return self._file is not None

    def put(self, seq: int, text: str) -> None:
        if self._file is None:
            return
        self._pending[seq] = text
        while self._next in self._pending:
            self._file.write(self._pending.pop(self._next))
            self._next += 1

    def skip(self, seq: int) -> None:
        """Mark ``seq`` as producing no text here (it went to the other file)."""
        self.put(seq, "")

    def skip_all(self, seqs: list[int]) -> None:
        """``skip`` each of ``seqs`` (increasing); a run of the very next ones in one step."""
        if self._file is None:
            return
        if not self._pending and seqs and seqs[0] == self._next and seqs[-1] - seqs[0] == len(seqs) - 1:
            self._next += len(seqs)
            return
        for seq in seqs:
            self.put(seq, "")

    def close(self) -> None:
        if self._file is None:
            return
        for seq in sorted(self._pending):  # items after a gap left by an interrupted run
            self._file.write(self._pending[seq])
        self._file.close()
        self._file = None


class Sink:
    def __init__(self, items: list[str], *, topk: int, class_names, labels: LabelSource,
                 path_output: str | None, output_dtype: str, save_topk: str | None, errors_path: str | None,
                 results_table=None):
        """``results_table``: a :class:`~engine.pipeline.results_table.ResultsTable` (``--results``) or None."""
        self.items = items
        self.topk = topk
        self.class_names = list(class_names) if class_names else None
        self.labels = labels
        self.output_files = OutputFiles(Path(path_output), output_dtype) if path_output else None
        self.topk_writer = OrderedWriter(Path(save_topk) if save_topk else None)
        self.error_writer = OrderedWriter(Path(errors_path) if errors_path else None)
        self.results_table = results_table
        self.errors: list[dict] = []
        self.done = 0
        self.labelled = 0
        self.top1_hits = 0
        self.top5_hits = 0

    def _first_pass(self, seq: int) -> bool:
        return seq < len(self.items)

    def _name(self, cls: int) -> str:
        return class_name(self.class_names, cls)

    def ranking(self) -> dict:
        """What the device instances send back: the top ``k`` the sink ranks and scores by
        (5 at least, for top-5 accuracy), and the raw outputs only when they are written."""
        table_logits = self.results_table is not None and self.results_table.wants_logits
        return {"k": max(self.topk, 5), "outputs": self.output_files is not None or table_logits}

    def results(self, seqs: list[int], ranked: np.ndarray, probs: np.ndarray, outputs: list[np.ndarray]) -> int:
        """Take one batch (``seqs`` increasing, their ranked classes and probabilities, the
        raw outputs when written); returns how many items failed (non-finite logits)."""
        rows = range(len(seqs))
        bad = np.flatnonzero(ranked[:, 0] < 0)
        for j in bad:
            self.error(seqs[j], NON_FINITE)
        if len(bad):
            rows = [j for j in rows if ranked[j, 0] >= 0]
        self.done += len(rows)
        first_pass = bisect.bisect_left(seqs, len(self.items))  # seqs increase: the first pass comes first
        if self.labels.active or self.topk_writer.active or self.output_files is not None:
            for j in rows:
                if j < first_pass:
                    self._first_pass_result(seqs[j], ranked[j], probs[j], [o[j] for o in outputs])
        self.error_writer.skip_all([seqs[j] for j in rows if j < first_pass] if len(bad) else seqs[:first_pass])
        if self.results_table is not None:
            self._table_rows(seqs[:first_pass], ranked[:first_pass], probs[:first_pass], outputs)
        return len(bad)

    def _table_rows(self, seqs: list[int], ranked: np.ndarray, probs: np.ndarray, outputs: list[np.ndarray]) -> None:
        """The first pass's results into the results table, the failed rows left to ``error``."""
        good = np.flatnonzero(ranked[:, 0] >= 0)
        logits = outputs[0][good] if self.results_table.wants_logits else None
        self.results_table.put(np.asarray(seqs)[good], ranked[good, :self.topk], probs[good, :self.topk], logits)

    def _first_pass_result(self, seq: int, ranked: np.ndarray, probs: np.ndarray, rows: list[np.ndarray]) -> None:
        path = self.items[seq]
        label = self.labels(path)
        if label is not None:
            self.labelled += 1
            self.top1_hits += int(ranked[0] == label)
            self.top5_hits += int(label in ranked[:5])
        if self.topk_writer.active:
            top = ranked[: self.topk]
            names = [self._name(int(c)) for c in top]
            self.topk_writer.put(seq, "".join(line + "\n" for line in format_topk_lines(path, top, probs[: self.topk],
                                                                                         names)))
        if self.output_files is not None:
            self.output_files.put(seq, rows)

    def add_tally(self, done: int, labelled: int, top1_hits: int, top5_hits: int) -> None:
        """Counts of results written elsewhere (a cluster node's part of the results table)."""
        self.done += done
        self.labelled += labelled
        self.top1_hits += top1_hits
        self.top5_hits += top5_hits

    def error(self, seq: int, reason: str) -> None:
        index = seq % len(self.items)
        record = {"seq": seq, "index": index, "item": source_name(self.items[index]), "error": reason}
        self.errors.append(record)
        if self._first_pass(seq):
            self.error_writer.put(seq, json.dumps(record) + "\n")
            self.topk_writer.skip(seq)
            if self.results_table is not None:
                self.results_table.put_error(seq, reason)

    def accuracy(self) -> dict:
        if not self.labelled:
            return {"labelled": 0, "top1": None, "top5": None}
        return {"labelled": self.labelled, "top1": 100.0 * self.top1_hits / self.labelled,
                "top5": 100.0 * self.top5_hits / self.labelled}

    def close(self) -> None:
        self.topk_writer.close()
        self.error_writer.close()
        if self.output_files is not None:
            self.output_files.close()
        if self.results_table is not None:
            self.results_table.close()
