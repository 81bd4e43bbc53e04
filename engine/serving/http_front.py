"""KServe v2 over HTTP/REST: a bare ASGI app on uvicorn, in a thread of the server process.

Routes (``/versions/<v>`` may follow a model name; without it the latest version serves):
``GET /v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/<m>``, ``.../ready``,
``.../config``, ``.../stats`` and ``/v2/models/stats`` (the statistics extension),
``POST .../infer`` (JSON tensors, or Triton's binary tensor data extension: the JSON
header's length in ``Inference-Header-Content-Length``, the tensors' bytes after it),
``POST /v2/repository/index``, ``/v2/repository/models/<m>/load`` and ``.../unload`` (the
model repository extension), and ``GET /metrics``. No web framework: routing a dozen paths
by hand costs less per request than a framework's router and middleware stack
(docs/serving.md has the measurement).

Bad input answers 400 with ``{"error": reason}``, a body over the limit 413 before it is
read, a full server or a model being unloaded 503, an unknown model or path 404.
"""
from __future__ import annotations

import asyncio
import json
import re

import numpy as np

from engine.serving import kserve
from engine.serving.fleet import ControlRefused, ModelNotFound
from engine.serving.http_request import parse_infer_request, split_body
from engine.serving.kserve import KServeError
from engine.serving.kserve_infer import InferenceFailed, Unavailable, infer
from engine.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

HEADER_LENGTH = b"inference-header-content-length"
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/config|/infer|/stats)?$")
_REPOSITORY_PATH = re.compile(r"^/v2/repository/models/([^/]+)/(load|unload)$")
MAX_CONTROL_BODY = 1 << 16


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class KServeHttpApp:
    """The ASGI application for one :class:`engine.serving.server.Server` and its fleet of models."""

    def __init__(self, server, *, max_body_bytes: int):
        self.server = server
        self.fleet = server.fleet
        self.max_body_bytes = max_body_bytes

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
            if path == "/v2/models/stats":
                return 200, [], self._stats(None, None)
        if path.startswith("/v2/repository/"):
            if method != "POST":
                raise HttpError(405, f"{path}: use POST")
            return await self._repository(path, await self._read_body(scope, receive, MAX_CONTROL_BODY))
        match = _MODEL_PATH.match(path)
        if match is None:
            raise HttpError(404, f"no such path: {method} {path}")
        name, version, action = match.groups()
        if action == "/stats":
            return 200, [], self._stats(name, version)
        if action == "/ready" and method == "GET":
            ready = not self.server.stopping() and self.fleet.ready(name, version)
            return (200 if ready else 503), [], b""
        deployment = self._resolve(name, version)
        if action == "/infer":
            if method != "POST":
                raise HttpError(405, f"{path}: use POST")
            return await self._infer(deployment, scope, receive)
        if method != "GET":
            raise HttpError(405, f"{path}: use GET")
        if action == "/config":
            return 200, [], json.dumps(kserve.model_config(deployment)).encode()
        return 200, [], json.dumps(kserve.model_metadata(deployment, self.fleet.versions(name))).encode()

    def _resolve(self, name: str, version: str | None):
        try:
            return self.fleet.resolve(name, version)
        except ModelNotFound as e:
            raise HttpError(404, str(e)) from None

    def _stats(self, name: str | None, version: str | None) -> bytes:
        try:
            deployments = self.fleet.deployments(name, version)
        except ModelNotFound as e:
            raise HttpError(404, str(e)) from None
        return json.dumps({"model_stats": [d.stats.triton(d.name, d.version) for d in deployments]}).encode()

    async def _repository(self, path: str, body: bytes):
        try:
            request = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise HttpError(400, f"{path}: the body is not valid JSON ({str(e)[:200]})") from None
        if not isinstance(request, dict):
            raise HttpError(400, f"{path}: the body must be a JSON object")
        if path == "/v2/repository/index":
            ready = request.get("ready", False)
            if not isinstance(ready, bool):
                raise HttpError(400, f"{path}: 'ready' must be true or false")
            rows = [{"name": r.name, "version": r.version, "state": r.state, "reason": r.reason}
                    for r in self.fleet.index(ready)]
            return 200, [], json.dumps(rows).encode()
        match = _REPOSITORY_PATH.match(path)
        if match is None:
            raise HttpError(404, f"no such path: POST {path}")
        name, action = match.groups()
        params = request.get("parameters", {})
        if not isinstance(params, dict):
            raise HttpError(400, f"{path}: 'parameters' must be a JSON object")
        try:
            kserve.check_load_parameters(params)
            await asyncio.to_thread(self.fleet.load if action == "load" else self.fleet.unload, name)
        except (KServeError, ControlRefused) as e:
            raise HttpError(400, str(e)) from None
        return 200, [], b""

    async def _read_body(self, scope, receive, limit: int | None = None) -> bytes:
        limit = limit or self.max_body_bytes
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HttpError(413, f"request body of {int(declared)} bytes is above the limit of {limit} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"request body is above the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _infer(self, deployment, scope, receive):
        body = await self._read_body(scope, receive)
        header_length = dict(scope["headers"]).get(HEADER_LENGTH)
        try:
            parsed = parse_infer_request(*split_body(body, header_length))
        except KServeError as e:
            deployment.stats.record_refused()
            self.server.tally.add("http", "requests")
            self.server.tally.add("http", "errors")
            raise HttpError(400, str(e)) from None
        try:
            (datatype, shape, value), as_binary = await infer(self.server, "http", deployment, parsed.id,
                                                              parsed.inputs, parsed.outputs)
        except KServeError as e:
            raise HttpError(400, str(e)) from None
        except Unavailable as e:
            raise HttpError(503, str(e)) from None
        except InferenceFailed as e:
            raise HttpError(500, str(e)) from None
        reply = {"model_name": deployment.name, "model_version": deployment.version}
        if parsed.id is not None:
            reply["id"] = parsed.id
        output = {"name": kserve.OUTPUT_NAME, "datatype": datatype, "shape": shape}
        if not (as_binary or parsed.binary_output):
            output["data"] = [s.decode() for s in value] if datatype == "BYTES" else value.reshape(-1).tolist()
            reply["outputs"] = [output]
            return 200, [], json.dumps(reply).encode()
        data = kserve.join_bytes_elements(value) if datatype == "BYTES" else np.ascontiguousarray(value).tobytes()
        output["parameters"] = {"binary_data_size": len(data)}
        reply["outputs"] = [output]
        head = json.dumps(reply).encode()
        headers = [(b"content-type", b"application/octet-stream"), (HEADER_LENGTH, str(len(head)).encode())]
        return 200, headers, head + data
