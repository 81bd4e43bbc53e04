"""One KServe inference, for the HTTP and gRPC front ends: admit, queue, await, shape the output.

The images of a request are admitted together (all or none: a request that does not fit
gets "busy" and holds nothing), queued to the same workers and batcher as ZeroMQ requests,
and awaited on the front end's event loop: a worker's outcome is handed over with
``call_soon_threadsafe``, so no thread blocks on a request.
"""
from __future__ import annotations

import asyncio
import time

from engine.serving.admission import Busy
from engine.serving.jobs import Job
from engine.serving.kserve import (
    INPUT_NAME,
    OUTPUT_NAME,
    KServeError,
    OutputRequest,
    check_topk,
    image_requests,
    output_tensor,
)


class Unavailable(Exception):
    """The server cannot take the request now (busy, shutting down): 503 / UNAVAILABLE."""


class InferenceFailed(Exception):
    """The model failed on a valid request: 500 / INTERNAL."""


async def infer(server, request_id, inputs: list[tuple], outputs: list[tuple[str, OutputRequest]]):
    """``inputs``: (name, datatype, shape, data); ``outputs``: (name, request). Returns the
    output's (datatype, shape, value) and whether it goes back as binary data."""
    t_recv = time.perf_counter()
    try:
        wanted = _wanted_output(outputs, server.model.num_classes)
        if len(inputs) != 1 or inputs[0][0] != INPUT_NAME:
            raise KServeError(f"expected one input named {INPUT_NAME!r}, got {[i[0] for i in inputs]}")
        _, datatype, shape, data = inputs[0]
        requests, batched = image_requests(request_id, datatype, shape, data, topk=wanted.classification or 1,
                                           limits=server.limits)
        if server.stopping():
            raise Unavailable("server is shutting down")
        seqs = _admit_all(server.admission, requests)
    except (KServeError, Unavailable):
        server.metrics.record_refused()
        raise
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in requests]
    server.submit([Job(seq, request, t_recv, respond=_resolver(loop, future))
                   for seq, request, future in zip(seqs, requests, futures)])
    outcomes = await asyncio.gather(*futures)
    for outcome in outcomes:
        if not outcome.ok:  # the error names the image (its request id)
            raise (InferenceFailed if outcome.server_fault else KServeError)(outcome.error)
    t_output = time.perf_counter()
    tensor = output_tensor(outcomes, wanted, batched, server.model)
    server.metrics.record_output(t_output)
    return tensor, wanted.binary


def _wanted_output(outputs: list, num_classes: int) -> OutputRequest:
    if not outputs:
        return OutputRequest()
    if len(outputs) != 1 or outputs[0][0] != OUTPUT_NAME:
        raise KServeError(f"the model has one output, {OUTPUT_NAME!r}; asked for {[o[0] for o in outputs]}")
    wanted = outputs[0][1]
    if wanted.classification:
        check_topk(wanted.classification, num_classes)
    return wanted


def _admit_all(admission, requests: list) -> list[int]:
    seqs = []
    try:
        for request in requests:
            seqs.append(admission.admit(len(request.payload)))
    except Busy as e:
        for seq in seqs:
            admission.retire(seq)
        raise Unavailable(str(e)) from None
    return seqs


def _resolver(loop: asyncio.AbstractEventLoop, future: asyncio.Future):
    def respond(outcome) -> None:
        try:
            loop.call_soon_threadsafe(_settle, future, outcome)
        except RuntimeError:  # the front end's loop has closed: nobody waits for this reply
            pass
    return respond


def _settle(future: asyncio.Future, outcome) -> None:
    if not future.done():  # a client that went away cancelled it
        future.set_result(outcome)
