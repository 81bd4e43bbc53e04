"""Helpers of the cluster tests (tests/cluster): real JPEG datalists, and finding the
engine's node actor processes on this machine."""
from __future__ import annotations

import time
from pathlib import Path

import psutil
from photos import write_photo


def write_datalist(root: Path, count: int, missing: tuple[int, ...] = ()) -> Path:
    """``count`` real JPEGs in two class folders, listed; the positions in ``missing`` name files that do not exist."""
    lines = []
    for i in range(count):
        path = root / f"n0144076{i % 2}" / f"photo_{i:04d}.jpg"
        if i not in missing:
            write_photo(path, ("chelsea", "coffee", "astronaut")[i % 3], size=(48 + i % 40, 40 + i % 24))
        lines.append(str(path))
    datalist = root / "datalist.txt"
    datalist.write_text("\n".join(lines) + "\n")
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
    """A node actor in the middle of a shard."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in node_actors():
            try:
                if "run_shard" in " ".join(proc.cmdline()):
                    return proc
            except psutil.Error:
                pass
        time.sleep(0.05)
    raise AssertionError("no node actor started a shard")
