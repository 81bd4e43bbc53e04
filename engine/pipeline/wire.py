"""Wire format between pipeline stages: a msgpack header frame plus raw buffer frames.

Never pickle: a header is a msgpack map; arrays travel as raw bytes whose dtype and
shape are named in the header (the pattern of pyzmq's send_array/recv_array).
"""
from __future__ import annotations

import msgpack
import numpy as np
import zmq


def pack(header: dict) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def unpack(frame) -> dict:
    return msgpack.unpackb(frame, raw=False)


def array_meta(arrays) -> list[dict]:
    return [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]


def send(sock: zmq.Socket, header: dict, arrays=(), identity: bytes | None = None) -> None:
    """Send ``header`` (with the arrays' dtype/shape added) and the arrays' bytes."""
    if arrays:
        header = dict(header, arrays=array_meta(arrays))
    frames = [pack(header)] + [np.ascontiguousarray(a) for a in arrays]
    if identity is not None:
        frames.insert(0, identity)
    sock.send_multipart(frames, copy=len(frames) < 3)


def recv(sock: zmq.Socket, with_identity: bool = False, flags: int = 0):
    """Receive one message: ``(header, arrays)`` or ``(identity, header, arrays)``
    (``flags=zmq.NOBLOCK``: raise ``zmq.Again`` when none is waiting)."""
    frames = sock.recv_multipart(flags, copy=False)
    identity = None
    if with_identity:
        identity, frames = frames[0].bytes, frames[1:]
    header = unpack(frames[0].buffer)
    arrays = [
        np.frombuffer(f.buffer, dtype=np.dtype(meta["dtype"])).reshape(meta["shape"])
        for f, meta in zip(frames[1:], header.get("arrays", ()))
    ]
    return (identity, header, arrays) if with_identity else (header, arrays)
