"""A client for ``engine.serve`` (contract); ``python -m engine.client`` is its command.

    from engine.serving.client import Client
    with Client("tcp://127.0.0.1:5555") as client:
        print(client.classify("cat.jpg", topk=5)["topk"][0])
        ids = [client.submit(frame) for frame in frames]     # pipelined
        replies = client.results(len(ids), timeout=10)       # {id: reply}

Items are a path (JPEG/PNG/npz sent as they are, other images decoded here and sent
raw), encoded bytes (JPEG, PNG or npz, recognised by their signature), a uint8 HWC RGB
array, or a PIL image.
"""
from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

from engine.serving.security import enable_curve_client

SUFFIX_ENCODINGS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".npz": "npz"}
SIGNATURES = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"PK\x03\x04", "npz"))


class ServerError(RuntimeError):
    """The server answered with ``ok: false``; ``reply`` holds the whole answer."""

    def __init__(self, reply: dict):
        super().__init__(f"request {reply.get('id')!r}: {reply.get('error')}")
        self.reply = reply


def encode_item(item) -> tuple[dict, bytes]:
    """The header fields (encoding, shape, dtype) and payload for one item."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        encoding = SUFFIX_ENCODINGS.get(path.suffix.lower())
        if encoding is not None:
            return {"encoding": encoding}, path.read_bytes()
        from engine.data.decode import decode_image

        item = decode_image(path)
    if isinstance(item, (bytes, bytearray, memoryview)):
        head = bytes(item[:8])
        for signature, encoding in SIGNATURES:
            if head.startswith(signature):
                return {"encoding": encoding}, item
        raise ValueError("bytes item: not JPEG, PNG or npz data (pass decoded images as arrays)")
    if not isinstance(item, np.ndarray) and hasattr(item, "convert"):  # a PIL image
        item = np.asarray(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise ValueError(f"array item: shape {item.shape} dtype {item.dtype}, expected (H, W, 3) uint8")
        item = np.ascontiguousarray(item)
        return {"encoding": "raw", "shape": list(item.shape), "dtype": "uint8"}, memoryview(item).cast("B")
    raise TypeError(f"cannot send a {type(item).__name__}: pass a path, image bytes, an array or a PIL image")


class Client:
    """A DEALER connection to an ``engine.serve`` endpoint.

    ``timeout_ms`` bounds :meth:`classify` and :meth:`ping`. For a CURVE server, give its
    public key (40 Z85 characters or its certificate file) and this client's
    ``.key_secret`` file.
    """

    def __init__(self, endpoint: str, *, timeout_ms: int = 30_000, curve_server_key=None,
                 curve_client_key_file=None, context: zmq.Context | None = None):
        if bool(curve_server_key) != bool(curve_client_key_file):
            raise ValueError("CURVE needs both the server's public key and the client's secret key file")
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve_server_key:
            enable_curve_client(self.socket, curve_server_key, curve_client_key_file)
        self.socket.connect(endpoint)
        self._ids = itertools.count()
        self._pending: set = set()
        self._ready: dict = {}

    def submit(self, item, topk: int = 5, request_id=None, *, model: str | None = None,
               version: str | None = None) -> object:
        """Send one item without waiting; returns the request id to match its reply. ``model``
        (and ``version``) name the model when the server serves several."""
        fields, payload = encode_item(item)
        request_id = next(self._ids) if request_id is None else request_id
        header = {"id": request_id, "topk": topk, **fields}
        header.update({key: value for key, value in (("model", model), ("version", version)) if value is not None})
        self.socket.send_multipart([msgpack.packb(header, use_bin_type=True), payload], copy=len(payload) < 65536)
        self._pending.add(request_id)
        return request_id

    def _receive(self, timeout_s: float | None) -> dict | None:
        """One reply, or None when none came within ``timeout_s`` (None: wait forever)."""
        if not self.socket.poll(None if timeout_s is None else max(0, int(timeout_s * 1000))):
            return None
        reply = msgpack.unpackb(self.socket.recv(), raw=False, strict_map_key=False)
        if "id" in reply:
            self._pending.discard(reply["id"])
        return reply

    def results(self, n: int | None = None, timeout: float | None = 30.0) -> dict:
        """Wait for ``n`` replies (default: all submitted and not yet collected), keyed by id.

        Raises TimeoutError, with the replies that did arrive in ``.partial``, when they
        do not all come within ``timeout`` seconds.
        """
        n = len(self._pending) + len(self._ready) if n is None else n
        deadline = None if timeout is None else time.monotonic() + timeout
        out = {}
        while len(out) < n:
            if self._ready:
                request_id, reply = self._ready.popitem()
                out[request_id] = reply
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            reply = self._receive(remaining) if remaining is None or remaining > 0 else None
            if reply is None:
                error = TimeoutError(f"{self.endpoint}: {len(out)} of {n} replies within {timeout} s")
                error.partial = out
                raise error
            out[reply.get("id")] = reply
        return out

    def classify(self, item, topk: int = 5, *, model: str | None = None, version: str | None = None) -> dict:
        """Send one item and wait for its reply; raises ServerError when the server refuses it."""
        request_id = self.submit(item, topk, model=model, version=version)
        deadline = time.monotonic() + self.timeout_ms / 1000
        while request_id not in self._ready:
            reply = self._receive(deadline - time.monotonic())
            if reply is None:
                self._pending.discard(request_id)
                raise TimeoutError(f"{self.endpoint}: no reply to request {request_id} within {self.timeout_ms} ms")
            self._ready[reply.get("id")] = reply
        reply = self._ready.pop(request_id)
        if not reply.get("ok"):
            raise ServerError(reply)
        return reply

    def ping(self) -> dict:
        """The server's model name and statistics."""
        self.socket.send(msgpack.packb({"op": "ping"}))
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            reply = self._receive(deadline - time.monotonic())
            if reply is None:
                raise TimeoutError(f"{self.endpoint}: no pong within {self.timeout_ms} ms")
            if reply.get("op") == "pong":
                return reply
            self._ready[reply.get("id")] = reply

    def close(self) -> None:
        self.socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
