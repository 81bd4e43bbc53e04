"""A Triton model repository served by a real engine.serve process, driven by the real tritonclient
over HTTP and gRPC: the index (a broken model and a bad config beside good ones), inference on
each model and version, unload / load, statistics, the stream, and ZeroMQ routing by model name."""
from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import time
import urllib.request

import msgpack
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import zmq
from served_reference import reference_probs
from server_process import ServerProcess
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from engine.serving.client import Client, ServerError


@pytest.fixture(scope="module")
def server(repository):
    args = ["--model-repository", str(repository), "--model-control-mode", "explicit", "--load-model", "alpha",
            "--load-model", "beta", "--load-model", "broken", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
            "--threads", "1", "--max-batch", "8"]
    with ServerProcess(args) as proc:
        yield proc


@pytest.fixture(scope="module")
def http(server):
    client = httpclient.InferenceServerClient(server.fronts["http"].removeprefix("http://"), concurrency=4)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc(server):
    client = grpcclient.InferenceServerClient(server.fronts["grpc"])
    yield client
    client.close()


def image(seed: int, height: int = 40, width: int = 50) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def http_infer(client, model, img, version=""):
    tensor = httpclient.InferInput("IMAGE", list(img.shape), "UINT8")
    tensor.set_data_from_numpy(img)
    return client.infer(model, [tensor], model_version=version)


def grpc_input(img, name="IMAGE"):
    tensor = grpcclient.InferInput(name, list(img.shape), "UINT8")
    tensor.set_data_from_numpy(img)
    return tensor


