"""The datalist cut into shards: a few batches each, small enough that nodes finish at
nearly the same time and that a shard lost with its node costs little to run again."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BATCHES_PER_SHARD = 4


@dataclass
class Shard:
    index: int
    start: int  # the datalist position of its first item
    items: list[str]
    tries: int = 0  # nodes it was sent to that failed before returning it
    sent_at: float = 0.0  # when it last went out

    def seqs(self, positions) -> list[int]:
        """Datalist positions of the shard's ``positions``."""
        return [self.start + int(p) for p in positions]


def cut(items: list[str], shard_size: int) -> list[Shard]:
    return [Shard(i, start, items[start:start + shard_size])
            for i, start in enumerate(range(0, len(items), shard_size))]
