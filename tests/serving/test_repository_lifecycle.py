"""Models coming and going in a running server: ``poll`` mode following the repository folder,
20 load/unload cycles (memory and threads come back), a zoo model named by ``zoo.json``, and the
stop line counting every front end's requests."""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from server_process import ServerProcess
from tinynet import write_tiny_onnx
from tritonclient.utils import InferenceServerException


def infer(client, model, version=""):
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    tensor = httpclient.InferInput("IMAGE", list(img.shape), "UINT8")
    tensor.set_data_from_numpy(img)
    return client.infer(model, [tensor], model_version=version)


def index(client) -> dict:
    return {(r["name"], r.get("version", "")): (r["state"], r.get("reason", ""))
            for r in client.get_model_repository_index()}


def wait_for(condition, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {condition.__doc__ or condition}")


def test_poll_mode_follows_the_repository(tmp_path):
    root = tmp_path / "repo"
    write_tiny_onnx(root / "one" / "1" / "model.onnx", size=32, classes=10, seed=1)
    with ServerProcess(["--model-repository", str(root), "--model-control-mode", "poll", "--repository-poll-secs",
                        "0.3", "--http", "127.0.0.1:0", "--bind", "off", "--threads", "1"]) as proc:
        client = httpclient.InferenceServerClient(proc.fronts["http"].removeprefix("http://"))
        assert infer(client, "one").as_numpy("PROBABILITIES").shape == (10,)
        write_tiny_onnx(root / "two" / "1" / "model.onnx", size=32, classes=4, seed=2)  # added
        wait_for(lambda: index(client).get(("two", "1"), ("",))[0] == "READY")
        assert infer(client, "two").as_numpy("PROBABILITIES").shape == (4,)
        write_tiny_onnx(root / "one" / "2" / "model.onnx", size=32, classes=6, seed=3)  # changed: a new version
        wait_for(lambda: infer(client, "one").get_response()["model_version"] == "2")
        assert infer(client, "one").as_numpy("PROBABILITIES").shape == (6,)
        assert client.get_model_metadata("one")["versions"] == ["2"]  # the default policy: the latest
        shutil.rmtree(root / "two")  # removed
        wait_for(lambda: index(client).get(("two", ""), ("",))[0] == "UNAVAILABLE")
        with pytest.raises(InferenceServerException):
            infer(client, "two")
        assert "explicit" in _refusal(lambda: client.load_model("one"))
        client.close()


def _refusal(call) -> str:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value.message()


def test_load_unload_twenty_times_keeps_memory_and_threads(tmp_path):
    root = tmp_path / "repo"
    write_tiny_onnx(root / "cycled" / "1" / "model.onnx", size=32, classes=10, seed=1)
    (root / "cycled" / "config.pbtxt").write_text("instance_group [{ count: 2 }]\n")
    write_tiny_onnx(root / "steady" / "1" / "model.onnx", size=32, classes=10, seed=2)
    with ServerProcess(["--model-repository", str(root), "--model-control-mode", "explicit", "--load-model", "*",
                        "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bind", "off", "--threads", "1"]) as proc:
        client = httpclient.InferenceServerClient(proc.fronts["http"].removeprefix("http://"))
        grpc = grpcclient.InferenceServerClient(proc.fronts["grpc"])
        process = psutil.Process(proc.process.pid)

        def cycle(i):
            (client if i % 2 else grpc).unload_model("cycled")
            (client if i % 2 else grpc).load_model("cycled")
            infer(client, "cycled")

        for i in range(3):  # warm: allocator pools, the control threads, the clients' connections
            cycle(i)
        rss, threads = process.memory_info().rss, process.num_threads()
        for i in range(20):
            cycle(i)
        deadline = time.monotonic() + 10  # a retired model's threads exit on their own; a busy machine delays them
        while process.num_threads() > threads and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.num_threads() == threads
        assert process.memory_info().rss < rss * 1.10, (rss, process.memory_info().rss)
        assert infer(client, "steady").as_numpy("PROBABILITIES").shape == (10,)
        client.close()
        grpc.close()


def test_stop_line_counts_every_front_end(tiny_onnx):
    with ServerProcess(["--onnx", str(tiny_onnx), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
                        "--threads", "1"]) as proc:
        client = httpclient.InferenceServerClient(proc.fronts["http"].removeprefix("http://"))
        for _ in range(2):
            infer(client, "tinynet")
        wrong = httpclient.InferInput("WRONG", [1, 1, 3], "UINT8")
        wrong.set_data_from_numpy(np.zeros((1, 1, 3), np.uint8))
        with pytest.raises(InferenceServerException):
            client.infer("tinynet", [wrong])
        grpc = grpcclient.InferenceServerClient(proc.fronts["grpc"])
        img = np.zeros((30, 30, 3), np.uint8)
        tensor = grpcclient.InferInput("IMAGE", list(img.shape), "UINT8")
        tensor.set_data_from_numpy(img)
        grpc.infer("tinynet", [tensor])
        client.close()
        grpc.close()
        assert proc.stop() == 0
        line = next(line for line in proc.read_stderr().splitlines() if "stopped: " in line)
    stats = ast.literal_eval(line.split("stopped: ", 1)[1])
    assert stats["requests"] == 4 and stats["served"] == 3 and stats["errors"] == 1
    assert stats["fronts"]["http"]["requests"] == 3 and stats["fronts"]["grpc"]["served"] == 1


@pytest.mark.slow
def test_a_zoo_json_folder_serves_that_model(tmp_path):
    """A version folder may name a timm model instead of holding an ONNX file; exported when loaded."""
    root = tmp_path / "repo"
    (root / "small" / "1").mkdir(parents=True)
    (root / "small" / "1" / "zoo.json").write_text(json.dumps({"model": "test_resnet", "library": "timm",
                                                               "seed": 5}))
    with ServerProcess(["--model-repository", str(root), "--http", "127.0.0.1:0", "--bind", "off", "--threads", "1"],
                       env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout_s=600) as proc:
        client = httpclient.InferenceServerClient(proc.fronts["http"].removeprefix("http://"))
        assert index(client)[("small", "1")][0] == "READY"
        assert infer(client, "small").as_numpy("PROBABILITIES").shape == (1000,)
        client.close()


@pytest.mark.parametrize("args, reason", [
    (["--model-repository", "/nonexistent/repo"], "--model-repository /nonexistent/repo: no such directory"),
    (["--model-repository", ".", "--load-model", "a"], "--load-model needs --model-control-mode explicit"),
    (["--onnx", "x.onnx", "--model-control-mode", "poll"], "--model-control-mode and --load-model need "
                                                           "--model-repository"),
])
def test_repository_flag_errors_are_one_line(args, reason):
    done = subprocess.run([sys.executable, "-m", "engine.serve", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"engine.serve: error: {reason}"]


def test_a_front_end_that_cannot_bind_exits_2_after_loading_models(tmp_path, tiny_onnx):
    """The models' instance threads already run when a front end fails to bind: the process still ends."""
    with ServerProcess(["--onnx", str(tiny_onnx), "--bind", "off", "--http", "127.0.0.1:0", "--threads", "1"]) as proc:
        taken = proc.fronts["http"].removeprefix("http://")
        done = subprocess.run([sys.executable, "-m", "engine.serve", "--onnx", str(tiny_onnx), "--bind", "off",
                               "--http", taken, "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("engine.serve: error: http: could not start")