def failure(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_index_lists_ready_models_and_why_the_others_are_not(http, grpc):
    rows = {(row["name"], row.get("version", "")): row for row in http.get_model_repository_index()}
    assert {key for key, row in rows.items() if row["state"] == "READY"} == {("alpha", "1"), ("alpha", "2"),
                                                                             ("beta", "1")}
    assert rows[("broken", "")]["state"] == "UNAVAILABLE"
    assert "broken/1/model.onnx" in rows[("broken", "")]["reason"]
    assert rows[("badconfig", "")]["reason"] == "not loaded"  # explicit mode: not asked for at start
    grpc_rows = grpc.get_model_repository_index(as_json=True)["models"]
    assert {(r["name"], r.get("version", ""), r["state"]) for r in grpc_rows} == {
        (name, version, row["state"]) for (name, version), row in rows.items()}
    assert {r["name"] for r in grpc.get_model_repository_index(as_json=True)["models"]} >= {"broken", "badconfig"}


def test_a_bad_config_fails_its_load_naming_the_field(http, grpc):
    error = failure(lambda: http.load_model("badconfig"))
    assert "frobnicate" in error.message()
    error = failure(lambda: grpc.load_model("badconfig"))
    assert "config.pbtxt" in error.message() and "frobnicate" in error.message()
    rows = {r["name"]: r for r in http.get_model_repository_index()}
    assert rows["badconfig"]["state"] == "UNAVAILABLE" and "frobnicate" in rows["badconfig"]["reason"]
    assert "unknown model 'broken'" in failure(lambda: http_infer(http, "broken", image(0))).message()


def test_each_model_and_version_answers_with_its_own_weights(http, grpc, repository):
    img = image(1)
    for model, version, classes in (("alpha", "1", 10), ("alpha", "2", 10), ("beta", "1", 5)):
        expected = reference_probs(repository / model / version / "model.onnx", img)
        result = http_infer(http, model, img, version)
        assert result.get_response()["model_version"] == version
        np.testing.assert_allclose(result.as_numpy("PROBABILITIES"), expected, rtol=1e-4, atol=1e-6)
        got = grpc.infer(model, [grpc_input(img)], model_version=version).as_numpy("PROBABILITIES")
        assert got.shape == (classes,)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    latest = http_infer(http, "alpha", img)  # no version: the latest
    assert latest.get_response()["model_version"] == "2"
    assert http.get_model_metadata("alpha")["versions"] == ["1", "2"]
    assert grpc.get_model_metadata("alpha", as_json=True)["versions"] == ["1", "2"]
    assert http.get_model_config("alpha")["max_batch_size"] == 4
    assert http.get_model_config("beta")["max_batch_size"] == 8  # no config.pbtxt: --max-batch
    assert "no version '3'" in failure(lambda: http_infer(http, "alpha", img, "3")).message()
    assert not http.is_model_ready("alpha", "3") and http.is_model_ready("alpha", "1")


def test_unload_then_load_again(http, grpc, repository):
    img = image(2)
    grpc.unload_model("beta")
    assert not http.is_model_ready("beta")
    assert failure(lambda: http_infer(http, "beta", img)).status() == "404"
    assert failure(lambda: grpc.infer("beta", [grpc_input(img)])).status() == "StatusCode.NOT_FOUND"
    rows = {r["name"]: r for r in http.get_model_repository_index()}
    assert rows["beta"]["state"] == "UNAVAILABLE" and rows["beta"]["reason"] == "unloaded"
    http_infer(http, "alpha", img)  # the others keep serving
    http.load_model("beta")
    expected = reference_probs(repository / "beta" / "1" / "model.onnx", img)
    np.testing.assert_allclose(http_infer(http, "beta", img).as_numpy("PROBABILITIES"), expected, rtol=1e-4,
                               atol=1e-6)


@contextlib.contextmanager
def beta_config(server, http, text: str):
    """``beta`` (served without a config.pbtxt) given one holding ``text`` for the block; after it,
    the file is removed and ``beta`` reloaded as it was."""
    repository_root = server.args[server.args.index("--model-repository") + 1]
    config = f"{repository_root}/beta/config.pbtxt"
    with open(config, "w") as f:
        f.write(text)
    try:
        yield
    finally:
        os.remove(config)
        http.load_model("beta")


def test_unload_drains_requests_in_flight(server, http):
    """Requests held in the batcher by a long queue delay are answered before the unload returns."""
    with beta_config(server, http, "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 2000000 }\n"):
        http.load_model("beta")  # a reload: the new config's two-second delay
        pending = [http.async_infer("beta", [_http_input(image(seed, 48, 48))]) for seed in range(3)]
        deadline = time.monotonic() + 10
        while pending_requests(server, "beta") < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pending_requests(server, "beta") == 3
        t_unload = time.monotonic()
        http.unload_model("beta")
        assert time.monotonic() - t_unload < 1.5  # the drain sends the waiting batch at once
        results = [p.get_result(timeout=30) for p in pending]
        assert all(r.as_numpy("PROBABILITIES").shape == (5,) for r in results)


def test_a_failed_reload_keeps_the_old_version_serving(server, http):
    with beta_config(server, http, "max_batch_size: 8\nnot_a_field: 1\n"):
        assert "not_a_field" in failure(lambda: http.load_model("beta")).message()
        assert http_infer(http, "beta", image(4)).as_numpy("PROBABILITIES").shape == (5,)
        rows = {(r["name"], r.get("version", "")): r["state"] for r in http.get_model_repository_index()}
        assert rows[("beta", "1")] == "READY"


def test_a_load_with_a_config_override_is_refused(http, grpc):
    """Triton's load may carry a config; this server loads only what the folder holds, on both fronts."""
    for client in (http, grpc):
        error = failure(lambda client=client: client.load_model("alpha", config='{"max_batch_size": 2}'))
        assert "only parameterless loads" in error.message(), error
    assert http.is_model_ready("alpha")


def pending_requests(server, model: str) -> float:
    text = urllib.request.urlopen(server.fronts["http"] + "/metrics", timeout=10).read().decode()
    found = re.search(rf'nv_inference_pending_request_count{{model="{model}",version="1"}} (\S+)', text)
    return float(found.group(1)) if found else -1


def _http_input(img):
    tensor = httpclient.InferInput("IMAGE", list(img.shape), "UINT8")
    tensor.set_data_from_numpy(img)
    return tensor


def test_statistics_count_the_requests_sent(http, grpc):
    http.unload_model("beta")
    http.load_model("beta")  # fresh counts
    for seed in range(5):
        http_infer(http, "beta", image(seed))
    for seed in range(3):
        grpc.infer("beta", [grpc_input(image(seed))])
    failure(lambda: grpc.infer("beta", [grpc_input(image(9), name="WRONG")]))
    stats = http.get_inference_statistics("beta")["model_stats"]
    assert len(stats) == 1 and stats[0]["version"] == "1"
    s = stats[0]
    inference = s["inference_stats"]
    assert inference["success"]["count"] == 8 and inference["fail"]["count"] == 1
    assert s["inference_count"] == 8
    for kind in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[kind]["count"] == 8 and inference[kind]["ns"] > 0
    assert sum(b["compute_infer"]["count"] for b in s["batch_stats"]) == s["execution_count"] >= 1
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in s["batch_stats"]) == 8
    g = grpc.get_inference_statistics("beta", "1", as_json=True)["model_stats"][0]
    assert int(g["inference_stats"]["success"]["count"]) == 8 and int(g["inference_count"]) == 8
    every = http.get_inference_statistics()["model_stats"]
    assert {(m["name"], m["version"]) for m in every} == {("alpha", "1"), ("alpha", "2"), ("beta", "1")}
    assert failure(lambda: http.get_inference_statistics("nosuch")).status() == "404"


def test_metrics_label_every_model_and_version(server, http):
    http_infer(http, "alpha", image(3), "1")
    text = urllib.request.urlopen(server.fronts["http"] + "/metrics", timeout=10).read().decode()
    labels = set(re.findall(r'nv_inference_request_success\{model="(\w+)",version="(\d+)"\}', text))
    assert labels == {("alpha", "1"), ("alpha", "2"), ("beta", "1")}


