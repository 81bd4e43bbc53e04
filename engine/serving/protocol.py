"""The serving wire protocol (contract): msgpack headers, raw payload bytes, never pickle.

Request, from a DEALER (``[header, payload]``) or a REQ socket (the same two frames after
an empty delimiter, which the reply carries back):

- ``header``: msgpack map with ``id`` (any msgpack scalar, echoed), ``encoding``
  (``raw``, ``jpeg``, ``png``, ``npz``), for ``raw`` also ``shape`` ``[H, W, 3]`` and
  ``dtype`` ``"uint8"``, optional ``topk`` (default 5, at most the class count), optional
  ``model`` (a name; needed when the server serves several) and ``version`` (a string;
  default the latest served).
- ``payload``: the image bytes.

Reply, one frame: msgpack map ``{id, ok, topk: [{class, prob, name}], timing_us: {queue,
preprocess, infer, total}}`` or ``{id, ok: false, error}``.

Control: a single frame ``{op: "ping"}`` returns ``{ok: true, op: "pong", model, stats}``.
"""
from __future__ import annotations

from dataclasses import dataclass

import msgpack

ENCODINGS = ("raw", "jpeg", "png", "npz")
DEFAULT_TOPK = 5
MAX_HEADER_BYTES = 64 * 1024
SCALAR_TYPES = (int, float, str, bytes, bool, type(None))


class ProtocolError(ValueError):
    """A request the server cannot accept; the message goes back to the client verbatim."""

    def __init__(self, message: str, request_id=None):
        super().__init__(message)
        self.request_id = request_id


@dataclass
class Request:
    """A validated classification request."""

    id: object
    encoding: str
    payload: memoryview
    topk: int
    shape: tuple[int, int, int] | None = None
    model: str | None = None
    version: str | None = None


def split_envelope(frames: list) -> tuple[list, list]:
    """Split ROUTER frames into the routing envelope and the body.

    A DEALER peer's message is ``[identity, *body]``; a REQ peer adds an empty delimiter
    frame, ``[identity, b"", *body]``, which must travel back with the reply.
    """
    if len(frames) >= 2 and len(frames[1]) == 0:
        return frames[:2], frames[2:]
    return frames[:1], frames[1:]


def unpack_map(frame, what: str) -> dict:
    """Decode one msgpack map frame, or raise ProtocolError saying what is wrong."""
    data = bytes(frame)
    if len(data) > MAX_HEADER_BYTES:
        raise ProtocolError(f"{what}: {len(data)} bytes, more than the {MAX_HEADER_BYTES} allowed")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated exception types
        raise ProtocolError(f"{what} is not valid msgpack ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a msgpack map, got {type(obj).__name__}")
    return obj


def _request_id(header: dict):
    if "id" not in header:
        raise ProtocolError("header: missing field 'id'")
    request_id = header["id"]
    if not isinstance(request_id, SCALAR_TYPES):
        raise ProtocolError(f"header: 'id' must be a scalar, got {type(request_id).__name__}")
    return request_id


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_request(body: list, *, classes_of, max_bytes: int, max_pixels: int) -> Request:
    """Validate a two-frame request body; raise ProtocolError naming the problem.

    ``classes_of(model, version)``: the class count of the model the request names (None:
    the default), raising ProtocolError for a model the server does not serve."""
    if len(body) != 2:
        raise ProtocolError(f"expected 2 frames [header, payload], got {len(body)}")
    header = unpack_map(body[0], "header")
    request_id = _request_id(header)
    try:
        model, version = header.get("model"), header.get("version")
        for key, value in (("model", model), ("version", version)):
            if value is not None and not isinstance(value, str):
                raise ProtocolError(f"header: {key!r} must be a string, got {type(value).__name__}")
        num_classes = classes_of(model, version)
        encoding = header.get("encoding")
        if encoding is None:
            raise ProtocolError("header: missing field 'encoding'")
        if encoding not in ENCODINGS:
            raise ProtocolError(f"header: unknown encoding {encoding!r}, expected one of {list(ENCODINGS)}")
        topk = header.get("topk", DEFAULT_TOPK)
        if not _is_int(topk) or not 1 <= topk <= num_classes:
            raise ProtocolError(f"header: topk {topk!r} must be an integer in 1..{num_classes}")
        payload = body[1]
        size = len(payload)
        if size == 0:
            raise ProtocolError("payload is empty")
        if size > max_bytes:
            raise ProtocolError(f"payload of {size} bytes is above the limit of {max_bytes} bytes")
        shape = None
        if encoding == "raw":
            shape = _raw_shape(header, size, max_pixels)
        return Request(request_id, encoding, memoryview(payload), topk, shape, model, version)
    except ProtocolError as e:
        e.request_id = request_id
        raise


def _raw_shape(header: dict, size: int, max_pixels: int) -> tuple[int, int, int]:
    shape = header.get("shape")
    if shape is None:
        raise ProtocolError("header: encoding 'raw' needs field 'shape' [H, W, 3]")
    if "dtype" not in header:
        raise ProtocolError("header: encoding 'raw' needs field 'dtype' ('uint8')")
    if header["dtype"] != "uint8":
        raise ProtocolError(f"header: dtype {header['dtype']!r} is not supported, expected 'uint8'")
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 3
        or not all(_is_int(d) for d in shape)
        or shape[2] != 3
        or min(shape) < 1
    ):
        raise ProtocolError(f"header: shape {shape!r} must be [H, W, 3] with H, W >= 1")
    height, width, channels = shape
    if height * width > max_pixels:
        raise ProtocolError(f"raw image {height}x{width} has more than the {max_pixels} pixels allowed")
    expected = height * width * channels
    if size != expected:
        raise ProtocolError(f"payload has {size} bytes, shape {list(shape)} uint8 needs {expected}")
    return (height, width, channels)


def pack(obj: dict) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def error_reply(request_id, message: str) -> bytes:
    return pack({"id": request_id, "ok": False, "error": message})


def ok_reply(request_id, topk: list[dict], timing_us: dict) -> bytes:
    return pack({"id": request_id, "ok": True, "topk": topk, "timing_us": timing_us})


def pong_reply(model: str, stats: dict) -> bytes:
    return pack({"ok": True, "op": "pong", "model": model, "stats": stats})
