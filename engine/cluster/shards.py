"""The datalist cut into shards: big enough that the driver's cost per shard stays small
beside its work, small enough that a shard lost with its node costs little to run again,
and smaller towards the end, so that the nodes finish at nearly the same time."""
from __future__ import annotations

from dataclasses import dataclass

# The driver spends about a millisecond of its CPU per shard (docs/cluster.md); 16 batches
# keep that small beside a shard's work, and a lost actor re-runs at most two shards.
DEFAULT_BATCHES_PER_SHARD = 16


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


def cut(items: list[str], shard_size: int, smallest: int = 1, nodes: int = 1) -> list[Shard]:
    """Shards of ``shard_size`` items, then, once fewer than two rounds of them per node are
    left, each a ``2 * nodes``-th of what is left (never under ``smallest``): guided
    self-scheduling, so no node is left with a whole shard when the others are done."""
    shards, start = [], 0
    while start < len(items):
        left = len(items) - start
        size = min(shard_size, max(smallest, -(-left // (2 * nodes))))
        shards.append(Shard(len(shards), start, items[start:start + size]))
        start += size
    return shards
