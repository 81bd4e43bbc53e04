"""The driver's books on one node's actor: the shards it holds, and what it has done."""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.cluster.shard_result import ShardResult


@dataclass
class NodeBooks:
    node: str
    cpus: int
    gpus: int
    actor: object
    ready_ref: object | None  # the actor's ready() call, until it answers
    generation: int = 0  # actors started on this node before this one
    info: dict = field(default_factory=dict)
    inflight: dict = field(default_factory=dict)  # ObjectRef of a run_shard call -> its Shard
    last_done: float = 0.0  # when its last shard came back
    shards: int = 0
    items: int = 0
    failed: int = 0
    busy_s: float = 0.0  # the node's own time in its shards
    overhead_s: float = 0.0  # round trips beyond that: scheduling, result return, the driver's share
    bytes_returned: int = 0
    restarts: int = 0  # pipeline worker processes replaced inside the actor
    peak_rss_bytes: int = 0
    lost: str | None = None  # why the actor was given up

    @property
    def ready(self) -> bool:
        return self.ready_ref is None and self.lost is None

    def took(self, result: ShardResult, items: int, failed: int, round_trip_s: float) -> None:
        figures = result.figures
        self.shards += 1
        self.items += items
        self.failed += failed
        self.busy_s += figures.seconds
        self.overhead_s += max(0.0, round_trip_s - figures.seconds)
        self.bytes_returned += result.nbytes
        self.restarts = figures.restarts
        self.peak_rss_bytes = max(self.peak_rss_bytes, figures.peak_rss_bytes)

    def figures(self) -> dict:
        """This actor's line in the report's ``nodes``."""
        per_shard = 1000 / self.shards if self.shards else 0.0
        return {"node": self.node, "host": self.info.get("host"), "pid": self.info.get("pid"),
                "actor_generation": self.generation, "cpus": self.cpus, "gpus": self.gpus,
                "shards": self.shards, "items": self.items, "failed": self.failed,
                "items_per_s": self.items / self.busy_s if self.busy_s else None,
                "busy_s": self.busy_s, "overhead_ms_per_shard": self.overhead_s * per_shard,
                "bytes_returned": self.bytes_returned, "worker_restarts": self.restarts,
                "peak_rss_mb": self.peak_rss_bytes / 2**20, "lost": self.lost}
