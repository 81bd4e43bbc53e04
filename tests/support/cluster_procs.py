"""Helpers of the cluster tests (tests/cluster): real JPEG datalists, and finding the
engine's node actor processes on this machine."""
from __future__ import annotations

import time
from pathlib import Path

import psutil
from photos import write_photo


def write_datalist(root: Path, count: int, missing: tuple[int, ...] = (), repeat: int = 1) -> Path:
    """``count`` real JPEGs in two class folders, listed ``repeat`` times over (a job long
    enough for a test to act while shards run); the positions in ``missing`` name files
    that do not exist."""
    lines = []
    for i in range(count):
        path = root / f"n0144076{i % 2}" / f"photo_{i:04d}.jpg"
        if i not in missing:
            write_photo(path, ("chelsea", "coffee", "astronaut")[i % 3], size=(48 + i % 40, 40 + i % 24))
        lines.append(str(path))
    datalist = root / "datalist.txt"
    datalist.write_text("\n".join(lines * repeat) + "\n")
    return datalist


def node_actors() -> list[psutil.Process]:
    """The engine's node actor processes alive on this machine (Ray titles them ray::NodeRunner...)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].startswith("ray::NodeRunner"):
            found.append(proc)
    return found


def wait_for_busy_actor(timeout: float = 60) -> psutil.Process:
    """A node actor in the middle of a shard (Ray titles it ray::NodeRunner.run_shard while
    one runs). The actors found are polled every 20 ms; the process table, slow to walk on
    a loaded host, is read again twice a second."""
    deadline = time.monotonic() + timeout
    actors, rescan_at = [], 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= rescan_at:
            actors, rescan_at = node_actors(), time.monotonic() + 0.5
        for proc in actors:
            try:
                if "run_shard" in " ".join(proc.cmdline()):
                    return proc
            except psutil.Error:
                pass
        time.sleep(0.02)
    raise AssertionError("no node actor started a shard")


def run_without_worker_node(cluster, run, timeout: float, store_bytes: int = 200 * 2**20) -> str:
    """Take the cluster's worker node away while ``run`` (a Popen) is busy and wait for it to
    end; a fresh worker node joins after, however it ends (a module's later tests need two
    nodes). ``run``'s stderr."""
    worker_node = next(node for node in cluster.list_all_nodes() if node is not cluster.head_node)
    cluster.remove_node(worker_node)
    try:
        return run.communicate(timeout=timeout)[1]
    finally:
        cluster.add_node(num_cpus=1, object_store_memory=store_bytes)
