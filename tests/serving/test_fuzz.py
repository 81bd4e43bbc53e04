"""Malformed KServe requests from hypothesis (a fixed seed: ``derandomize``) against a real server:
HTTP bodies, binary framing, headers and paths, and gRPC ModelInfer / ModelStreamInfer messages.
Each one must be answered 4xx / INVALID_ARGUMENT with a message naming the problem (never 5xx),
a good request must be answered afterwards, and the server's RSS must stay within 10% of its start.
"""
from __future__ import annotations

import http.client
import json
import urllib.parse

import grpc
import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from server_process import ServerProcess
from tinynet import write_tiny_onnx
from tritonclient.grpc import service_pb2, service_pb2_grpc

MODEL = "tinynet"
HTTP_EXAMPLES = 1300
GRPC_EXAMPLES = 800
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
sent = {"http": 0, "grpc": 0}
FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"}
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7f))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    onnx = write_tiny_onnx(tmp_path_factory.mktemp("fuzz") / "tiny_32.onnx", size=32, classes=10, seed=7)
    with ServerProcess(["--onnx", str(onnx), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--bind", "off",
                        "--threads", "1", "--max-bytes", "65536", "--max-pixels", "100000"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def connection(server):
    url = urllib.parse.urlsplit(server.fronts["http"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.fronts["grpc"]) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def start_rss(server, connection, stub):
    """RSS after a few good requests of each kind (the allocator and the sessions warm)."""
    for _ in range(20):
        assert http_request(connection, "POST", f"/v2/models/{MODEL}/infer", good_body())[0] == 200
        stub.ModelInfer(good_grpc())
    return psutil.Process(server.process.pid).memory_info().rss


def good_body() -> bytes:
    data = np.random.default_rng(0).integers(0, 256, 12 * 12 * 3).tolist()
    return json.dumps({"inputs": [{"name": "IMAGE", "datatype": "UINT8", "shape": [12, 12, 3], "data": data}]}).encode()


def good_grpc() -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=MODEL, id="good")
    request.inputs.add(name="IMAGE", datatype="UINT8", shape=[12, 12, 3])
    request.raw_input_contents.append(bytes(range(256)) * 1 + bytes(12 * 12 * 3 - 256))
    return request


def http_request(conn, method: str, path: str, body: bytes, headers: dict | None = None) -> tuple[int, bytes]:
    """One request on the kept-alive connection (reopened if the server closed it after a refusal)."""
    for attempt in range(2):
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, reply.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            if attempt:
                raise
    raise AssertionError("unreachable")


# ---- HTTP: every strategy below makes a request the server must refuse --------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=4),
                           max_leaves=12)
not_a_list = json_values.filter(lambda v: not isinstance(v, list))
not_a_string = json_values.filter(lambda v: not isinstance(v, str))
not_a_dict = json_values.filter(lambda v: not isinstance(v, dict))
bad_shape = st.one_of(not_a_list, st.lists(st.one_of(st.integers(max_value=-1), st.booleans(), st.floats(),
                                                     st.text(max_size=3)), min_size=1, max_size=4))


def tensor(**overrides) -> dict:
    base = {"name": "IMAGE", "datatype": "UINT8", "shape": [2, 2, 3], "data": list(range(12))}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


@st.composite
def corrupt_request(draw) -> dict:
    """A well-formed request with one field broken in a way no valid request has."""
    choice = draw(st.integers(0, 13))
    if choice == 0:
        return {"inputs": draw(not_a_list)}
    if choice == 1:
        return {"inputs": [draw(not_a_dict)]}
    if choice == 2:
        return {"inputs": [tensor(name=draw(not_a_string))]}
    if choice == 3:
        return {"inputs": [tensor(datatype=draw(st.one_of(not_a_string, st.text(max_size=6).filter(
            lambda t: t not in ("UINT8", "BYTES")))))]}
    if choice == 4:
        return {"inputs": [tensor(shape=draw(bad_shape))]}
    if choice == 5:  # UINT8 leaves that are not bytes
        leaf = draw(st.one_of(st.integers().filter(lambda i: not 0 <= i <= 255), st.floats(), st.text(max_size=3),
                              st.none(), st.booleans()))
        return {"inputs": [tensor(data=[leaf] + list(range(11)))]}
    if choice == 6:  # the data does not fill the shape
        count = draw(st.integers(0, 40).filter(lambda n: n != 12))
        return {"inputs": [tensor(data=[1] * count)]}
    if choice == 7:  # BYTES elements that are not strings, or strings that are no image
        leaves = draw(st.lists(st.one_of(json_values.filter(lambda v: not isinstance(v, (str, list))),
                                         st.text(max_size=10)), min_size=1, max_size=3))
        return {"inputs": [tensor(datatype="BYTES", shape=[len(leaves)], data=leaves)]}
    if choice == 8:
        return {"inputs": [tensor(parameters=draw(not_a_dict.filter(lambda v: v is not None)))]}
    if choice == 9:
        return {"inputs": [tensor()], "outputs": draw(st.one_of(not_a_list.filter(lambda v: v is not None),
                                                                st.lists(not_a_dict, min_size=1, max_size=2)))}
    if choice == 10:
        params = draw(st.dictionaries(st.sampled_from(["classification", "binary_data"]),
                                      json_values, min_size=1, max_size=2))
        assume(not _valid_output_params(params))
        return {"inputs": [tensor()], "outputs": [{"name": "PROBABILITIES", "parameters": params}]}
    if choice == 11:
        return {"inputs": [tensor()], "id": draw(not_a_string.filter(lambda v: v is not None))}
    if choice == 12:
        return {"inputs": [tensor(), tensor()]}
    return {"inputs": [tensor(data=..., parameters={"binary_data_size": draw(st.integers(1, 10**9))})]}


def _valid_output_params(params: dict) -> bool:
    classification = params.get("classification", 0)
    binary = params.get("binary_data", False)
    return (isinstance(classification, int) and not isinstance(classification, bool) and 0 <= classification <= 10
            and isinstance(binary, bool))


@st.composite
def http_case(draw) -> tuple[str, str, bytes, dict]:
    """(method, path, body, headers) of one malformed HTTP request."""
    infer = f"/v2/models/{MODEL}/infer"
    kind = draw(st.integers(0, 5))
    if kind <= 2:  # with headers of any name and printable value beside the framing ones
        headers = draw(st.dictionaries(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0123456789", min_size=1, max_size=12).filter(
                lambda h: h.lower() not in FRAMING), st.text(alphabet=PRINTABLE, max_size=30), max_size=4))
        return "POST", infer, json.dumps(draw(corrupt_request())).encode(), headers
    if kind == 3:  # bytes that are not a JSON object
        body = draw(st.binary(max_size=200))
        try:
            assume(not isinstance(json.loads(body), dict))
        except ValueError:
            pass
        return "POST", infer, body, {}
    if kind == 4:  # binary framing: a header length that is no byte count within the body
        body = good_body()
        length = draw(st.one_of(st.integers(len(body) + 1, 10**12).map(str),
                                st.text(alphabet="abcxyz-+ .", min_size=1, max_size=8)))
        return "POST", infer, body, {"Inference-Header-Content-Length": length}
    model = draw(st.text(alphabet="abcdefgh_-", min_size=1, max_size=10).filter(lambda m: m != MODEL))
    method, path = draw(st.sampled_from([("POST", f"/v2/models/{model}/infer"), ("GET", f"/v2/models/{model}"),
                                         ("GET", infer), ("POST", "/v2/health/nothing"),
                                         ("GET", f"/v2/models/{MODEL}/versions/{model}/config")]))
    return method, path, good_body(), {}


