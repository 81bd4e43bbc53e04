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
from engine.serving.deployment import Draining
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


async def infer(server, front: str, deployment, request_id, inputs: list[tuple],
                outputs: list[tuple[str, OutputRequest]]):
    """One request of ``front`` ("http", "grpc") to ``deployment`` (a model version).

    ``inputs``: (name, datatype, shape, data); ``outputs``: (name, request). Returns the
    output's (datatype, shape, value) and whether it goes back as binary data."""
    t_recv = time.perf_counter()
    server.tally.add(front, "requests")
    try:
        requests, wanted, batched = _checked(server, deployment, request_id, inputs, outputs)
        if server.stopping():
            raise Unavailable("server is shutting down")
        try:
            acquired = server.fleet.acquire(deployment, len(requests))
        except Draining as e:
            raise Unavailable(str(e)) from None
        if acquired is not deployment:  # reloaded since it was resolved: check against the new model
            deployment = acquired
            try:
                requests, wanted, batched = _checked(server, deployment, request_id, inputs, outputs)
            except KServeError:
                deployment.release(len(requests))
                raise
        try:
            seqs = _admit_all(server.admission, requests)
        except Unavailable:
            deployment.release(len(requests))
            server.tally.add(front, "busy")
            raise
    except (KServeError, Unavailable):
        deployment.stats.record_refused()
        server.tally.add(front, "errors")
        raise
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in requests]
    server.submit([Job(seq, request, t_recv, respond=_resolver(loop, future), deployment=deployment)
                   for seq, request, future in zip(seqs, requests, futures)])
    outcomes = await asyncio.gather(*futures)
    for outcome in outcomes:
        if not outcome.ok:  # the error names the image (its request id)
            deployment.stats.record_request(outcomes, t_recv)
            server.tally.add(front, "errors")
            raise (InferenceFailed if outcome.server_fault else KServeError)(outcome.error)
    t_output = time.perf_counter()
    tensor = output_tensor(outcomes, wanted, batched, deployment.model)
    deployment.stats.record_request(outcomes, t_recv, t_output)
    server.tally.add(front, "served")
    return tensor, wanted.binary


def _checked(server, deployment, request_id, inputs: list[tuple], outputs: list) -> tuple[list, OutputRequest, bool]:
    """The batcher requests of the input tensor, the output wanted, and whether the input was batched."""
    wanted = _wanted_output(outputs, deployment.model.num_classes)
    if len(inputs) != 1 or inputs[0][0] != INPUT_NAME:
        raise KServeError(f"expected one input named {INPUT_NAME!r}, got {[i[0] for i in inputs]}")
    _, datatype, shape, data = inputs[0]
    requests, batched = image_requests(request_id, datatype, shape, data, topk=wanted.classification or 1,
                                       limits=server.limits)
    return requests, wanted, batched


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
