"""The pipeline's messages: what the broker and its workers say to each other.

Every message is one msgpack header frame, plus raw buffer frames for arrays whose dtype
and shape the header names (the pattern of pyzmq's send_array/recv_array; never pickle).
The header's ``type`` is a :class:`Kind`; its other keys are the fields of that kind's
record below. :func:`send` takes a record, :func:`recv` gives one back (with the arrays).

The conversation (the broker binds a ROUTER, each worker connects a DEALER):

==============  =================  ==========================================================
kind            from -> to         meaning
==============  =================  ==========================================================
``hello``       worker -> broker   started and ready (a device instance says its backend)
``fatal``       worker -> broker   cannot work at all (its backend failed to load): stop
``task``        broker -> pre      preprocess these items into these slots
``pre_done``    pre -> broker      the task is done; its failed slots with their reasons
``batch``       broker -> dev      run the batch in ``count`` slots from ``first``
``dev_done``    dev -> broker      arrays: ranked classes, probabilities (+ raw outputs)
``dev_error``   dev -> broker      the batch failed; every item of it gets ``error``
``stop``        broker -> worker   finish: close and exit
==============  =================  ==========================================================

Ids are the broker's task ids; a worker answers each task or batch exactly once.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import ClassVar

import msgpack
import numpy as np
import zmq


class Kind(enum.StrEnum):
    HELLO = "hello"
    FATAL = "fatal"
    TASK = "task"
    PRE_DONE = "pre_done"
    BATCH = "batch"
    DEV_DONE = "dev_done"
    DEV_ERROR = "dev_error"
    STOP = "stop"


@dataclass
class Hello:
    KIND: ClassVar[Kind] = Kind.HELLO
    role: str  # "pre" or "dev"
    backend: dict | None = None  # a device instance's backend, as it describes itself


@dataclass
class Fatal:
    KIND: ClassVar[Kind] = Kind.FATAL
    error: str


@dataclass
class Task:
    KIND: ClassVar[Kind] = Kind.TASK
    id: int
    slots: list[int]
    items: list  # paths, or in-memory items (engine/data/payloads.py)


@dataclass
class PreDone:
    KIND: ClassVar[Kind] = Kind.PRE_DONE
    id: int
    errors: list = field(default_factory=list)  # [slot, reason] of each failed item
    load_us: int = 0  # the task's summed decode time
    pre_us: int = 0  # ... and preprocessing time


@dataclass
class Batch:
    KIND: ClassVar[Kind] = Kind.BATCH
    id: int
    first: int  # the first slot
    count: int


@dataclass
class DevDone:
    KIND: ClassVar[Kind] = Kind.DEV_DONE
    id: int
    infer_us: int
    post_us: int


@dataclass
class DevError:
    KIND: ClassVar[Kind] = Kind.DEV_ERROR
    id: int
    error: str


@dataclass
class Stop:
    KIND: ClassVar[Kind] = Kind.STOP


Message = Hello | Fatal | Task | PreDone | Batch | DevDone | DevError | Stop
RECORDS = {cls.KIND: cls for cls in (Hello, Fatal, Task, PreDone, Batch, DevDone, DevError, Stop)}
_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in RECORDS.values()}


def pack(header: dict) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def unpack(frame) -> dict:
    return msgpack.unpackb(frame, raw=False)


def array_meta(arrays) -> list[dict]:
    return [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]


def send(sock: zmq.Socket, message: Message, arrays=(), identity: bytes | None = None) -> None:
    """Send ``message`` and the arrays' bytes (their dtype and shape go in the header)."""
    header = {"type": message.KIND.value, **{name: getattr(message, name) for name in _FIELDS[type(message)]}}
    if arrays:
        header["arrays"] = array_meta(arrays)
    frames = [pack(header)] + [np.ascontiguousarray(a) for a in arrays]
    if identity is not None:
        frames.insert(0, identity)
    sock.send_multipart(frames, copy=len(frames) < 3)


def recv(sock: zmq.Socket, with_identity: bool = False, flags: int = 0):
    """Receive one message: ``(record, arrays)`` or ``(identity, record, arrays)``
    (``flags=zmq.NOBLOCK``: raise ``zmq.Again`` when none is waiting)."""
    frames = sock.recv_multipart(flags, copy=False)
    identity = None
    if with_identity:
        identity, frames = frames[0].bytes, frames[1:]
    header = unpack(frames[0].buffer)
    arrays = [
        np.frombuffer(f.buffer, dtype=np.dtype(meta["dtype"])).reshape(meta["shape"])
        for f, meta in zip(frames[1:], header.pop("arrays", ()))
    ]
    record = RECORDS[Kind(header.pop("type"))](**header)
    return (identity, record, arrays) if with_identity else (record, arrays)
