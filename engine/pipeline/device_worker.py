"""Device stage: a process holding ``instances`` backend sessions, one thread each.

Each instance has its own DEALER socket to the broker and receives batches as one message
naming a block of consecutive slots. On the CPU it runs that region of the shared ring as
it lies (no gather copy); for a GPU it copies the region into the backend's page-locked
buffer, which the host-to-device copy reads directly. ``run`` takes normalized float32
slots, ``run_uint8`` uint8 crops (``--normalize-on device``). The instance also ranks its
logits (one ``softmax_topk`` over the batch, in this thread rather than on the broker's),
so what goes back is the batch's top-k classes and probabilities beside a msgpack header,
and the raw outputs only when the run writes them.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from engine import kernels
from engine.pipeline import wire
from engine.pipeline.lifecycle import become_worker, next_task
from engine.pipeline.model_backend import open_model_backend
from engine.pipeline.slots import SlotRing


def _open(backend_spec: dict, ring: SlotRing, batch: int, k: int):
    """The backend, its run function and the staging buffer (None: run the slots in place),
    warmed up: allocation, kernel choice, any CUDA graph capture and the ranking kernel's
    load all happen before the instance says hello."""
    backend = open_model_backend(backend_spec["kind"], backend_spec["model_path"], device=backend_spec["device"],
                                 threads=backend_spec["threads"], **backend_spec["options"])
    if tuple(backend.input_shape) != ring.shape:
        raise ValueError(f"the preprocessed shape {ring.shape} does not match the model input "
                         f"{tuple(backend.input_shape)}")
    run = backend.run_uint8 if ring.dtype == np.uint8 else backend.run
    buf = backend.input_buffer(batch, ring.dtype)  # page-locked on a GPU: copied by DMA
    buf[:] = 0
    for _ in range(2):
        outputs = run(buf)
    logits = outputs[0].reshape(batch, -1)
    kernels.softmax_topk(logits, min(k, logits.shape[1]))
    return backend, run, (None if backend_spec["device"] == "cpu" else buf)


def _instance_loop(ctx, identity: bytes, endpoint: str, ring: SlotRing, backend_spec: dict,
                   batch: int, ranking: dict, broker_pid: int, stop: threading.Event) -> None:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    slots = np.asarray(ring.array)
    try:
        try:
            backend, run, staging = _open(backend_spec, ring, batch, ranking["k"])
        except Exception as exc:  # noqa: BLE001 - reported to the broker, which stops the run
            wire.send(sock, wire.Fatal(f"backend failed to load: {type(exc).__name__}: {exc}"))
            return
        wire.send(sock, wire.Hello("dev", backend.describe()))
        while (batch_task := next_task(sock, broker_pid, stop)) is not None:
            first, n = batch_task.first, batch_task.count
            region = slots[first:first + n]
            if staging is not None:
                np.copyto(staging[:n], region)
                region = staging[:n]
            t0 = time.perf_counter()
            try:
                outputs = run(region)
            except Exception as exc:  # noqa: BLE001 - the batch's items get this as their error
                wire.send(sock, wire.DevError(batch_task.id, f"inference failed: {exc}"))
                continue
            t1 = time.perf_counter()
            logits = outputs[0].reshape(n, -1)
            ranked, probs = kernels.softmax_topk(logits, min(ranking["k"], logits.shape[1]))
            t2 = time.perf_counter()
            wire.send(sock, wire.DevDone(batch_task.id, round((t1 - t0) * 1e6), round((t2 - t1) * 1e6)),
                      [ranked, probs, *(outputs if ranking["outputs"] else ())])
        backend.close()
    finally:
        sock.close()


def device_main(identities: list[bytes], endpoint: str, ring_spec: dict, backend_spec: dict, batch: int,
                ranking: dict) -> None:
    broker_pid = become_worker()
    ring = SlotRing.attach(ring_spec)
    ctx = zmq.Context()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_instance_loop, name=ident.decode(), daemon=True,
                         args=(ctx, ident, endpoint, ring, backend_spec, batch, ranking, broker_pid, stop))
        for ident in identities
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    ctx.term()
    ring.close()
