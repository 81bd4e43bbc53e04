"""A real two-node Ray cluster on this machine (ray.cluster_utils.Cluster: two raylets of
1 CPU each, a 200 MB object store apiece), shared by a test module; a tiny real ONNX
model; real JPEG files; and ``engine_run``, which runs ``python -m engine.run`` as a user
does, locally or with ``--ray`` on the cluster."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tinynet import write_tiny_onnx

from bench.suite_ray import start_two_node_cluster

ROOT = Path(__file__).resolve().parents[2]
STORE_BYTES = 200 * 2**20


@pytest.fixture(scope="module")
def cluster():
    c = start_two_node_cluster(STORE_BYTES)
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", size=32, classes=10)


@pytest.fixture
def engine_run(tiny_model):
    def run(datalist: Path, out: Path, *args, wait: bool = True, timeout: float = 180):
        """engine.run over ``datalist`` writing every output into ``out``: the finished
        process, or the running Popen when not ``wait``."""
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "engine.run", "--datalist", str(datalist), "--onnx", str(tiny_model),
               "--quiet", "--threads", "1", "-b", "4", "--labels-from-folders", "--path_output", str(out / "npz"),
               "--save-topk", str(out / "topk.txt"), "--report", str(out / "report.json"), *map(str, args)]
        if wait:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return run
