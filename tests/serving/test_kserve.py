"""KServe v2 over HTTP and gRPC: a real engine.serve process, the real tritonclient, real sockets."""
from __future__ import annotations

import http.client
import io
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from served_reference import reference_probs
from server_process import ServerProcess
from tritonclient.utils import InferenceServerException

from engine.data.decode import decode_image

NUM_CLASSES = 10
MODEL = "tinynet"


@pytest.fixture(scope="module")
def server(tiny_onnx):
    with ServerProcess(["--onnx", str(tiny_onnx), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--max-batch", "4",
                        "--instances", "2", "--threads", "1", "--max-bytes", str(2**20),
                        "--max-pixels", "1000000"]) as proc:
        yield proc


@pytest.fixture
def client(server):
    c = httpclient.InferenceServerClient(server.fronts["http"].removeprefix("http://"))
    yield c
    c.close()


def photo(seed=0, height=180, width=260):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 20 + 1, width // 20 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def jpeg(image) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG")
    return buf.getvalue()


def image_input(image, binary=True):
    tensor = httpclient.InferInput("IMAGE", list(image.shape), "UINT8")
    tensor.set_data_from_numpy(image, binary_data=binary)
    return tensor


def bytes_input(*blobs):
    tensor = httpclient.InferInput("IMAGE", [len(blobs)], "BYTES")
    tensor.set_data_from_numpy(np.array(blobs, dtype=object))
    return tensor


def post(url, body: bytes, headers=None):
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def declare_oversized_body(url, size: int):
    """Announce a body of ``size`` bytes and send none: the server must refuse it by its length."""
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", urllib.parse.urlsplit(url).path)
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    reply = conn.getresponse()
    status, body = reply.status, reply.read()
    conn.close()
    return status, body


def test_health_metadata_and_config(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("nosuchmodel")
    meta = client.get_server_metadata()
    assert "classification" in meta["extensions"] and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata(MODEL)
    assert model["inputs"][0]["name"] == "IMAGE" and model["outputs"][0]["shape"] == [-1, NUM_CLASSES]
    config = client.get_model_config(MODEL)
    assert config["max_batch_size"] == 4 and config["input"][0]["dims"] == [224, 224, 3]


@pytest.mark.parametrize("binary", [True, False])
def test_raw_image_probabilities_match_in_process_model(client, tiny_onnx, binary):
    image = photo(1)
    output = httpclient.InferRequestedOutput("PROBABILITIES", binary_data=binary)
    result = client.infer(MODEL, [image_input(image, binary)], outputs=[output], request_id="r1")
    probs = result.as_numpy("PROBABILITIES")
    assert probs.shape == (NUM_CLASSES,) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, reference_probs(tiny_onnx, image), rtol=1e-4, atol=1e-6)
    assert result.get_response()["id"] == "r1"


def test_jpeg_with_classification_extension(client, tiny_onnx):
    image = photo(2)
    blob = jpeg(image)
    output = httpclient.InferRequestedOutput("PROBABILITIES", class_count=3)
    strings = client.infer(MODEL, [bytes_input(blob)], outputs=[output]).as_numpy("PROBABILITIES")
    assert strings.shape == (1, 3)
    expected = reference_probs(tiny_onnx, decode_image(blob))
    classes = [int(s.split(b":")[1]) for s in strings[0]]
    assert classes == np.argsort(-expected)[:3].tolist()
    prob, index, name = strings[0][0].decode().split(":")
    assert abs(float(prob) - expected[classes[0]]) < 1e-5 and name.startswith("tiny class")


def test_batched_uint8_and_bytes_give_one_row_per_image(client, tiny_onnx):
    images = np.stack([photo(3), photo(4)])
    probs = client.infer(MODEL, [image_input(images)]).as_numpy("PROBABILITIES")
    assert probs.shape == (2, NUM_CLASSES)
    for row, image in zip(probs, images):
        np.testing.assert_allclose(row, reference_probs(tiny_onnx, image), rtol=1e-4, atol=1e-6)
    both = client.infer(MODEL, [bytes_input(jpeg(images[0]), jpeg(images[1]))]).as_numpy("PROBABILITIES")
    assert both.shape == (2, NUM_CLASSES) and np.all(np.argmax(both, 1) == np.argmax(probs, 1))


