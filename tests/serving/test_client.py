"""engine.client (Client class and CLI) and bench.load against a real server process."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import zmq
import zmq.auth
from PIL import Image
from server_process import ServerProcess
from tinynet import write_tiny_onnx

from bench.load import LoadGenerator, Window, is_stable, write_csv
from engine.serving.client import Client, ServerError, encode_item


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return write_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny_224.onnx", size=224, resize=256, classes=7, seed=5)


@pytest.fixture(scope="module")
def server(tiny_onnx):
    with ServerProcess(["--onnx", str(tiny_onnx), "--max-batch", "4", "--workers", "2", "--threads", "1"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    array = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((160, 120)))
    Image.fromarray(array).save(root / "frame.jpg", quality=95)
    Image.fromarray(array).save(root / "frame.png")
    Image.fromarray(array).save(root / "frame.bmp")
    np.savez(root / "frame.npz", input_0=array.transpose(2, 0, 1))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return root, array


def test_classify_paths_arrays_bytes_and_pil_images_agree(server, images):
    root, array = images
    with Client(server.endpoint, timeout_ms=20_000) as client:
        by_array = client.classify(array, topk=3)
        assert by_array["ok"] and len(by_array["topk"]) == 3
        lossless = [root / "frame.png", root / "frame.bmp", root / "frame.npz", str(root / "frame.png"),
                    (root / "frame.png").read_bytes(), Image.fromarray(array)]
        for item in lossless:
            reply = client.classify(item, topk=3)
            assert reply["topk"] == by_array["topk"], type(item)
        jpeg = client.classify(root / "frame.jpg", topk=3)
        assert jpeg["ok"] and [e["name"] for e in jpeg["topk"]][0].startswith("tiny class")


def test_submit_and_results_pipeline_many_requests(server, images):
    _, array = images
    with Client(server.endpoint) as client:
        ids = [client.submit(array, topk=1 + i % 3) for i in range(30)]
        assert len(set(ids)) == 30
        replies = client.results(timeout=20)
        assert sorted(replies) == sorted(ids)
        assert all(r["ok"] and len(r["topk"]) == 1 + r["id"] % 3 for r in replies.values())
        custom = client.submit(array, request_id="mine")
        assert custom == "mine" and set(client.results(1, timeout=20)) == {"mine"}


def test_server_refusal_raises_server_error(server, images):
    root, _ = images
    with Client(server.endpoint) as client:
        with pytest.raises(ServerError, match="request 0") as info:
            client.classify(root / "broken.png")
        assert info.value.reply["ok"] is False
        with pytest.raises(ServerError, match="topk 99"):
            client.classify(root / "frame.png", topk=99)
        assert client.ping()["stats"]["errors"] >= 2


def test_timeouts_when_nobody_answers():
    with zmq.Context() as ctx:
        silent = ctx.socket(zmq.ROUTER)
        port = silent.bind_to_random_port("tcp://127.0.0.1")
        with Client(f"tcp://127.0.0.1:{port}", timeout_ms=300) as client:
            with pytest.raises(TimeoutError, match="no reply"):
                client.classify(np.zeros((8, 8, 3), np.uint8))
            client.submit(np.zeros((8, 8, 3), np.uint8))
            with pytest.raises(TimeoutError) as info:
                client.results(timeout=0.2)
            assert info.value.partial == {}
        silent.close(linger=0)


@pytest.mark.parametrize("item, message", [
    (np.zeros((4, 4), np.uint8), "expected \\(H, W, 3\\) uint8"),
    (np.zeros((4, 4, 3), np.float32), "expected \\(H, W, 3\\) uint8"),
    (b"GIF89a....", "not JPEG, PNG or npz"),
    (12, "cannot send a int"),
])
def test_encode_item_rejects_what_it_cannot_send(item, message):
    with pytest.raises((ValueError, TypeError), match=message):
        encode_item(item)


def test_encode_item_encodings(images):
    root, array = images
    assert encode_item(root / "frame.jpg")[0] == {"encoding": "jpeg"}
    assert encode_item(root / "frame.npz")[0] == {"encoding": "npz"}
    fields, payload = encode_item(root / "frame.bmp")  # decoded here, sent raw
    assert fields == {"encoding": "raw", "shape": [120, 160, 3], "dtype": "uint8"}
    assert bytes(payload) == array.tobytes()


def test_cli_prints_topk_lines_and_fails_on_bad_images(server, images):
    root, _ = images
    ok = subprocess.run(
        [sys.executable, "-m", "engine.client", "--connect", server.endpoint, "--topk", "2",
         str(root / "frame.jpg"), str(root / "frame.png")],
        capture_output=True, text=True, timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{root / 'frame.jpg'}: Relay top-0 id: ")
    assert ", prob: " in lines[0] and ", class name: tiny class " in lines[0]
    assert lines[3].startswith(f"{root / 'frame.png'}: Relay top-1 id: ")

    bad = subprocess.run(
        [sys.executable, "-m", "engine.client", "--connect", server.endpoint, "--json",
         str(root / "broken.png"), str(root / "frame.png")],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 3  # some images failed, each named, the rest classified
    assert "broken.png" in bad.stderr
    replies = [json.loads(line) for line in bad.stdout.splitlines()]
    assert [r["ok"] for r in replies] == [False, True]


def test_curve_client(tiny_onnx, images, tmp_path):
    _, array = images
    for who in ("server", "client"):
        (tmp_path / who).mkdir()
        zmq.auth.create_certificates(tmp_path / who, who)
    with ServerProcess(["--onnx", str(tiny_onnx), "--threads", "1",
                        "--curve-secret-key", str(tmp_path / "server" / "server.key_secret"),
                        "--curve-authorized-keys", str(tmp_path / "client")]) as proc:
        with Client(proc.endpoint, curve_server_key=tmp_path / "server" / "server.key",
                    curve_client_key_file=tmp_path / "client" / "client.key_secret") as client:
            assert client.classify(array)["ok"]
        with pytest.raises(ValueError, match="both"):
            Client(proc.endpoint, curve_server_key=tmp_path / "server" / "server.key")


def test_load_generator_measures_levels(server, images, tmp_path):
    _, array = images
    generator = LoadGenerator(server.endpoint, array)
    result = generator.measure(2, warmup_s=0.2, window_s=0.3, max_windows=4)
    assert result.concurrency == 2 and result.errors == 0
    assert 3 <= result.windows <= 4
    assert result.requests == len(result.latencies_us) > 0
    assert 0 < result.p50_us <= result.p90_us <= result.p95_us <= result.p99_us
    assert result.throughput > 0 and set(result.server_us) == {"queue", "preprocess", "infer", "total"}
    write_csv(tmp_path / "load.csv", [result])
    rows = list(csv.DictReader(io.StringIO((tmp_path / "load.csv").read_text())))
    assert rows[0]["concurrency"] == "2" and float(rows[0]["throughput"]) == pytest.approx(result.throughput)
    with pytest.raises(ValueError, match="loopback"):
        LoadGenerator("tcp://10.0.0.1:5555", array)


def test_stability_rule():
    steady = [Window(1.0, [1000.0] * 100, 0), Window(1.0, [1050.0] * 104, 0), Window(1.0, [980.0] * 97, 0)]
    assert is_stable(steady, 0.10)
    jumpy = steady[:2] + [Window(1.0, [1000.0] * 130, 0)]
    assert not is_stable(jumpy, 0.10)
    slow_p50 = steady[:2] + [Window(1.0, [2000.0] * 100, 0)]
    assert not is_stable(slow_p50, 0.10)


def test_load_cli_writes_csv_and_json(server, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.load", "--connect", server.endpoint, "--concurrency", "1,4",
         "--size", "96x128", "--warmup-s", "0.2", "--window-s", "0.3", "--max-windows", "3",
         "--csv", str(tmp_path / "l.csv"), "--json", str(tmp_path / "l.json")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "concurrency   1:" in result.stdout and "concurrency   4:" in result.stdout
    levels = json.loads((tmp_path / "l.json").read_text())["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    assert all(level["latencies_us"] and level["errors"] == 0 for level in levels)
    assert len((tmp_path / "l.csv").read_text().splitlines()) == 3
