"""engine.run's ``--ray`` flags, their checks (joining the cluster is one: an address
nobody answers at is refused before any work) and the cluster run with its progress bar."""
from __future__ import annotations

import argparse

from engine.cluster.shards import DEFAULT_BATCHES_PER_SHARD
from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.pipeline.config import RunConfig
from engine.pipeline.run_options import make_progress
from engine.pipeline.sink import Sink


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", metavar="auto|HOST:PORT",
                        help="run on a Ray cluster: auto (the one `ray start` runs on this host) or its head's "
                             "address; one actor per node runs this pipeline on shards of the datalist")
    parser.add_argument("--ray-shard", type=int, default=None,
                        help=f"items per shard sent to a node (default: {DEFAULT_BATCHES_PER_SHARD} batches)")


def check_cluster_args(args) -> None:
    """Refuse what a cluster run cannot do, then join the cluster (a :class:`UsageError` when it cannot)."""
    if args.ray_shard is not None and not args.ray:
        raise UsageError("--ray-shard applies to --ray")
    if not args.ray:
        return
    arg_checks.at_least("--ray-shard", args.ray_shard, 1)
    if args.iterations != 1:
        raise UsageError("--iterations applies to a local run; a --ray run passes over the datalist once")
    if args.auto:
        raise UsageError("--auto measures on this host, not on the cluster's nodes; with --ray give -i, --threads "
                         "and -b (engine.tune on a node finds them)")
    from engine.cluster.connect import connect

    connect(args.ray)


def run_on_cluster(args, cfg: RunConfig, items: list[str], sink: Sink):
    """Run the job on the cluster joined by :func:`check_cluster_args`; the sink is closed
    and Ray left however it ends (a failure is the run's ``stop_reason``)."""
    import ray

    from engine.cluster.driver import ClusterRun

    bar, progress = make_progress(cfg.quiet, len(items))
    run = ClusterRun(cfg, items, sink, shard_size=args.ray_shard or DEFAULT_BATCHES_PER_SHARD * cfg.batch,
                     threads_given=args.threads is not None, progress=progress)
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