def bad_request_message(client, inputs, outputs=None, model=MODEL) -> str:
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, inputs, outputs=outputs)
    return f"{info.value.status()} {info.value.message()}"


def test_every_malformed_request_gets_a_400_naming_it_and_the_server_keeps_serving(client):
    image = photo(5)
    wrong_type = httpclient.InferInput("IMAGE", [2, 2, 3], "FP32")
    wrong_type.set_data_from_numpy(np.zeros((2, 2, 3), np.float32))
    wrong_name = httpclient.InferInput("PIXELS", list(image.shape), "UINT8")
    wrong_name.set_data_from_numpy(image)
    flat = httpclient.InferInput("IMAGE", [4, 4], "UINT8")
    flat.set_data_from_numpy(np.zeros((4, 4), np.uint8))
    huge = httpclient.InferInput("IMAGE", [1, 1, 3], "UINT8")
    huge.set_data_from_numpy(np.zeros((1, 1, 3), np.uint8))
    huge.set_shape([2000, 2000, 3])  # the server must refuse by the shape, before the data
    cases = {
        "datatype 'FP32' is not supported": ([wrong_type], None),
        "expected one input named 'IMAGE'": ([wrong_name], None),
        "must be [H, W, 3] or [N, H, W, 3]": ([flat], None),
        "pixels allowed": ([huge], None),
        "not a JPEG or PNG": ([bytes_input(b"GIF89a not an image")], None),
        "request 'IMAGE[0]': corrupt JPEG": ([bytes_input(b"\xff\xd8\xff" + b"garbage" * 10)], None),
        "classification 11 must be an integer in 1..10": (
            [image_input(image)], [httpclient.InferRequestedOutput("PROBABILITIES", class_count=11)]),
        "has one output": ([image_input(image)], [httpclient.InferRequestedOutput("LOGITS")]),
    }
    for needle, (inputs, outputs) in cases.items():
        message = bad_request_message(client, inputs, outputs)
        assert message.startswith("400 ") and needle in message, (needle, message)
    assert bad_request_message(client, [image_input(image)], model="other").startswith("404 unknown model 'other'")
    assert client.infer(MODEL, [image_input(image)]).as_numpy("PROBABILITIES").shape == (NUM_CLASSES,)


