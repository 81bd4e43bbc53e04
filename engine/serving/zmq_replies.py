"""The ZeroMQ reply path: outcomes packed into reply frames, carried to the socket thread.

ZeroMQ sockets are not thread safe, so every worker and instance thread has its own
PUSH socket into the socket thread's PULL socket. A reply travels as ``[status,
*envelope, reply]``: the status frame tells the socket thread which request it retires
(and whether it succeeded); the rest goes to the ROUTER as it is.
"""
from __future__ import annotations

import struct

import zmq

from engine.serving import protocol
from engine.serving.jobs import Outcome

REPLIES_ENDPOINT = "inproc://engine.serve.replies"
_STATUS = struct.Struct("<Q?")  # request sequence number, ok


def push_socket(context: zmq.Context) -> zmq.Socket:
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(REPLIES_ENDPOINT)
    return push


def reply_frames(outcome: Outcome, class_names: list[str]) -> list:
    """The frames that carry ``outcome`` to the socket thread and on to its client."""
    job = outcome.job
    if not outcome.ok:
        reply = protocol.error_reply(job.request.id, outcome.error)
    else:
        topk = [
            {"class": int(c), "prob": float(p), "name": class_names[c]}
            for c, p in zip(outcome.indices.tolist(), outcome.probs.tolist())
        ]
        reply = protocol.ok_reply(job.request.id, topk, outcome.timing_us)
    return [_STATUS.pack(job.seq, outcome.ok), *job.envelope, reply]


def read_status(frame) -> tuple[int, bool]:
    """(sequence number, ok) from a reply's first frame."""
    return _STATUS.unpack(frame)
