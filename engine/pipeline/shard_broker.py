"""A broker whose worker processes stay up from one shard of a datalist to the next.

A cluster node (engine/cluster/node_actor.py) runs many small shards of one job; starting
the preprocess and device processes (and opening the model) for each would cost more
than a shard's work. This broker starts them once, then runs each shard with the local
broker's loop, books and fault handling unchanged: a worker process that dies mid-shard
is replaced and its items re-queued, so the shard still ends with every item once.

Each shard gets a fresh sink and meter and sequence numbers from 0; the slot ring, the
sockets and the processes are kept. No signal handlers are installed: the caller
(a Ray actor, on a thread of its own) stops a shard with ``request_stop``.
"""
from __future__ import annotations

from engine.pipeline.broker import Broker, RunStopped
from engine.pipeline.config import RunConfig
from engine.pipeline.meter import Meter

STOP_REQUESTED = "stopped by the driver"


class ShardBroker(Broker):
    def __init__(self, cfg: RunConfig, ranking_sink):
        """``ranking_sink``: any sink of the job (its ``ranking()`` fixes what the device
        instances send back for every shard). ``cfg.warmup`` should be 0: the driver keeps
        the job's clock."""
        super().__init__(cfg, [""], ranking_sink)
        self.total = 0

    def start(self) -> None:
        """Start every worker process and wait until each has said hello."""
        try:
            self._start_all()
        except RunStopped:
            self.shutdown()
            raise

    def run_shard(self, items: list[str], sink) -> Meter:
        """Run ``items`` (sequence numbers 0..len-1 in ``sink``); the shard's meter.
        Raises :class:`RunStopped` when the shard could not finish; the broker is then
        unusable and should be shut down."""
        self.items, self.sink, self.total = items, sink, len(items)
        self.meter = Meter(0)
        self.next_seq = 0
        self.deaths_seen.clear()
        self._loop()
        if self.stop_reason:
            raise RunStopped(self.stop_reason)
        return self.meter

    def request_stop(self) -> None:
        """Make the running shard (or the next) stop at the loop's next turn; safe from another thread."""
        self.stop_reason = self.stop_reason or STOP_REQUESTED
