"""The datalist's shards: every item in exactly one, in order, full-sized first and
smaller towards the end so that the nodes finish together."""
from __future__ import annotations

from engine.cluster.shards import cut


def test_shards_cover_the_datalist_once_in_order_and_shrink_towards_the_end():
    items = [f"{i}.npz" for i in range(3072)]
    shards = cut(items, 256, smallest=16, nodes=2)
    assert [item for shard in shards for item in shard.items] == items
    assert [shard.start for shard in shards] == [sum(len(s.items) for s in shards[:i]) for i in range(len(shards))]
    assert [shard.index for shard in shards] == list(range(len(shards)))
    sizes = [len(shard.items) for shard in shards]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == 256 and sizes.count(256) >= 8
    assert sizes[-1] <= 16 and min(sizes) >= 1
    left_when_cut = [len(items) - shard.start for shard in shards]
    assert all(size <= max(16, -(-left // 4)) for size, left in zip(sizes, left_when_cut, strict=True))


def test_a_short_datalist_still_gives_every_node_work():
    shards = cut([f"{i}.npz" for i in range(40)], 256, smallest=8, nodes=2)
    assert len(shards) >= 4 and sum(len(s.items) for s in shards) == 40
