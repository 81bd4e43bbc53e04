"""engine.run's ``--ray`` flags, joining the cluster (an address nobody answers at is
refused before any work) and the cluster run with its progress bar. The flags' values are
checked with the other options (engine/api/options.py)."""
from __future__ import annotations

import argparse

from engine.cluster.shards import DEFAULT_BATCHES_PER_SHARD
from engine.pipeline.config import RunConfig
from engine.pipeline.run_options import make_progress
from engine.pipeline.sink import Sink


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", metavar="auto|HOST:PORT",
                        help="run on a Ray cluster: auto (the one `ray start` runs on this host) or its head's "
                             "address; one actor per node runs this pipeline on shards of the datalist")
    parser.add_argument("--ray-shard", type=int, default=None,
                        help=f"items per shard sent to a node (default: {DEFAULT_BATCHES_PER_SHARD} batches)")


def join_cluster(address: str) -> None:
    """Join the cluster at ``address`` (a :class:`~engine.data.arg_checks.UsageError` when nobody answers)."""
    from engine.cluster.connect import connect

    connect(address)


def node_table(sink: Sink, results: str | None, results_logits: str | None):
    """The results table the nodes write (the sink's columns), or None without ``--results``."""
    if results is None:
        return None
    from engine.cluster.node_table import NodeTable
    from engine.pipeline.results_table import TableSpec

    spec = TableSpec(sink.topk, sink.class_names, sink.labels, results_logits)
    return NodeTable(results, spec, return_rows=sink.output_files is not None or sink.topk_writer.active)


def run_on_cluster(cfg: RunConfig, items: list[str], sink: Sink, *, shard_size: int | None, threads_given: bool,
                   results: str | None = None, results_logits: str | None = None):
    """Run the job on the cluster joined by :func:`join_cluster`; the sink is closed and Ray
    left however it ends (a failure is the run's ``stop_reason``). ``results``: the folder
    the nodes write the results table into (engine/cluster/node_table.py)."""
    import ray

    from engine.cluster.driver import ClusterRun

    bar, progress = make_progress(cfg.quiet, len(items))
    run = ClusterRun(cfg, items, sink, shard_size=shard_size or DEFAULT_BATCHES_PER_SHARD * cfg.batch,
                     threads_given=threads_given, progress=progress, table=node_table(sink, results, results_logits))
    try:
        run.run()
    except (RuntimeError, ray.exceptions.RayError) as e:
        run.stop_reason = run.stop_reason or str(e)
    finally:
        sink.close()
        if bar is not None:
            bar.close()
        ray.shutdown()
    return run
