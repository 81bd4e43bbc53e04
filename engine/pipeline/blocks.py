"""The broker's units of work: a block (one device batch of consecutive slots) and a
preprocess task (some positions of one block, handed to one worker in one message).

A block's slots are consecutive in the ring, so its tensors are one contiguous
``(n, C, H, W)`` region: the preprocess workers write it in place and the device worker
runs it as it lies, with no gather copy. Items enter a block in sequence order, so a
block's sequence numbers increase with position.

Owned by the broker's thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class Block:
    """``batch`` consecutive slots from ``first_slot``; position ``p`` holds item ``seqs[p]``."""

    index: int
    first_slot: int
    seqs: list[int] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # per position: when it went to preprocessing
    holes: set[int] = field(default_factory=set)  # positions whose item already has its error record
    pending: int = 0  # preprocess tasks of this block still out
    closed: bool = False  # no more items will enter it
    first_ready_at: float = 0.0  # when its first task came back
    ready_items: int = 0  # items back from preprocessing with their tensor in place
    ready_sum: float = 0.0  # sum over those of when they came back (for the queue wait)
    queue_us: float = 0.0  # their summed wait from back to sent to a device
    load_us: int = 0  # decode time of its items, summed
    preprocess_us: int = 0  # kernel time of its items, summed

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def valid(self) -> int:
        """Items of this block that still need a result."""
        return len(self.seqs) - len(self.holes)

    def rows(self) -> list[int] | None:
        """Positions with a result to take, None for all of them."""
        if not self.holes:
            return None
        return [p for p in range(len(self.seqs)) if p not in self.holes]

    def add(self, first_seq: int, count: int, now: float) -> list[int]:
        """Put items ``first_seq ..`` at the next ``count`` positions; returns the positions."""
        start = len(self.seqs)
        self.seqs.extend(range(first_seq, first_seq + count))
        self.sent_at.extend([now] * count)
        return list(range(start, start + count))

    def returned(self, items: int, now: float, load_us: int, preprocess_us: int) -> None:
        """A task came back at ``now`` with ``items`` tensors in place."""
        self.pending -= 1
        if not self.first_ready_at:
            self.first_ready_at = now
        self.ready_items += items
        self.ready_sum += now * items
        self.load_us += load_us
        self.preprocess_us += preprocess_us

    def reset(self) -> None:
        """Empty again, for the next items."""
        self.seqs.clear()
        self.sent_at.clear()
        self.holes.clear()
        self.pending = 0
        self.closed = False
        self.first_ready_at = self.ready_sum = self.queue_us = 0.0
        self.ready_items = self.load_us = self.preprocess_us = 0


@dataclass(slots=True, eq=False)
class Task:
    """Positions of ``block`` for one preprocess worker to fill."""

    block: Block
    positions: list[int]

    def __len__(self) -> int:
        return len(self.positions)

    def slots(self) -> list[int]:
        first = self.block.first_slot
        return [first + p for p in self.positions]

    def seqs(self) -> list[int]:
        seqs = self.block.seqs
        return [seqs[p] for p in self.positions]
