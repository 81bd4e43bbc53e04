"""KServe v2 over HTTP/REST: a bare ASGI app on uvicorn, in a thread of the server process.

Routes (``/versions/<v>`` may follow the model name): ``GET /v2/health/live``,
``/v2/health/ready``, ``/v2``, ``/v2/models/<m>``, ``.../ready``, ``.../config``,
``POST .../infer`` (JSON tensors, or Triton's binary tensor data extension: the JSON
header's length in ``Inference-Header-Content-Length``, the tensors' bytes after it), and
``GET /metrics``. No web framework: routing six paths by hand costs less per request than
a framework's router and middleware stack (docs/serving.md has the measurement).

Bad input answers 400 with ``{"error": reason}``, a body over the limit 413 before it is
read, a full server 503 ("busy"), an unknown model or path 404.
"""
from __future__ import annotations

import json
import re

import numpy as np

from engine.serving import kserve
from engine.serving.kserve import KServeError, OutputRequest
from engine.serving.kserve_infer import InferenceFailed, Unavailable, infer
from engine.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

HEADER_LENGTH = b"inference-header-content-length"
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/config|/infer)?$")


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class KServeHttpApp:
    """The ASGI application for one :class:`engine.serving.server.Server`."""

    def __init__(self, server, *, max_body_bytes: int, max_batch: int, max_queue_delay_us: int):
        self.server = server
        self.max_body_bytes = max_body_bytes
        self.config = kserve.model_config(server.model, max_batch, max_queue_delay_us)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            status, headers, body = await self._route(scope, receive)
        except HttpError as e:
            status, headers, body = e.status, [], json.dumps({"error": str(e)}).encode()
        except Exception as e:  # a bug must cost one request, not the front end
            self.server.log(f"http: internal error: {type(e).__name__}: {e}")
            message = f"internal server error ({type(e).__name__})"
            status, headers, body = 500, [], json.dumps({"error": message}).encode()
        if not any(name == b"content-type" for name, _ in headers):
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope, receive):
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        if method == "GET":
            if path == "/v2/health/live":
                return 200, [], b""
            if path == "/v2/health/ready":
                return (503 if self.server.stopping() else 200), [], b""
            if path == "/v2":
                return 200, [], json.dumps(kserve.server_metadata()).encode()
            if path == "/metrics":
                return 200, [(b"content-type", METRICS_CONTENT_TYPE.encode())], self.server.metrics.exposition()
        match = _MODEL_PATH.match(path)
        if match is None:
            raise HttpError(404, f"no such path: {method} {path}")
        name, version, action = match.groups()
        if name != self.server.model.name or version not in (None, kserve.VERSION):
            raise HttpError(404, f"unknown model {name!r}" + (f" version {version!r}" if version else "")
                            + f"; this server serves {self.server.model.name!r} version {kserve.VERSION}")
        if action == "/infer":
            if method != "POST":
                raise HttpError(405, f"{path}: use POST")
            return await self._infer(scope, receive)
        if method != "GET":
            raise HttpError(405, f"{path}: use GET")
        if action == "/ready":
            return (503 if self.server.stopping() else 200), [], b""
        if action == "/config":
            return 200, [], json.dumps(self.config).encode()
        return 200, [], json.dumps(kserve.model_metadata(self.server.model)).encode()

    async def _read_body(self, scope, receive) -> bytes:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise HttpError(413, f"request body of {int(declared)} bytes is above the limit of "
                                 f"{self.max_body_bytes} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HttpError(413, f"request body is above the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _infer(self, scope, receive):
        body = await self._read_body(scope, receive)
        header_length = dict(scope["headers"]).get(HEADER_LENGTH)
        try:
            request, binary = _split_body(body, header_length)
            inputs, outputs, binary_default = _parse_infer_request(request, binary)
            (datatype, shape, value), as_binary = await infer(self.server, request.get("id"), inputs, outputs)
        except KServeError as e:
            raise HttpError(400, str(e)) from None
        except Unavailable as e:
            raise HttpError(503, str(e)) from None
        except InferenceFailed as e:
            raise HttpError(500, str(e)) from None
        reply = {"model_name": self.server.model.name, "model_version": kserve.VERSION}
        if request.get("id") is not None:
            reply["id"] = request["id"]
        output = {"name": kserve.OUTPUT_NAME, "datatype": datatype, "shape": shape}
        if not (as_binary or binary_default):
            output["data"] = [s.decode() for s in value] if datatype == "BYTES" else value.reshape(-1).tolist()
            reply["outputs"] = [output]
            return 200, [], json.dumps(reply).encode()
        data = kserve.join_bytes_elements(value) if datatype == "BYTES" else np.ascontiguousarray(value).tobytes()
        output["parameters"] = {"binary_data_size": len(data)}
        reply["outputs"] = [output]
        head = json.dumps(reply).encode()
        headers = [(b"content-type", b"application/octet-stream"), (HEADER_LENGTH, str(len(head)).encode())]
        return 200, headers, head + data


def _split_body(body: bytes, header_length: bytes | None) -> tuple[dict, memoryview]:
    """The JSON inference request and the binary data after it."""
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise KServeError(f"Inference-Header-Content-Length {header_length.decode(errors='replace')!r} "
                              f"must be a byte count within the {len(body)}-byte body")
        json_part, binary = body[:int(header_length)], memoryview(body)[int(header_length):]
    try:
        request = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as e:
        raise KServeError(f"inference request is not valid JSON ({e})") from None
    if not isinstance(request, dict):
        raise KServeError(f"inference request must be a JSON object, got {type(request).__name__}")
    return request, binary


def _parse_infer_request(request: dict, binary: memoryview) -> tuple[list, list, bool]:
    """(inputs, outputs, binary_data_output) of a JSON inference request; binary tensors are cut from ``binary``."""
    inputs, offset = [], 0
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list):
        raise KServeError("inference request: 'inputs' must be a list")
    for tensor in raw_inputs:
        if not isinstance(tensor, dict) or not {"name", "datatype", "shape"} <= tensor.keys():
            raise KServeError("inference request: every input needs 'name', 'datatype' and 'shape'")
        params = tensor.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise KServeError(f"input {tensor['name']!r}: binary_data_size {size!r} runs past the body")
            data, offset = binary[offset:offset + size], offset + size
        elif "data" in tensor:
            data = tensor["data"]
            if tensor["datatype"] == "BYTES":
                data = [e.encode() if isinstance(e, str) else e for e in _flatten(data)]
        else:
            raise KServeError(f"input {tensor['name']!r}: neither 'data' nor binary_data_size")
        inputs.append((tensor["name"], tensor["datatype"], tensor["shape"], data))
    if offset != len(binary):
        raise KServeError(f"{len(binary) - offset} bytes of binary data after the last input")
    outputs = []
    for tensor in request.get("outputs") or []:
        if not isinstance(tensor, dict) or "name" not in tensor:
            raise KServeError("inference request: every requested output needs a 'name'")
        params = tensor.get("parameters") or {}
        outputs.append((tensor["name"], OutputRequest(params.get("classification", 0),
                                                      bool(params.get("binary_data", False)))))
    request_params = request.get("parameters") or {}
    return inputs, outputs, bool(isinstance(request_params, dict) and request_params.get("binary_data_output"))


def _flatten(data) -> list:
    if isinstance(data, list):
        return [leaf for item in data for leaf in _flatten(item)]
    return [data]
