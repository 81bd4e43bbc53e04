"""engine.serve: a real server process, real ZeroMQ sockets on 127.0.0.1 random ports."""
from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
import zmq.auth
from PIL import Image
from served_reference import reference_probs
from server_process import ServerProcess

from engine.serving.batcher import DynamicBatcher
from engine.serving.security import is_local_endpoint
from engine.serving.service_time import ServiceTimes

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def server(tiny_onnx):
    with ServerProcess(["--onnx", str(tiny_onnx), "--max-batch", "4", "--max-queue-delay-us", "1000",
                        "--instances", "2", "--workers", "2", "--threads", "1", "--max-bytes", str(2**20),
                        "--max-pixels", "1000000", "--max-inflight", "100"]) as proc:
        yield proc


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def dealer(ctx, endpoint):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def recv(sock, timeout_ms=20_000):
    assert sock.poll(timeout_ms), "no reply from the server"
    frames = sock.recv_multipart()
    return frames, msgpack.unpackb(frames[-1], raw=False)


def header(**fields):
    return msgpack.packb(fields, use_bin_type=True)


def raw_request(image, request_id, topk=5):
    return [header(id=request_id, encoding="raw", shape=list(image.shape), dtype="uint8", topk=topk),
            image.tobytes()]


def photo(seed=0, height=180, width=260):
    """A smooth random image (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 20 + 1, width // 20 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def encoded(image, fmt):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def npz_bytes(save=np.savez, **arrays):
    buf = io.BytesIO()
    save(buf, **arrays)
    return buf.getvalue()


def reference_topk(onnx_path, image, k):
    """What the served model must answer, computed in-process from the same parts."""
    probs = reference_probs(onnx_path, image)
    order = np.argsort(-probs)[:k]
    return order.tolist(), probs[order]


def test_dealer_every_encoding_matches_in_process_model(server, tiny_onnx, context):
    image = photo(1)
    sock = dealer(context, server.endpoint)
    payloads = {
        "raw": raw_request(image, "raw-1", topk=3),
        "png": [header(id=2, encoding="png", topk=3), encoded(image, "PNG")],
        "npz": [header(id=b"\x00npz", encoding="npz", topk=3), npz_bytes(input_0=image.transpose(2, 0, 1))],
        "npz-hwc": [header(id=4.5, encoding="npz", topk=3), npz_bytes(input_0=image)],
    }
    expected_classes, expected_probs = reference_topk(tiny_onnx, image, 3)
    for name, frames in payloads.items():
        sock.send_multipart(frames)
        reply_frames, reply = recv(sock)
        assert len(reply_frames) == 1, name
        assert reply["ok"], (name, reply)
        assert reply["id"] == msgpack.unpackb(frames[0], raw=False)["id"]
        assert [e["class"] for e in reply["topk"]] == expected_classes, name
        np.testing.assert_allclose([e["prob"] for e in reply["topk"]], expected_probs, rtol=1e-4, atol=1e-6)
        assert reply["topk"][0]["name"] == f"tiny class {expected_classes[0]}"
        timing = reply["timing_us"]
        assert set(timing) == {"queue", "preprocess", "infer", "total"}
        assert 0 < timing["preprocess"] <= timing["total"] and timing["infer"] > 0

    sock.send_multipart([header(id="jpg", encoding="jpeg"), encoded(image, "JPEG")])
    _, reply = recv(sock)
    assert reply["ok"] and len(reply["topk"]) == 5 and reply["id"] == "jpg"
    probs = [e["prob"] for e in reply["topk"]]
    assert probs == sorted(probs, reverse=True)


def test_req_client_gets_its_delimiter_back(server, context):
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    for i in range(3):
        sock.send_multipart(raw_request(photo(i, 64, 96), i, topk=2))
        _, reply = recv(sock)
        assert reply["ok"] and reply["id"] == i and len(reply["topk"]) == 2
    sock.send(msgpack.packb({"op": "ping"}))
    _, pong = recv(sock)
    assert pong["op"] == "pong"


def test_ping_reports_model_and_stats(server, context):
    sock = dealer(context, server.endpoint)
    sock.send_multipart(raw_request(photo(2, 50, 50), "warm"))
    assert recv(sock)[1]["ok"]
    sock.send(msgpack.packb({"op": "ping"}))
    _, pong = recv(sock)
    assert pong["ok"] and pong["op"] == "pong" and pong["model"] == "tinynet"
    stats = pong["stats"]
    assert stats["served"] >= 1 and stats["in_flight"] == 0 and stats["queue_depth"] == 0
    assert sum(stats["batch_sizes"].values()) >= 1
    assert all(1 <= int(size) <= 4 for size in stats["batch_sizes"])


def png_bomb():
    """A few kilobytes of PNG that decodes to 4000 x 4000 pixels."""
    return encoded(np.zeros((4000, 4000), np.uint8), "PNG")


BAD_REQUESTS = {
    "not msgpack": ([b"\xc1\xc1 not msgpack", b"x"], None, "not valid msgpack"),
    "header not a map": ([msgpack.packb([1, 2]), b"x"], None, "must be a msgpack map"),
    "missing id": ([header(encoding="png"), b"x"], None, "missing field 'id'"),
    "missing encoding": ([header(id=7), b"x"], 7, "missing field 'encoding'"),
    "unknown encoding": ([header(id=8, encoding="gif"), b"GIF89a"], 8, "unknown encoding 'gif'"),
    "raw without shape": ([header(id=9, encoding="raw", dtype="uint8"), b"\0" * 12], 9, "needs field 'shape'"),
    "raw without dtype": ([header(id=10, encoding="raw", shape=[2, 2, 3]), b"\0" * 12], 10, "needs field 'dtype'"),
    "raw bad dtype": ([header(id=11, encoding="raw", shape=[2, 2, 3], dtype="float32"), b"\0" * 48], 11,
                      "dtype 'float32'"),
    "raw bad shape": ([header(id=12, encoding="raw", shape=[2, 2], dtype="uint8"), b"\0" * 4], 12, "[H, W, 3]"),
    "raw size mismatch": ([header(id=13, encoding="raw", shape=[4, 4, 3], dtype="uint8"), b"\0" * 47], 13,
                          "payload has 47 bytes"),
    "raw too many pixels": ([header(id=14, encoding="raw", shape=[2000, 1000, 3], dtype="uint8"), b"\0" * 10],
                            14, "pixels allowed"),
    "topk above classes": ([header(id=15, encoding="png", topk=NUM_CLASSES + 1), b"x"], 15, "topk 11"),
    "topk not int": ([header(id=16, encoding="png", topk="5"), b"x"], 16, "topk '5'"),
    "empty payload": ([header(id=17, encoding="png"), b""], 17, "payload is empty"),
    "payload above max bytes": ([header(id=18, encoding="png"), b"\0" * (2**20 + 1)], 18, "above the limit"),
    "corrupt jpeg": ([header(id=19, encoding="jpeg"), b"\xff\xd8\xff\xe0" + b"\x13" * 500], 19, "request 19"),
    "png labelled jpeg": ([header(id=20, encoding="jpeg"), encoded(photo(), "PNG")], 20, "not a JPEG"),
    "truncated png": ([header(id=21, encoding="png"), encoded(photo(), "PNG")[:300]], 21, "request 21"),
    "png decompression bomb": ([header(id=22, encoding="png"), png_bomb()], 22, "decompression-bomb"),
    "npz bomb": ([header(id=23, encoding="npz"),
                  npz_bytes(np.savez_compressed, input_0=np.zeros((3, 4000, 4000), np.uint8))], 23,
                 "decompression-bomb"),
    "npz wrong key": ([header(id=24, encoding="npz"), npz_bytes(image=photo())], 24, "no key 'input_0'"),
    "npz not zip": ([header(id=25, encoding="npz"), b"PK\x03\x04garbage"], 25, "npz archive"),
    "npz float": ([header(id=26, encoding="npz"), npz_bytes(input_0=np.zeros((3, 8, 8), np.float32))], 26,
                  "dtype float32"),
    "three frames": ([header(id=27, encoding="png"), b"x", b"y"], None, "expected 2 frames"),
    "unknown op": ([msgpack.packb({"op": "reboot", "id": 28})], 28, "not a known control op"),
    "id not scalar": ([header(id=[1], encoding="png"), b"x"], None, "'id' must be a scalar"),
}


def test_every_malformed_request_gets_an_error_and_the_server_keeps_serving(server, context):
    sock = dealer(context, server.endpoint)
    for name, (frames, request_id, message) in BAD_REQUESTS.items():
        sock.send_multipart(frames)
        _, reply = recv(sock)
        assert reply["ok"] is False, name
        assert reply["id"] == request_id, name
        assert message in reply["error"], (name, reply["error"])
        sock.send_multipart(raw_request(photo(3, 40, 40), f"after {name}"))
        _, good = recv(sock)
        assert good["ok"] and good["id"] == f"after {name}", name


def test_random_garbage_gets_one_error_reply_per_message(server, context):
    rng = np.random.default_rng(11)
    sock = dealer(context, server.endpoint)
    candidates = [
        lambda: rng.bytes(int(rng.integers(1, 64))),
        lambda: msgpack.packb({"id": int(rng.integers(100)), "encoding": str(rng.choice(["raw", "jpeg", "npz", "x"])),
                               "shape": [int(v) for v in rng.integers(-2, 5, 3)], "dtype": "uint8",
                               "topk": int(rng.integers(-1, 12))}),
        lambda: msgpack.packb(rng.integers(0, 5, 3).tolist()),
        lambda: b"\xff\xd8\xff" + rng.bytes(50),
    ]
    count = 200
    for _ in range(count):
        frames = [candidates[int(rng.integers(len(candidates)))]() for _ in range(int(rng.integers(1, 4)))]
        sock.send_multipart(frames)
    replies = [recv(sock)[1] for _ in range(count)]
    assert all(isinstance(r, dict) and "ok" in r and (r["ok"] or r["error"]) for r in replies)
    assert not sock.poll(200)  # exactly one reply each
    sock.send_multipart(raw_request(photo(9, 40, 40), "still here"))
    assert recv(sock)[1]["id"] == "still here"


def test_eight_clients_fifty_requests_each_get_their_own_ids(server, context):
    failures = []

    def client(index):
        sock = dealer(context, server.endpoint)
        try:
            image = photo(index, 48 + index, 64)
            ids = set()
            for j in range(50):
                request_id = f"c{index}-{j}"
                sock.send_multipart(raw_request(image, request_id, topk=1 + j % 3))
                ids.add(request_id)
                if j % 10 == 9:  # keep up to 10 in flight
                    while len(ids) > 0:
                        _, reply = recv(sock)
                        if not reply["ok"] or reply["id"] not in ids:
                            failures.append(reply)
                        ids.discard(reply["id"])
        finally:
            sock.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures[:3]


def test_client_vanishing_mid_request_does_not_disturb_others(server, context):
    for _ in range(3):
        gone = dealer(context, server.endpoint)
        for i in range(20):
            gone.send_multipart(raw_request(photo(4, 300, 300), i))
        gone.close(linger=0)
    sock = dealer(context, server.endpoint)
    for i in range(5):
        sock.send_multipart(raw_request(photo(5, 64, 64), f"stay-{i}"))
        _, reply = recv(sock)
        assert reply["ok"] and reply["id"] == f"stay-{i}"


def ping_stats(sock):
    sock.send(msgpack.packb({"op": "ping"}))
    return recv(sock)[1]["stats"]


@pytest.mark.parametrize("inline_max_us", [10**9, 0])
def test_idle_server_answers_short_requests_on_its_socket_thread(tiny_onnx, context, inline_max_us):
    """The inline path gives the same answers and errors as the worker path, and can be turned off.

    A huge limit makes every estimated request short, so the count does not depend on timing.
    """
    with ServerProcess(["--onnx", str(tiny_onnx), "--max-batch", "4", "--workers", "2", "--threads", "1",
                        "--inline-max-us", str(inline_max_us)]) as proc:
        sock = dealer(context, proc.endpoint)
        image = photo(12, 120, 160)
        expected_classes, expected_probs = reference_topk(tiny_onnx, image, 3)
        jpeg = encoded(image, "JPEG")
        for i in range(6):  # the first of each encoding is measured on the worker path
            sock.send_multipart(raw_request(image, i, topk=3))
            _, reply = recv(sock)
            assert reply["ok"] and reply["id"] == i
            assert [e["class"] for e in reply["topk"]] == expected_classes
            np.testing.assert_allclose([e["prob"] for e in reply["topk"]], expected_probs, rtol=1e-4, atol=1e-6)
        sock.send_multipart([header(id="jpeg", encoding="jpeg"), jpeg])
        assert recv(sock)[1]["ok"]
        sock.send_multipart([header(id="corrupt", encoding="jpeg"), jpeg[:40] + b"\x13" * 300])
        _, reply = recv(sock)
        assert reply["ok"] is False and reply["id"] == "corrupt" and "request 'corrupt'" in reply["error"]
        sock.send_multipart([header(id="after", encoding="jpeg"), jpeg])
        assert recv(sock)[1]["ok"]
        stats = ping_stats(sock)
        assert stats["served"] == 8 and stats["errors"] == 1 and stats["in_flight"] == 0
        if inline_max_us:
            assert stats["inline"] == 7  # all but the first raw and the first jpeg
        else:
            assert stats["inline"] == 0


def test_full_queue_answers_busy(tiny_onnx, context):
    """The first two requests wait out a 2 s queue delay (their batch of 4 never fills), so the
    server stays full while the rest arrive, however fast it runs: without the delay a server
    that finishes each request before the next one arrives would never be full."""
    with ServerProcess(["--onnx", str(tiny_onnx), "--max-batch", "4", "--max-queue-delay-us", "2000000",
                        "--workers", "1", "--threads", "1", "--max-inflight", "2"]) as proc:
        sock = dealer(context, proc.endpoint)
        big = photo(6, 800, 1000)
        for i in range(40):
            sock.send_multipart(raw_request(big, i))
        replies = [recv(sock)[1] for _ in range(40)]
        assert sorted(r["id"] for r in replies) == list(range(40))
        busy = [r for r in replies if not r["ok"]]
        assert busy and all(r["error"].startswith("busy") for r in busy)
        assert 2 <= sum(r["ok"] for r in replies) < 40
        sock.send(msgpack.packb({"op": "ping"}))
        assert recv(sock)[1]["stats"]["busy"] == len(busy)


def test_sigterm_drains_in_flight_requests(tiny_onnx, context):
    proc = ServerProcess(["--onnx", str(tiny_onnx), "--max-batch", "64", "--max-queue-delay-us", "30000000",
                          "--workers", "2", "--threads", "1"])
    try:
        sock = dealer(context, proc.endpoint)
        for i in range(12):
            sock.send_multipart(raw_request(photo(7, 64, 64), i))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until all 12 wait in the batcher
            sock.send(msgpack.packb({"op": "ping"}))
            _, pong = recv(sock)
            if pong["stats"]["in_flight"] == 12 and pong["stats"]["queue_depth"] == 12:
                break
        assert pong["stats"]["in_flight"] == 12
        t0 = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        replies = [recv(sock, 10_000)[1] for _ in range(12)]
        assert sorted(r["id"] for r in replies) == list(range(12))
        assert all(r["ok"] for r in replies)
        assert proc.process.wait(20) == 0
        assert time.monotonic() - t0 < 15, "the drain should not wait for the 30 s batching delay"
        assert "draining 12 requests" in proc.read_stderr()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def curve_keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("curve")
    for folder in ("server", "authorized", "client", "stranger"):
        (root / folder).mkdir()
    zmq.auth.create_certificates(root / "server", "server")
    zmq.auth.create_certificates(root / "client", "client")
    zmq.auth.create_certificates(root / "stranger", "stranger")
    (root / "authorized" / "client.key").write_bytes((root / "client" / "client.key").read_bytes())
    return root


def curve_dealer(ctx, endpoint, keys, who):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    public, secret = zmq.auth.load_certificate(keys / who / f"{who}.key_secret")
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.curve_serverkey, _ = zmq.auth.load_certificate(keys / "server" / "server.key")
    sock.connect(endpoint)
    return sock


def test_curve_admits_authorized_clients_only(tiny_onnx, curve_keys, context):
    keys = curve_keys
    with ServerProcess(["--onnx", str(tiny_onnx), "--threads", "1",
                        "--curve-secret-key", str(keys / "server" / "server.key_secret"),
                        "--curve-authorized-keys", str(keys / "authorized")]) as proc:
        good = curve_dealer(context, proc.endpoint, keys, "client")
        good.send_multipart(raw_request(photo(8, 32, 32), "authorized"))
        _, reply = recv(good)
        assert reply["ok"] and reply["id"] == "authorized"

        stranger = curve_dealer(context, proc.endpoint, keys, "stranger")
        plain = dealer(context, proc.endpoint)
        for sock in (stranger, plain):
            # Once the server has refused the handshake the DEALER may have no connection
            # to queue on, and a send would wait for one for ever (it hung a run once).
            sock.setsockopt(zmq.SNDTIMEO, 2000)
            try:
                sock.send_multipart(raw_request(photo(8, 32, 32), "intruder"))
                sock.send(msgpack.packb({"op": "ping"}))
            except zmq.Again:
                pass  # refused at the handshake: nothing could even be sent
        assert not stranger.poll(1500) and not plain.poll(100)

        good.send(msgpack.packb({"op": "ping"}))
        _, pong = recv(good)
        assert pong["stats"]["requests"] == 2  # nothing from the intruders reached the server


def test_non_loopback_bind_needs_curve_or_insecure(tiny_onnx):
    result = subprocess.run(
        [sys.executable, "-m", "engine.serve", "--onnx", str(tiny_onnx), "--bind", "tcp://0.0.0.0:5555"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr and "--insecure" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--onnx", "/no/such/model.onnx"], "ONNX model /no/such/model.onnx: no such file"),
    (["--onnx", "x.onnx", "--max-batch", "0"], "--max-batch must be at least 1, got 0"),
    (["--onnx", "x.onnx", "--curve-secret-key", "k"], "go together"),
])
def test_cli_errors_name_the_problem(args, message):
    result = subprocess.run([sys.executable, "-m", "engine.serve", *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.slow
def test_serves_a_zoo_model_with_packaged_weights():
    import skimage.data

    with ServerProcess(["--model", "efficientnet_lite0", "--threads", "2"], timeout_s=300) as proc:
        ctx = zmq.Context()
        try:
            sock = dealer(ctx, proc.endpoint)
            cat = skimage.data.chelsea()
            sock.send_multipart(raw_request(cat, "chelsea", topk=3))
            _, reply = recv(sock, 60_000)
        finally:
            ctx.destroy(linger=0)
    assert reply["ok"]
    assert "cat" in reply["topk"][0]["name"]  # a trained ImageNet model sees the cat


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:9", True),
    ("tcp://127.0.0.1:*", True), ("ipc:///tmp/x", True), ("tcp://*:5555", False),
    ("tcp://0.0.0.0:5555", False), ("tcp://10.1.2.3:80", False), ("tcp://eth0:5555", False),
])
def test_loopback_detection(endpoint, local):
    assert is_local_endpoint(endpoint) is local


class TestServiceTimes:
    def test_no_estimate_until_both_parts_were_measured(self):
        times = ServiceTimes()
        assert times.estimate_us("raw", 1000) is None
        times.record_preprocess("raw", 1000, 200.0)
        assert times.estimate_us("raw", 1000) is None
        times.record_infer(50.0)
        assert times.estimate_us("raw", 1000) == pytest.approx(250.0)
        assert times.estimate_us("jpeg", 1000) is None  # per encoding

    def test_medians_ignore_a_cold_start_and_larger_payloads_scale_up(self):
        times = ServiceTimes()
        times.record_infer(6000.0)
        times.record_preprocess("raw", 1000, 1500.0)
        for _ in range(4):
            times.record_infer(300.0)
            times.record_preprocess("raw", 1000, 200.0)
        assert times.estimate_us("raw", 1000) == pytest.approx(500.0)
        assert times.estimate_us("raw", 100) == pytest.approx(500.0)  # never scaled down
        assert times.estimate_us("raw", 10_000) == pytest.approx(2300.0)


class TestDynamicBatcher:
    def test_try_claim_only_when_nothing_waits(self):
        batcher = DynamicBatcher(max_batch=4, max_delay_s=1.0, instances=["a", "b"])
        assert batcher.try_claim() in ("a", "b")
        assert batcher.put("x") is None  # the delay holds it
        assert batcher.try_claim() is None  # a claim must not overtake "x"
        batcher.drain()
        assert batcher.next_batch()[0] == ["x"]
        assert batcher.try_claim() is None  # no idle instance left


    def test_full_batch_goes_to_the_thread_that_fills_it(self):
        batcher = DynamicBatcher(max_batch=4, max_delay_s=10.0, instances=["gpu0"])
        assert [batcher.put(i) for i in range(3)] == [None, None, None]
        assert batcher.put(3) == ([0, 1, 2, 3], "gpu0")
        assert batcher.put(4) is None  # the only instance is busy
        batcher.release("gpu0")
        assert [batcher.put(i) for i in (5, 6)] == [None, None]
        assert batcher.put(7) == ([4, 5, 6, 7], "gpu0")

    def test_partial_batch_waits_for_the_oldest_request_delay(self):
        batcher = DynamicBatcher(max_batch=8, max_delay_s=0.2, instances=[0])
        start = time.perf_counter()
        assert batcher.put("a", ready_time=start) is None
        threading.Timer(0.05, batcher.put, args=("b",)).start()
        batch, instance = batcher.next_batch()
        waited = time.perf_counter() - start
        assert batch == ["a", "b"] and instance == 0
        assert 0.19 <= waited < 0.6  # the delay counts from "a", not from "b"

    def test_zero_delay_runs_at_once_on_an_idle_instance(self):
        batcher = DynamicBatcher(max_batch=8, max_delay_s=0.0, instances=["a", "b"])
        first = batcher.put(1)
        second = batcher.put(2)
        assert {first[1], second[1]} == {"a", "b"} and first[0] == [1] and second[0] == [2]
        assert batcher.put(3) is None and batcher.put(4) is None  # both busy: they wait together
        batcher.release("a")
        assert batcher.next_batch() == ([3, 4], "a")

    def test_due_batch_waits_for_an_instance(self):
        batcher = DynamicBatcher(max_batch=2, max_delay_s=0.0, instances=["only"])
        batch, instance = batcher.put("x")
        batcher.put("y")
        threading.Timer(0.1, batcher.release, args=(instance,)).start()
        t0 = time.perf_counter()
        assert batcher.next_batch() == (["y"], "only")
        assert time.perf_counter() - t0 >= 0.09

    def test_several_instances_share_one_queue(self):
        batcher = DynamicBatcher(max_batch=3, max_delay_s=0.05, instances=[0, 1, 2])
        taken, lock = [], threading.Lock()

        def run(batch, instance):
            assert len(batch) <= 3
            with lock:
                taken.extend(batch)
            batcher.release(instance)

        def instance_thread():
            while (claimed := batcher.next_batch()) is not None:
                run(*claimed)

        threads = [threading.Thread(target=instance_thread) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(100):
            if (claimed := batcher.put(i)) is not None:
                run(*claimed)
        time.sleep(0.2)
        batcher.close()
        for t in threads:
            t.join(5)
        assert sorted(taken) == list(range(100))

    def test_drain_flushes_without_waiting_and_close_ends(self):
        batcher = DynamicBatcher(max_batch=8, max_delay_s=60.0, instances=[0])
        batcher.put("x")
        threading.Timer(0.05, batcher.drain).start()
        t0 = time.perf_counter()
        assert batcher.next_batch() == (["x"], 0)
        assert time.perf_counter() - t0 < 5
        batcher.release(0)
        batcher.close()
        assert batcher.next_batch() is None
        with pytest.raises(RuntimeError):
            batcher.put("late")
