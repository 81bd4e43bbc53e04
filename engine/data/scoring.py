"""Top-1/top-5 scoring of saved results (what ``python -m engine.eval`` reports).

- ``topk RESULT.txt``: the top-k text format (see :mod:`engine.data.topk_text`).
- ``imagenet --result_path DIR --datalist FILE``: raw ``output_XXXXXX.npz`` files, the
  i-th datalist entry paired with ``output_{i:06d}.npz`` (never by sorted glob, which
  silently shifts every later pair when one file is missing).

True classes come from ``--label FILE`` (``<file> <index>`` lines) or
folder names (``val/<wnid>/...``), both through :class:`engine.data.labels.LabelSource`.
Class ids are compared, not names.

Every item that cannot be scored (no result, no label, a result of the wrong shape) is
listed by name with its reason, and the rates are taken over the items scored only.
"""
from __future__ import annotations

import collections
import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data.labels import LabelSource, imagenet_class_names, read_class_names
from engine.data.topk_text import iter_topk_blocks

ACCURACY_TAG = "[ENGINE]"
LISTED_PER_REASON = 20
"""How many item names per skip reason are printed; the JSON report holds them all."""


def accuracy_line(top1: float, top5: float, tag: str = ACCURACY_TAG) -> str:
    """The seed's accuracy line with the engine's tag; rates in percent.

    ``[ENGINE]:  top1_rate: 69.028 top5_rate: 88.626`` (log scrapers of the seed's
    ``[VACC]:  top1_rate: ...`` line keep working).
    """
    return f"{tag}:  top1_rate: {top1:.3f} top5_rate: {top5:.3f}"


@dataclass
class ClassCounts:
    count: int = 0
    top1: int = 0
    top5: int = 0


@dataclass
class Accuracy:
    """Running top-1/top-5 counts plus every item that could not be scored, by reason."""

    topk: int = 5
    scored: int = 0
    top1_hits: int = 0
    top5_hits: int = 0
    min_ranks: int | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)
    per_class: dict[int, ClassCounts] = field(default_factory=lambda: collections.defaultdict(ClassCounts))

    def add(self, ranked_ids, label: int) -> None:
        """Score one item: ``ranked_ids`` best first (at least one id)."""
        ranked = [int(c) for c in ranked_ids[: self.topk]]
        self.min_ranks = len(ranked) if self.min_ranks is None else min(self.min_ranks, len(ranked))
        hit1 = bool(ranked) and ranked[0] == label
        hit5 = label in ranked
        self.scored += 1
        self.top1_hits += hit1
        self.top5_hits += hit5
        counts = self.per_class[label]
        counts.count += 1
        counts.top1 += hit1
        counts.top5 += hit5

    def skip(self, item: str, reason: str) -> None:
        self.skipped.setdefault(reason, []).append(item)

    @property
    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    @property
    def top1_rate(self) -> float | None:
        return 100.0 * self.top1_hits / self.scored if self.scored else None

    @property
    def top5_rate(self) -> float | None:
        return 100.0 * self.top5_hits / self.scored if self.scored else None

    def summary(self) -> dict:
        return {
            "items": self.scored + self.skipped_count,
            "scored": self.scored,
            "skipped": self.skipped_count,
            "top1_correct": self.top1_hits,
            "top5_correct": self.top5_hits,
            "top1_rate": self.top1_rate,
            "top5_rate": self.top5_rate,
            "ranks_per_item": self.min_ranks,
            "skipped_by_reason": {r: {"count": len(v), "items": v} for r, v in self.skipped.items()},
        }


def score_topk_file(result_file: str | Path, labels: LabelSource) -> tuple[Accuracy, dict[int, str]]:
    """Score a top-k text results file, one item per block of lines (as the datalist
    listed them); also returns the class names the file carries by id."""
    acc = Accuracy()
    names: dict[int, str] = {}
    for item, entries in iter_topk_blocks(result_file):
        for entry in entries:
            names.setdefault(entry.class_id, entry.name)
        label = labels(item)
        if label is None:
            acc.skip(item, "no label")
            continue
        acc.add([e.class_id for e in entries], label)
    return acc, names


