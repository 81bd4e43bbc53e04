"""What a node sends back for one shard: each item's ranked classes (and raw outputs when
the job writes them) or its error, and the shard's own figures. Only these small arrays
travel through Ray; the pixels never leave the node's shared-memory ring."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.pipeline.shard_broker import ShardFigures


@dataclass
class ShardTally:
    """A shard's counts, sent instead of its rows when its node wrote them (engine/cluster/node_table.py)."""

    done: int
    failed: int
    labelled: int
    top1: int
    top5: int


@dataclass
class PartFile:
    """The results table's part a shard's rows went to (engine/cluster/node_table.py)."""

    file: str
    rows: int
    node: str | None  # None: written by the driver (a shard no actor could run)


@dataclass
class ShardResult:
    shard: int
    node: str
    positions: np.ndarray  # increasing positions in the shard that have a result
    ranked: np.ndarray  # (len(positions), k) class indices, -1 in column 0 for non-finite logits
    probs: np.ndarray  # (len(positions), k)
    outputs: list[np.ndarray]  # per model output, (len(positions), ...); empty when not written
    errors: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)
    figures: ShardFigures | None = None
    tally: ShardTally | None = None  # set when the node wrote the rows into the results table itself
    part: PartFile | None = None  # that part file

    @property
    def nbytes(self) -> int:
        """Bytes of arrays this result moves through Ray."""
        return (self.positions.nbytes + self.ranked.nbytes + self.probs.nbytes
                + sum(o.nbytes for o in self.outputs))


class ShardSink:
    """The sink of one shard on a node: keeps each batch's rows by position, to send back."""

    def __init__(self, items: list[str], ranking: dict):
        self.items = items
        self._ranking = ranking
        self._ranked: np.ndarray | None = None
        self._probs: np.ndarray | None = None
        self._outputs: list[np.ndarray] = []
        self._has = np.zeros(len(items), dtype=bool)
        self.errors: list[tuple[int, str]] = []

    def ranking(self) -> dict:
        return self._ranking

    def results(self, seqs: list[int], ranked: np.ndarray, probs: np.ndarray, outputs: list[np.ndarray]) -> int:
        if self._ranked is None:
            n = len(self.items)
            self._ranked = np.empty((n, ranked.shape[1]), ranked.dtype)
            self._probs = np.empty((n, probs.shape[1]), probs.dtype)
            self._outputs = [np.empty((n, *o.shape[1:]), o.dtype) for o in outputs]
        self._ranked[seqs], self._probs[seqs] = ranked, probs
        for whole, part in zip(self._outputs, outputs, strict=True):
            whole[seqs] = part
        self._has[seqs] = True
        return int(np.count_nonzero(ranked[:, 0] < 0))

    def error(self, seq: int, reason: str) -> None:
        self.errors.append((seq, reason))

    def result(self, shard: int, node: str, figures: ShardFigures) -> ShardResult:
        positions = np.flatnonzero(self._has)
        if self._ranked is None:
            empty = np.empty((0, self._ranking["k"]))
            return ShardResult(shard, node, positions, empty.astype(np.int64), empty.astype(np.float32), [],
                               self.errors, figures)
        return ShardResult(shard, node, positions, self._ranked[positions], self._probs[positions],
                           [o[positions] for o in self._outputs], self.errors, figures)
