"""The sink: ranks logits, scores against labels, writes outputs in datalist order.

Results reach the sink in completion order; everything a user reads as a sequence (the
top-k text file, the errors file) goes through a reorder buffer keyed by sequence
number, so files come out in datalist order. The buffer holds at most the items in
flight, because the broker hands out sequence numbers in order and bounds them by the
slot count. Raw outputs are written under their own sequence number straight away.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import kernels
from engine.data.labels import LabelSource
from engine.data.topk_text import format_topk_lines


class OrderedWriter:
    """Writes per-item text blocks to a file in sequence order, whatever the arrival order."""

    def __init__(self, path: Path | None):
        self._file = open(path, "w") if path is not None else None
        self._pending: dict[int, str] = {}
        self._next = 0

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

    def close(self) -> None:
        if self._file is None:
            return
        for seq in sorted(self._pending):  # items after a gap left by an interrupted run
            self._file.write(self._pending[seq])
        self._file.close()
        self._file = None


class Sink:
    def __init__(self, items: list[str], *, topk: int, class_names, labels: LabelSource,
                 path_output: str | None, output_dtype: str, save_topk: str | None, errors_path: str | None):
        self.items = items
        self.topk = topk
        self.class_names = list(class_names) if class_names else None
        self.labels = labels
        self.output_dir = Path(path_output) if path_output else None
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.output_dtype = np.dtype(output_dtype)
        self.topk_writer = OrderedWriter(Path(save_topk) if save_topk else None)
        self.error_writer = OrderedWriter(Path(errors_path) if errors_path else None)
        self.errors: list[dict] = []
        self.done = 0
        self.labelled = 0
        self.top1_hits = 0
        self.top5_hits = 0

    def _first_pass(self, seq: int) -> bool:
        return seq < len(self.items)

    def _name(self, cls: int) -> str:
        return self.class_names[cls] if self.class_names and 0 <= cls < len(self.class_names) else str(cls)

    def results(self, seqs: list[int], outputs: list[np.ndarray]) -> list[bool]:
        """Score one batch; returns per item whether it succeeded (non-finite logits fail)."""
        logits = outputs[0].reshape(len(seqs), -1)
        ranked, probs = kernels.softmax_topk(logits, min(max(self.topk, 5), logits.shape[1]))
        ok = []
        for j, seq in enumerate(seqs):
            if ranked[j, 0] < 0:
                self.error(seq, "model output holds NaN or inf")
                ok.append(False)
                continue
            ok.append(True)
            self.done += 1
            if not self._first_pass(seq):
                continue
            path = self.items[seq]
            label = self.labels(path)
            if label is not None:
                self.labelled += 1
                self.top1_hits += int(ranked[j, 0] == label)
                self.top5_hits += int(label in ranked[j, :5])
            top = ranked[j, : self.topk]
            names = [self._name(int(c)) for c in top]
            lines = format_topk_lines(path, top, probs[j, : self.topk], names)
            self.topk_writer.put(seq, "".join(line + "\n" for line in lines))
            self.error_writer.skip(seq)
            if self.output_dir is not None:
                self._write_outputs(seq, [o[j] for o in outputs])
        return ok

    def _write_outputs(self, seq: int, rows: list[np.ndarray]) -> None:
        arrays = {f"output_{k}": row.reshape(1, *row.shape).astype(self.output_dtype) for k, row in enumerate(rows)}
        final = self.output_dir / f"output_{seq:06d}.npz"
        tmp = final.with_name(f".{final.name}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, final)

    def error(self, seq: int, reason: str) -> None:
        index = seq % len(self.items)
        record = {"seq": seq, "index": index, "item": self.items[index], "error": reason}
        self.errors.append(record)
        if self._first_pass(seq):
            self.error_writer.put(seq, json.dumps(record) + "\n")
            self.topk_writer.skip(seq)

    def accuracy(self) -> dict:
        if not self.labelled:
            return {"labelled": 0, "top1": None, "top5": None}
        return {"labelled": self.labelled, "top1": 100.0 * self.top1_hits / self.labelled,
                "top5": 100.0 * self.top5_hits / self.labelled}

    def close(self) -> None:
        self.topk_writer.close()
        self.error_writer.close()
