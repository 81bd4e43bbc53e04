"""The Ray actor on one node: today's local pipeline (broker, preprocess and device
processes, shared-memory ring), started once and kept up while the driver hands it
shards; each shard's results go back as one small :class:`ShardResult`.

Shards run one at a time; ``stop`` is in a concurrency group of its own (``CONTROL``), so
it reaches a broker busy with a shard. ``close`` stops the worker processes and removes
the ring from /dev/shm.
"""
from __future__ import annotations

import dataclasses
import os
import platform

import ray

from engine.cluster.model_package import ModelPackage
from engine.cluster.shard_result import ShardFigures, ShardResult, ShardSink
from engine.pipeline.config import RunConfig
from engine.pipeline.shard_broker import ShardBroker

CONTROL = "control"


class NodeRunner:
    def __init__(self, cfg: RunConfig, package: ModelPackage, ranking: dict):
        cfg = dataclasses.replace(cfg, model_path=package.unpack(), warmup=0, quiet=True)
        self.ranking = ranking
        self.node = ray.get_runtime_context().get_node_id()
        self.broker = ShardBroker(cfg, ShardSink([], ranking))
        self.broker.start()

    def ready(self) -> dict:
        """Where this actor runs and what its device instances opened."""
        return {"node": self.node, "host": platform.node(), "pid": os.getpid(), "backends": self.broker.backends,
                "workers": self.broker.supervisor.pids()}

    def run_shard(self, shard: int, items: list[str]) -> ShardResult:
        sink = ShardSink(items, self.ranking)
        meter = self.broker.run_shard(items, sink)
        supervisor = self.broker.supervisor
        return sink.result(shard, self.node, ShardFigures.of(meter, supervisor.restarts, supervisor.peak_rss_bytes))

    @ray.method(concurrency_group=CONTROL)
    def stop(self) -> None:
        self.broker.request_stop()

    def close(self) -> None:
        self.broker.shutdown()