def _ranking(logits: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most probable classes of one ``(1, C)`` result, best first.

    The same kernel as the engine's sink, so both rank ties alike. Imported here: numba
    takes a second to load, which the top-k text mode never needs.
    """
    from engine import kernels

    if logits.dtype.kind != "f":
        logits = logits.astype(np.float32)
    indices, _ = kernels.softmax_topk(logits, min(k, logits.shape[1]))
    return indices[0]


def _load_output(path: Path) -> tuple[np.ndarray | None, str | None]:
    """``output_0`` of one npz file, or ``(None, reason)``."""
    try:
        data = np.load(path)
    except FileNotFoundError:
        return None, "missing result"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None, "unreadable result (not an npz file)"
    if not isinstance(data, np.lib.npyio.NpzFile):
        return None, "unreadable result (not an npz file)"
    with data:
        if "output_0" not in data.files:
            return None, "no output_0 in result"
        try:
            return np.asarray(data["output_0"]), None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return None, "unreadable result (damaged output_0)"


def score_npz_outputs(result_dir: str | Path, items: list[str], labels: LabelSource,
                      num_classes: int | None = None) -> tuple[Accuracy, list[str], int | None]:
    """Score ``output_{i:06d}.npz`` against the i-th datalist item.

    A result must have shape ``(1, C)``: ``C`` is ``num_classes`` when given, else the
    most common class count among the results, so one odd file never sets the rule.
    Returns the counts, the result files no datalist entry pairs with (a sign the
    datalist is not the one the results were made from), and ``C``.
    """
    result_dir = Path(result_dir)
    if not result_dir.is_dir():
        raise NotADirectoryError(f"result folder {result_dir}: not a directory")
    acc = Accuracy()
    loaded: list[tuple[str, int, int, np.ndarray]] = []
    class_counts: collections.Counter = collections.Counter()
    for i, item in enumerate(items):
        label = labels(item)
        if label is None:
            acc.skip(item, "no label")
            continue
        result_name = f"output_{i:06d}.npz"
        logits, reason = _load_output(result_dir / result_name)
        if logits is None:
            acc.skip(f"{item} ({result_name})", reason)
            continue
        if logits.ndim != 2 or logits.shape[0] != 1 or logits.shape[1] == 0:
            acc.skip(f"{item} ({result_name})", "result not of shape (1, C)")
            continue
        if not np.all(np.isfinite(logits)):
            acc.skip(f"{item} ({result_name})", "non-finite values in result")
            continue
        classes = logits.shape[1]
        class_counts[classes] += 1
        loaded.append((f"{item} ({result_name})", label, classes, _ranking(logits, acc.topk)))
    if num_classes is None and class_counts:
        num_classes = max(class_counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
    for item, label, classes, ranked in loaded:
        if classes != num_classes:
            acc.skip(item, f"result with a class count other than {num_classes}")
        elif not 0 <= label < classes:
            acc.skip(item, f"label outside the model's {classes} classes")
        else:
            acc.add(ranked, label)
    return acc, _unpaired_results(result_dir, len(items)), num_classes


def _unpaired_results(result_dir: Path, n_items: int) -> list[str]:
    unpaired = []
    for path in result_dir.glob("output_*.npz"):
        digits = path.stem[len("output_"):]
        if digits.isdigit() and int(digits) >= n_items:
            unpaired.append(path.name)
    return sorted(unpaired)


def class_names_for(names_file: str | None, seen: dict[int, str], num_classes: int | None) -> dict[int, str]:
    """Names for the per-class report: a names file, else those the results carry,
    else the ImageNet names when the model has 1000 classes."""
    if names_file is not None:
        return dict(enumerate(read_class_names(names_file)))
    names = dict(enumerate(imagenet_class_names())) if num_classes in (None, 1000) else {}
    names.update(seen)
    return names


def write_per_class_csv(path: str | Path, acc: Accuracy, names: dict[int, str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class_id", "class_name", "count", "top1_correct", "top5_correct",
                         "top1_rate", "top5_rate"])
        for cls in sorted(acc.per_class):
            c = acc.per_class[cls]
            writer.writerow([cls, names.get(cls, ""), c.count, c.top1, c.top5,
                             f"{100.0 * c.top1 / c.count:.3f}", f"{100.0 * c.top5 / c.count:.3f}"])