@settings(FUZZ, max_examples=HTTP_EXAMPLES)
@given(case=http_case())
def test_malformed_http_requests_get_4xx_naming_the_problem(connection, start_rss, case):
    method, path, body, headers = case
    status, reply = http_request(connection, method, path, body, headers)
    sent["http"] += 1
    assert 400 <= status < 500, (status, reply[:300], body[:300], headers)
    error = json.loads(reply)["error"]
    assert error and "internal" not in error, error


# ---- gRPC ---------------------------------------------------------------------------------------
@st.composite
def grpc_case(draw) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=MODEL, id=draw(st.text(max_size=8)))
    kind = draw(st.integers(0, 6))
    name = draw(st.text(max_size=6).filter(lambda n: n != "IMAGE")) if kind == 0 else "IMAGE"
    datatype = (draw(st.text(max_size=6).filter(lambda t: t not in ("UINT8", "BYTES"))) if kind == 1 else
                draw(st.sampled_from(["UINT8", "BYTES"])))
    shape = draw(st.lists(st.integers(-5, 40), max_size=5))
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    raw = draw(st.binary(max_size=300))
    if kind == 2:  # raw contents not matching the input count
        request.raw_input_contents.extend([raw, raw])
    elif kind == 3:  # typed contents with values no UINT8 holds, or the wrong count
        tensor.datatype = "UINT8"
        values = draw(st.lists(st.integers(0, 2**32 - 1), max_size=40))
        assume(len(shape) != 3 or shape[-1] != 3 or min(shape) < 1 or np.prod(shape) != len(values)
               or any(v > 255 for v in values))
        tensor.contents.uint_contents.extend(values)
    elif kind == 4:  # an output parameter of the wrong kind
        request.raw_input_contents.append(bytes(2 * 2 * 3))
        tensor.datatype = "UINT8"
        tensor.ClearField("shape")
        tensor.shape.extend([2, 2, 3])
        output = request.outputs.add(name="PROBABILITIES")
        which = draw(st.sampled_from(["string_param", "bool_param", "double_param"]))
        param = output.parameters["classification"]
        setattr(param, which, {"string_param": "3", "bool_param": True, "double_param": 2.0}[which])
    elif kind == 5:  # an output the model does not have
        request.raw_input_contents.append(raw)
        request.outputs.add(name=draw(st.text(max_size=6).filter(lambda n: n != "PROBABILITIES")))
    else:
        request.raw_input_contents.append(raw)
    if kind == 6:
        assume(not _valid_raw(tensor.datatype, list(shape), raw))
    return request


