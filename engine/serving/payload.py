"""Turn a validated request's payload into a uint8 HWC RGB image, refusing bombs.

Every failure raises ``engine.data.decode.DecodeError`` naming the request and the reason, so
the server can answer the client and carry on.
"""
from __future__ import annotations

import numpy as np

from engine.data.decode import DecodeError, decode_image, load_npz
from engine.data.fast_decode import Draft
from engine.serving.protocol import Request

MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def decode_payload(request: Request, *, max_pixels: int, draft: Draft | None = None) -> np.ndarray:
    """The request's image as uint8 HWC RGB (possibly a strided view; the kernels take any);
    ``draft``: ``--fast-decode`` (see ``engine.data.decode.decode_image``)."""
    name = f"request {request.id!r}"
    payload = request.payload
    if request.encoding == "raw":
        return np.frombuffer(payload, np.uint8).reshape(request.shape)
    if request.encoding == "npz":
        return load_npz(payload, name=name, max_pixels=max_pixels)
    magic = MAGIC[request.encoding]
    if bytes(payload[: len(magic)]) != magic:
        raise DecodeError(name, f"payload is not a {request.encoding.upper()} image (wrong signature)")
    return decode_image(payload, name=name, max_pixels=max_pixels, draft=draft)
