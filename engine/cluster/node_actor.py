"""The Ray actor on one node: today's local pipeline (broker, preprocess and device
processes, shared-memory ring), started once and kept up while the driver hands it
shards; each shard's results go back as one small :class:`ShardResult`.

The actor takes several ``run_shard`` calls at once (the driver keeps a few in flight), so
the next shard's items enter the pipeline while the last one's are still in it; ``stop``
is in a concurrency group of its own (``CONTROL``), so it is never queued behind shards.
``close`` stops the worker processes and removes the ring from /dev/shm.
"""
from __future__ import annotations

import dataclasses
import os
import platform
from typing import TYPE_CHECKING

import ray

from engine.cluster.model_package import ModelPackage
from engine.cluster.shard_result import ShardResult, ShardSink
from engine.pipeline.config import RunConfig
from engine.pipeline.shard_broker import ShardBroker

if TYPE_CHECKING:  # pyarrow, which it imports, is needed only by a job with --results
    from engine.cluster.node_table import NodeTable

CONTROL = "control"


class NodeRunner:
    def __init__(self, cfg: RunConfig, package: ModelPackage, ranking: dict, table: NodeTable | None = None):
        """``table``: this job's results table, written here shard by shard (engine/cluster/node_table.py)."""
        cfg = dataclasses.replace(cfg, model_path=package.unpack(), warmup=0, quiet=True)
        self.ranking = ranking
        self.table = table
        self.node = ray.get_runtime_context().get_node_id()
        self.broker = ShardBroker(cfg, ranking)
        self.broker.serve()

    def ready(self) -> dict:
        """Where this actor runs and what its device instances opened."""
        return {"node": self.node, "host": platform.node(), "pid": os.getpid(), "backends": self.broker.backends,
                "workers": self.broker.supervisor.pids()}

    def run_shard(self, shard: int, items: list[str], start: int = 0) -> ShardResult:
        """Run the shard whose first item is the datalist's ``start``-th."""
        sink = ShardSink(items, self.ranking)
        result = sink.result(shard, self.node, self.broker.run_shard(items, sink))
        return result if self.table is None else self.table.write(result, items, start)

    @ray.method(concurrency_group=CONTROL)
    def stop(self) -> None:
        self.broker.request_stop()

    @ray.method(concurrency_group=CONTROL)
    def close(self) -> None:
        self.broker.close()
