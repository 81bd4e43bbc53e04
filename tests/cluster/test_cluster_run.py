"""engine.run --ray on a real two-node Ray cluster: the files a local run writes, every
item exactly once when an actor, a pipeline worker inside one, or a whole node dies
mid-run, a clean cancel, and a clear error for a cluster nobody answers at (issue 18)."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from cluster_procs import node_actors, run_without_worker_node, wait_for_busy_actor, write_datalist

from engine.cluster.shards import cut
from engine.data.topk_text import iter_topk_blocks
from engine.pipeline.slots import PREFIX, SHM_DIR

LOCAL_ONLY = ("date", "host", "cores", "config", "backends", "peak_rss_mb", "host_memory_used_mb")


def _outputs(out: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p)["output_0"] for p in sorted((out / "npz").glob("output_*.npz"))}


def _assert_every_item_once(out: Path, datalist: Path) -> None:
    """Every item has its output file and one top-k block, in datalist order."""
    items = datalist.read_text().split()
    blocks = [item for item, _ in iter_topk_blocks(out / "topk.txt")]
    assert blocks == items
    assert list(_outputs(out)) == [f"output_{i:06d}.npz" for i in range(len(items))]
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["done"] == len(items) and report["counts"]["failed"] == 0, report["counts"]


def test_cluster_run_writes_what_the_local_run_writes(cluster, engine_run, tmp_path):
    datalist = write_datalist(tmp_path / "val", 30, missing=(7,))
    local = engine_run(datalist, tmp_path / "local")
    on_ray = engine_run(datalist, tmp_path / "ray", "--ray", cluster.address, "--ray-shard", "8")
    assert local.returncode == on_ray.returncode == 3, (local.stderr, on_ray.stderr)
    local_out, ray_out = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert list(local_out) == list(ray_out) and len(ray_out) == 29
    for name, logits in local_out.items():
        np.testing.assert_array_equal(ray_out[name], logits)
    assert (tmp_path / "ray" / "topk.txt").read_text() == (tmp_path / "local" / "topk.txt").read_text()
    errors = [(tmp_path / name / "report.errors.jsonl").read_text() for name in ("local", "ray")]
    assert errors[0] == errors[1] and "photo_0007.jpg" in errors[1]
    local_report, ray_report = (json.loads((tmp_path / n / "report.json").read_text()) for n in ("local", "ray"))
    assert set(local_report) <= set(ray_report)
    assert ray_report["counts"] == local_report["counts"]
    assert ray_report["accuracy"] == local_report["accuracy"]
    assert [e["item"] for e in ray_report["errors"]] == [e["item"] for e in local_report["errors"]]
    shards = cut(list(range(30)), 8, smallest=ray_report["input"]["shape"][0], nodes=2)
    assert ray_report["cluster"]["shards_done"] == ray_report["cluster"]["shards"] == len(shards)
    assert len(ray_report["nodes"]) == 2 and sum(n["items"] for n in ray_report["nodes"]) == 30
    assert _actors_gone()


def _actors_gone(timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node_actors():
            return True
        time.sleep(0.2)
    return False


def test_an_unreachable_cluster_is_a_usage_error_within_seconds(engine_run, tmp_path):
    datalist = write_datalist(tmp_path / "val", 2)
    started = time.monotonic()
    proc = engine_run(datalist, tmp_path / "out", "--ray", "127.0.0.1:1")
    assert time.monotonic() - started < 20
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--ray 127.0.0.1:1: cannot reach the cluster's head" in lines[0], proc.stderr


def test_an_actor_killed_mid_shard_loses_no_item(cluster, engine_run, tmp_path):
    datalist = write_datalist(tmp_path / "val", 240, repeat=8)
    run = engine_run(datalist, tmp_path / "out", "--ray", cluster.address, "--ray-shard", "8", wait=False)
    os.kill(wait_for_busy_actor().pid, signal.SIGKILL)
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == 0, stderr
    assert "lost its actor" in stderr
    _assert_every_item_once(tmp_path / "out", datalist)


def test_a_pipeline_worker_killed_inside_an_actor_loses_no_item(cluster, engine_run, tmp_path):
    datalist = write_datalist(tmp_path / "val", 240, repeat=8)
    run = engine_run(datalist, tmp_path / "out", "--ray", cluster.address, "--ray-shard", "8", wait=False)
    actor = wait_for_busy_actor()
    workers = actor.children()
    assert workers, "the actor runs its pipeline's worker processes"
    os.kill(workers[-1].pid, signal.SIGKILL)
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == 0, stderr
    _assert_every_item_once(tmp_path / "out", datalist)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sum(n["worker_restarts"] for n in report["nodes"]) >= 1


def test_sigterm_cancels_the_job_and_leaves_no_actor_or_segment(cluster, engine_run, tmp_path):
    datalist = write_datalist(tmp_path / "val", 400, repeat=5)
    run = engine_run(datalist, tmp_path / "out", "--ray", cluster.address, "--ray-shard", "8", wait=False)
    wait_for_busy_actor()
    actor_pids = {p.pid for p in node_actors()}
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 143, stderr
    assert _actors_gone(), [p.pid for p in node_actors()]
    segments = [p.name for p in SHM_DIR.glob(f"{PREFIX}-*") if int(p.name.split("-")[1]) in actor_pids]
    assert segments == []
    assert not [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] in actor_pids]


def test_a_node_removed_mid_run_loses_no_item(cluster, engine_run, tmp_path):
    """Last in the module: it takes a node away (and gives the cluster a fresh one after)."""
    datalist = write_datalist(tmp_path / "val", 240, repeat=8)
    run = engine_run(datalist, tmp_path / "out", "--ray", cluster.address, "--ray-shard", "8", wait=False)
    wait_for_busy_actor()
    stderr = run_without_worker_node(cluster, run, timeout=180)
    assert run.returncode == 0, stderr
    _assert_every_item_once(tmp_path / "out", datalist)


@pytest.mark.parametrize("args,shown", [
    (["--ray", "head-without-port"], "--ray head-without-port: give auto or the head's HOST:PORT"),
    (["--ray-shard", "8"], "--ray-shard applies to --ray"),
    (["--ray", "127.0.0.1:1", "--ray-shard", "0"], "--ray-shard must be at least 1, got 0"),
    (["--ray", "127.0.0.1:1", "--iterations", "2"], "--iterations applies to a local run"),
    (["--ray", "127.0.0.1:1", "--auto"], "--auto measures on this host"),
])
def test_what_a_cluster_run_cannot_do_is_refused_before_any_work(engine_run, tmp_path, args, shown):
    proc = engine_run(write_datalist(tmp_path / "val", 1), tmp_path / "out", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and shown in lines[0], proc.stderr