def _valid_raw(datatype: str, shape: list, raw: bytes) -> bool:
    """Whether random raw contents happen to form a valid input (hypothesis then drops the example)."""
    if datatype == "UINT8":
        return len(shape) in (3, 4) and shape[-1] == 3 and min(shape) >= 1 and int(np.prod(shape)) == len(raw)
    return False  # BYTES: random bytes are never a JPEG or PNG with a valid length prefix for every element


@settings(FUZZ, max_examples=GRPC_EXAMPLES)
@given(request=grpc_case(), streamed=st.booleans())
def test_malformed_grpc_messages_get_invalid_argument(stub, start_rss, request, streamed):
    sent["grpc"] += 1
    if streamed:  # the stream answers the error for this request alone, with its id
        (reply,) = list(stub.ModelStreamInfer(iter([request]), timeout=30))
        assert reply.error_message and reply.infer_response.id == request.id
        return
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (info.value.code(), info.value.details(), request)
    assert info.value.details()


def test_after_the_fuzz_the_server_answers_and_kept_its_memory(server, connection, stub, start_rss):
    assert sent["http"] + sent["grpc"] >= 2000, sent
    status, reply = http_request(connection, "POST", f"/v2/models/{MODEL}/infer", good_body())
    assert status == 200 and json.loads(reply)["outputs"][0]["shape"] == [10]
    assert stub.ModelInfer(good_grpc()).id == "good"
    rss = psutil.Process(server.process.pid).memory_info().rss
    assert rss < start_rss * 1.10, (start_rss, rss)
