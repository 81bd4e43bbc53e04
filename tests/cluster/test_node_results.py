"""engine.run --ray --shards --results on a real two-node Ray cluster (issue 29): every node
writes its shards' part files, the driver only counts and keeps the manifest; the table
equals a local run's, logits included, and every item is in it exactly once when a
pipeline worker is SIGKILLed and a node is removed mid-run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cluster_procs import run_without_worker_node, wait_for_busy_actor
from shard_files import mixed_dataset

ROOT = Path(__file__).resolve().parents[2]
COMPARED = ("index", "source", "label", "topk_index", "topk_name", "topk_prob", "error")


@pytest.fixture(scope="module")
def shard_list(tmp_path_factory) -> Path:
    """The mixed shards (JPEG, PNG, npz members, cls labels, a corrupt member in each of two
    shards, a third cut short) listed 30 times over: 480 items, 90 of them failing."""
    root = tmp_path_factory.mktemp("shards")
    dataset = mixed_dataset(root)
    listed = root / "shards.txt"
    listed.write_text("\n".join(str(p) for p in dataset.shards * 30) + "\n")
    return listed


def _engine_run(model: Path, shard_list: Path, results: Path, *args, wait: bool = True):
    cmd = [sys.executable, "-m", "engine.run", "--shards", str(shard_list), "--onnx", str(model), "--quiet",
           "--threads", "1", "-b", "4", "--results", str(results), "--results-logits", "float32",
           "--report", str(results.with_suffix(".json")), *map(str, args)]
    if wait:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def local_table(tiny_model, shard_list, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("local") / "local.parquet"
    proc = _engine_run(tiny_model, shard_list, out)
    assert proc.returncode == 3, proc.stderr
    return pd.read_parquet(out).sort_values("index").reset_index(drop=True)


def _assert_same_table(folder: Path, local: pd.DataFrame) -> pd.DataFrame:
    """Every item exactly once, each row equal to the local run's, logits to the bit."""
    table = pd.read_parquet(folder).sort_values("index").reset_index(drop=True)
    assert table["index"].tolist() == list(range(len(local))), "every item exactly once"
    for column in COMPARED:
        assert [_plain(v) for v in table[column]] == [_plain(v) for v in local[column]], column
    good = local["error"].isna()
    np.testing.assert_array_equal(np.stack(table.loc[good, "logits"]), np.stack(local.loc[good, "logits"]))
    return table


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else (None if value is None or value != value else value)


def test_the_nodes_write_the_table_a_local_run_writes(cluster, tiny_model, shard_list, local_table, tmp_path):
    out = tmp_path / "ray"
    proc = _engine_run(tiny_model, shard_list, out, "--ray", cluster.address, "--ray-shard", "16")
    assert proc.returncode == 3, proc.stderr
    _assert_same_table(out, local_table)
    manifest = json.loads((out / "_manifest.json").read_text())
    report = json.loads(out.with_suffix(".json").read_text())
    assert manifest["complete"] and manifest["rows"] == manifest["items"] == len(local_table)
    assert len(manifest["parts"]) == report["cluster"]["shards"] == len(list(out.glob("part-*.parquet")))
    assert manifest["nodes"] == sorted({n["node"] for n in report["nodes"] if n["shards"]}), "the nodes that ran shards"
    assert report["counts"]["failed"] == int(local_table["error"].notna().sum()) == 90
    assert report["accuracy"]["labelled"] == int(local_table["error"].isna().sum())
    top1 = np.mean([t[0] == lab for t, lab in zip(local_table["topk_index"], local_table["label"]) if t is not None])
    assert report["accuracy"]["top1"] == pytest.approx(100 * top1)
    assert report["cluster"]["bytes_returned"] == 0, "no ranked rows cross to the driver"
    assert "did not finish" not in proc.stderr
    import ray

    ray.init(address=cluster.address, log_to_driver=False)
    try:
        assert ray.data.read_parquet(str(out)).count() == len(local_table)  # the manifest is skipped
    finally:
        ray.shutdown()


def test_nodes_write_the_table_while_the_driver_writes_the_top_k_text(cluster, tiny_model, shard_list, local_table,
                                                                      tmp_path):
    local = _engine_run(tiny_model, shard_list, tmp_path / "local.parquet", "--save-topk", tmp_path / "local.txt")
    on_ray = _engine_run(tiny_model, shard_list, tmp_path / "ray", "--ray", cluster.address, "--ray-shard", "32",
                         "--save-topk", tmp_path / "ray.txt")
    assert local.returncode == on_ray.returncode == 3, on_ray.stderr
    _assert_same_table(tmp_path / "ray", local_table)
    assert (tmp_path / "ray.txt").read_text() == (tmp_path / "local.txt").read_text()
    report = json.loads((tmp_path / "ray.json").read_text())
    assert report["cluster"]["bytes_returned"] > 0, "the rows come back for the driver's top-k text"


def test_a_worker_killed_and_a_node_removed_mid_run_leave_every_item_once(cluster, tiny_model, shard_list,
                                                                          local_table, tmp_path):
    """Last in the module: it takes a node away (and gives the cluster a fresh one after)."""
    out = tmp_path / "ray"
    run = _engine_run(tiny_model, shard_list, out, "--ray", cluster.address, "--ray-shard", "8", wait=False)
    actor = wait_for_busy_actor()
    workers = actor.children()
    assert workers, "the actor runs its pipeline's worker processes"
    os.kill(workers[-1].pid, signal.SIGKILL)
    wait_for_busy_actor()
    stderr = run_without_worker_node(cluster, run, timeout=300)
    assert run.returncode == 3, stderr
    _assert_same_table(out, local_table)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] and not list(out.glob(".part-*"))