def test_malformed_bodies_and_oversized_requests(server):
    url = f"{server.fronts['http']}/v2/models/{MODEL}/infer"
    status, body = post(url, b"{not json")
    assert status == 400 and b"not valid JSON" in body
    status, body = post(url, json.dumps({"inputs": [{"name": "IMAGE"}]}).encode())
    assert status == 400 and b"needs 'name', 'datatype' and 'shape'" in body
    header = json.dumps({"inputs": [{"name": "IMAGE", "datatype": "UINT8", "shape": [2, 2, 3],
                                     "parameters": {"binary_data_size": 100}}]}).encode()
    status, body = post(url, header + b"\0" * 12, {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and b"runs past the body" in body
    status, body = declare_oversized_body(url, 2**20 + 2**20 + 1)
    assert status == 413 and b"above the limit" in body
    status, _ = post(f"{server.fronts['http']}/v2/nothing/here", b"")
    assert status == 404


def test_metrics_count_what_was_sent(tiny_onnx):
    with ServerProcess(["--onnx", str(tiny_onnx), "--http", "127.0.0.1:0", "--threads", "1"]) as proc:
        c = httpclient.InferenceServerClient(proc.fronts["http"].removeprefix("http://"))
        for seed in range(3):
            c.infer(MODEL, [image_input(photo(seed))])
        with pytest.raises(InferenceServerException):
            c.infer(MODEL, [bytes_input(b"not an image")])
        text = urllib.request.urlopen(proc.fronts["http"] + "/metrics", timeout=10).read().decode()
        samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                   if line and not line.startswith("#")}
        labels = f'{{model="{MODEL}",version="1"}}'
        assert samples[f"nv_inference_request_success{labels}"] == 3
        assert samples[f"nv_inference_request_failure{labels}"] == 1
        assert samples[f"nv_inference_exec_count{labels}"] == 3
        assert samples[f"nv_inference_compute_infer_duration_us{labels}"] > 0
        assert samples[f"nv_inference_compute_output_duration_us{labels}"] > 0
        assert samples[f"nv_inference_pending_request_count{labels}"] == 0
        assert samples[f"engine_batch_size_count{labels}"] == 3 and samples[f"engine_batch_size_sum{labels}"] == 3
        c.close()


def test_http_instead_of_zeromq_listens_on_the_http_port_alone(tiny_onnx):
    """``--bind off``: KServe only; the process listens on no TCP port but the HTTP one."""
    with ServerProcess(["--onnx", str(tiny_onnx), "--bind", "off", "--http", "127.0.0.1:0", "--threads", "1"]) as proc:
        assert proc.endpoint.startswith("inproc://")
        c = httpclient.InferenceServerClient(proc.fronts["http"].removeprefix("http://"))
        result = c.infer(MODEL, [image_input(photo(1))])
        assert result.as_numpy("PROBABILITIES").shape == (NUM_CLASSES,)
        c.close()
        listening = {conn.laddr.port for conn in psutil.Process(proc.process.pid).net_connections("tcp")
                     if conn.status == psutil.CONN_LISTEN}
        assert listening == {urllib.parse.urlsplit(proc.fronts["http"]).port}


def test_bind_off_without_another_front_end_is_a_usage_error(tiny_onnx):
    done = subprocess.run([sys.executable, "-m", "engine.serve", "--onnx", str(tiny_onnx), "--bind", "off"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--bind off: give --http or --grpc" in done.stderr and "Traceback" not in done.stderr


def test_burst_past_the_inflight_limit_answers_503_busy(tiny_onnx):
    """Two requests wait out a 2 s queue delay (batch of 4 never fills), so the server is full
    while the rest arrive."""
    with ServerProcess(["--onnx", str(tiny_onnx), "--http", "127.0.0.1:0", "--threads", "1", "--max-batch", "4",
                        "--max-queue-delay-us", "2000000", "--max-inflight", "2"]) as proc:
        url = f"{proc.fronts['http']}/v2/models/{MODEL}/infer"
        image = photo(6, 64, 64)
        body = json.dumps({"inputs": [{"name": "IMAGE", "datatype": "UINT8", "shape": list(image.shape),
                                       "data": image.reshape(-1).tolist()}]}).encode()
        results = []
        threads = [threading.Thread(target=lambda: results.append(post(url, body))) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        statuses = sorted(status for status, _ in results)
        assert len(results) == 8 and statuses.count(200) == 2 and statuses.count(503) == 6, statuses
        assert all(b"busy" in reply for status, reply in results if status == 503)


def test_sigterm_drains_http_requests_in_flight(tiny_onnx):
    proc = ServerProcess(["--onnx", str(tiny_onnx), "--http", "127.0.0.1:0", "--threads", "1", "--max-batch", "64",
                          "--max-queue-delay-us", "30000000"])
    try:
        c = httpclient.InferenceServerClient(proc.fronts["http"].removeprefix("http://"), concurrency=4)
        pending = [c.async_infer(MODEL, [image_input(photo(seed, 64, 64))]) for seed in range(4)]
        time.sleep(1.0)  # all four wait in the batcher for the 30 s delay
        t0 = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        probs = [p.get_result(timeout=15).as_numpy("PROBABILITIES") for p in pending]
        assert all(row.shape == (NUM_CLASSES,) for row in probs)
        assert proc.process.wait(20) == 0
        assert time.monotonic() - t0 < 15
        c.close()
    finally:
        proc.stop()


# ---- gRPC --------------------------------------------------------------------------


@pytest.fixture
def grpc_client(server):
    c = grpcclient.InferenceServerClient(server.fronts["grpc"])
    yield c
    c.close()


def grpc_image(image):
    tensor = grpcclient.InferInput("IMAGE", list(image.shape), "UINT8")
    tensor.set_data_from_numpy(image)
    return tensor


def grpc_bytes(*blobs):
    tensor = grpcclient.InferInput("IMAGE", [len(blobs)], "BYTES")
    tensor.set_data_from_numpy(np.array(blobs, dtype=object))
    return tensor


def grpc_error(call) -> tuple:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value.status(), info.value.message()


def test_grpc_health_metadata_and_config(grpc_client):
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert grpc_client.is_model_ready(MODEL) and not grpc_client.is_model_ready("nosuchmodel")
    assert "classification" in grpc_client.get_server_metadata(as_json=True)["extensions"]
    meta = grpc_client.get_model_metadata(MODEL, as_json=True)
    assert meta["inputs"][0]["name"] == "IMAGE" and meta["outputs"][0]["datatype"] == "FP32"
    config = grpc_client.get_model_config(MODEL, as_json=True)["config"]
    assert config["max_batch_size"] == 4 and config["input"][0]["data_type"] == "TYPE_UINT8"
    status, message = grpc_error(lambda: grpc_client.get_model_metadata("other"))
    assert status == "StatusCode.NOT_FOUND" and "unknown model 'other'" in message


def test_grpc_raw_and_jpeg_match_the_in_process_model(grpc_client, tiny_onnx):
    image = photo(7)
    probs = grpc_client.infer(MODEL, [grpc_image(image)]).as_numpy("PROBABILITIES")
    np.testing.assert_allclose(probs, reference_probs(tiny_onnx, image), rtol=1e-4, atol=1e-6)
    blob = jpeg(image)
    output = grpcclient.InferRequestedOutput("PROBABILITIES", class_count=2)
    strings = grpc_client.infer(MODEL, [grpc_bytes(blob)], outputs=[output]).as_numpy("PROBABILITIES")
    expected = reference_probs(tiny_onnx, decode_image(blob))
    assert strings.shape == (1, 2)
    assert [int(s.split(b":")[1]) for s in strings[0]] == np.argsort(-expected)[:2].tolist()


def test_grpc_malformed_requests_get_invalid_argument(grpc_client):
    flat = grpcclient.InferInput("IMAGE", [4, 4], "UINT8")
    flat.set_data_from_numpy(np.zeros((4, 4), np.uint8))
    cases = {
        "must be [H, W, 3] or [N, H, W, 3]": ([flat], None),
        "not a JPEG or PNG": ([grpc_bytes(b"GIF89a not an image")], None),
        "classification 11 must be an integer in 1..10": (
            [grpc_image(photo(8))], [grpcclient.InferRequestedOutput("PROBABILITIES", class_count=11)]),
    }
    for needle, (inputs, outputs) in cases.items():
        status, message = grpc_error(lambda i=inputs, o=outputs: grpc_client.infer(MODEL, i, outputs=o))
        assert status == "StatusCode.INVALID_ARGUMENT" and needle in message, (needle, message)
    assert grpc_client.infer(MODEL, [grpc_image(photo(8))]).as_numpy("PROBABILITIES").shape == (NUM_CLASSES,)


def test_grpc_burst_past_the_inflight_limit_answers_unavailable(tiny_onnx):
    """As over HTTP: two requests wait out a 2 s queue delay, so the server is full while the rest arrive."""
    with ServerProcess(["--onnx", str(tiny_onnx), "--grpc", "127.0.0.1:0", "--threads", "1", "--max-batch", "4",
                        "--max-queue-delay-us", "2000000", "--max-inflight", "2"]) as proc:
        c = grpcclient.InferenceServerClient(proc.fronts["grpc"])
        results = []

        def classify(seed):
            try:
                results.append(c.infer(MODEL, [grpc_image(photo(seed, 64, 64))]).as_numpy("PROBABILITIES").shape)
            except InferenceServerException as e:
                results.append((e.status(), e.message()))

        threads = [threading.Thread(target=classify, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        errors = [r for r in results if r != (NUM_CLASSES,)]
        assert len(results) == 8 and len(errors) == 6, results
        assert all(status == "StatusCode.UNAVAILABLE" and "busy" in message for status, message in errors)
        c.close()


def test_grpc_sigterm_drains_requests_in_flight(tiny_onnx):
    proc = ServerProcess(["--onnx", str(tiny_onnx), "--grpc", "127.0.0.1:0", "--threads", "1", "--max-batch", "64",
                          "--max-queue-delay-us", "30000000"])
    try:
        c = grpcclient.InferenceServerClient(proc.fronts["grpc"])
        results = []

        def classify(seed):
            results.append(c.infer(MODEL, [grpc_image(photo(seed, 64, 64))]).as_numpy("PROBABILITIES").shape)

        threads = [threading.Thread(target=classify, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # all four wait in the batcher for the 30 s delay
        t0 = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(15)
        assert results == [(NUM_CLASSES,)] * 4
        assert proc.process.wait(20) == 0
        assert time.monotonic() - t0 < 15
        c.close()
    finally:
        proc.stop()