def test_stream_infer_keeps_ids_and_one_bad_request_errors_only_itself(grpc):
    answers = queue.Queue()
    grpc.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(16):
            grpc.async_stream_infer("alpha", [grpc_input(image(i), "WRONG" if i == 7 else "IMAGE")],
                                    request_id=f"req-{i}", model_version="1" if i % 2 else "")
        got = [answers.get(timeout=30) for _ in range(16)]
    finally:
        grpc.stop_stream()
    errors = [error for result, error in got if error is not None]
    assert len(errors) == 1 and "WRONG" in errors[0].message()
    ids = {result.get_response().id: result.get_response().model_version for result, _ in got if result}
    assert ids == {f"req-{i}": "1" if i % 2 else "2" for i in range(16) if i != 7}


def test_stream_error_carries_the_request_id(server):
    """The raw stream: the error of a bad request comes back with that request's id."""
    import grpc as grpc_lib

    with grpc_lib.insecure_channel(server.fronts["grpc"]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        bad = service_pb2.ModelInferRequest(model_name="alpha", id="bad-one")
        good = service_pb2.ModelInferRequest(model_name="alpha", id="good-one")
        tensor = good.inputs.add(name="IMAGE", datatype="UINT8", shape=[8, 8, 3])
        good.raw_input_contents.append(bytes(8 * 8 * 3))
        assert tensor.name == "IMAGE"
        replies = list(stub.ModelStreamInfer(iter([bad, good]), timeout=30))
    by_id = {r.infer_response.id: r for r in replies}
    assert set(by_id) == {"bad-one", "good-one"}
    assert "expected one input named 'IMAGE'" in by_id["bad-one"].error_message
    assert by_id["good-one"].error_message == "" and len(by_id["good-one"].infer_response.raw_output_contents) == 1


def test_zeromq_requests_name_their_model(server, repository):
    """ZeroMQ: the header's ``model`` (and ``version``) route a request; with several models it is needed."""
    endpoint = server.endpoint
    img = image(5)
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.connect(endpoint)
    try:
        def ask(header):
            sock.send_multipart([msgpack.packb({"id": 1, "encoding": "raw", "shape": list(img.shape),
                                                "dtype": "uint8", "topk": 3, **header}), img.tobytes()])
            assert sock.poll(30000)
            return msgpack.unpackb(sock.recv_multipart()[-1])

        reply = ask({"model": "alpha", "version": "1"})
        expected = reference_probs(repository / "alpha" / "1" / "model.onnx", img)
        assert reply["ok"] and reply["topk"][0]["class"] == int(np.argmax(expected))
        assert ask({"model": "beta"})["ok"]
        missing = ask({})
        assert not missing["ok"] and "name the model" in missing["error"]
        assert "unknown model 'nosuch'" in ask({"model": "nosuch"})["error"]
    finally:
        sock.close(linger=0)
    with Client(endpoint) as client:
        reply = client.classify(img, topk=2, model="alpha", version="2")
        expected = reference_probs(repository / "alpha" / "2" / "model.onnx", img)
        assert reply["topk"][0]["class"] == int(np.argmax(expected))
        with pytest.raises(ServerError, match="name the model"):
            client.classify(img)


def test_control_is_refused_outside_explicit_mode(repository):
    with ServerProcess(["--model-repository", str(repository), "--http", "127.0.0.1:0", "--bind", "off",
                        "--threads", "1"]) as proc:
        client = httpclient.InferenceServerClient(proc.fronts["http"].removeprefix("http://"))
        rows = {(r["name"], r.get("version", "")): r["state"] for r in client.get_model_repository_index()}
        assert rows[("alpha", "2")] == "READY" and rows[("badconfig", "")] == "UNAVAILABLE"
        assert "--model-control-mode explicit" in failure(lambda: client.unload_model("alpha")).message()
        http_infer(client, "alpha", image(6))
        client.close()


def test_concurrent_traffic_to_two_models(server):
    """Both models at once from several threads (a client each): every answer has its model's class count."""
    errors = []

    def drive(model, classes):
        client = httpclient.InferenceServerClient(server.fronts["http"].removeprefix("http://"))
        try:
            for seed in range(10):
                assert http_infer(client, model, image(seed)).as_numpy("PROBABILITIES").shape == (classes,)
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            client.close()

    threads = [threading.Thread(target=drive, args=args) for args in (("alpha", 10), ("beta", 5)) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_reloading_under_traffic_loses_no_request(server, http):
    """Each reload starts the new versions before the old ones drain: requests in flight or
    arriving meanwhile are all answered."""
    stop, answered, errors = threading.Event(), [], []

    def drive():
        client = httpclient.InferenceServerClient(server.fronts["http"].removeprefix("http://"))
        try:
            while not stop.is_set():
                answered.append(http_infer(client, "alpha", image(len(answered) % 7)).as_numpy("PROBABILITIES"))
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            client.close()

    drivers = [threading.Thread(target=drive) for _ in range(3)]
    for thread in drivers:
        thread.start()
    try:
        for _ in range(5):
            http.load_model("alpha")
    finally:
        stop.set()
        for thread in drivers:
            thread.join()
    assert not errors, errors[:3]
    assert len(answered) > 5 and all(probs.shape == (10,) for probs in answered)
