"""Device stage: a process holding ``instances`` backend sessions, one thread each.

Each instance has its own DEALER socket to the broker, receives batches of slot indices,
gathers those slots into one contiguous batch buffer and runs its backend: ``run`` on
normalized float32 slots, ``run_uint8`` on uint8 crops (``--normalize-on device``). Logits go
back as raw frames beside a msgpack header.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from engine.pipeline import wire
from engine.pipeline.lifecycle import become_worker, next_task
from engine.pipeline.model_backend import open_model_backend
from engine.pipeline.slots import SlotRing


def _instance_loop(ctx, identity: bytes, endpoint: str, ring: SlotRing, backend_spec: dict,
                   batch: int, broker_pid: int, stop: threading.Event) -> None:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        try:
            backend = open_model_backend(backend_spec["kind"], backend_spec["model_path"],
                                   device=backend_spec["device"], threads=backend_spec["threads"],
                                   **backend_spec["options"])
            if tuple(backend.input_shape) != ring.shape:
                raise ValueError(f"the preprocessed shape {ring.shape} does not match the model input "
                                 f"{tuple(backend.input_shape)}")
            run = backend.run_uint8 if ring.dtype == np.uint8 else backend.run
            buf = backend.input_buffer(batch, ring.dtype)  # page-locked on a GPU: copied by DMA
            buf[:] = 0
            for _ in range(2):  # allocation, kernel choice and any CUDA graph capture happen here
                run(buf)
        except Exception as exc:  # noqa: BLE001 - reported to the broker, which stops the run
            wire.send(sock, {"type": "fatal", "error": f"backend failed to load: {type(exc).__name__}: {exc}"})
            return
        wire.send(sock, {"type": "hello", "role": "dev", "backend": backend.describe()})
        while (header := next_task(sock, broker_pid, stop)) is not None:
            items = header["items"]
            slots = [slot for _, slot in items]
            n = len(slots)
            t0 = time.perf_counter()
            np.take(ring.array, slots, axis=0, out=buf[:n])
            t1 = time.perf_counter()
            try:
                outputs = run(buf[:n])
            except Exception as exc:  # noqa: BLE001 - the batch's items get this as their error
                wire.send(sock, {"type": "dev_error", "id": header["id"], "items": items,
                                 "error": f"inference failed: {exc}"})
                continue
            t2 = time.perf_counter()
            wire.send(sock, {"type": "dev_done", "id": header["id"], "items": items,
                             "gather_us": round((t1 - t0) * 1e6), "infer_us": round((t2 - t1) * 1e6)}, outputs)
        backend.close()
    finally:
        sock.close()


def device_main(identities: list[bytes], endpoint: str, ring_spec: dict, backend_spec: dict, batch: int) -> None:
    broker_pid = become_worker()
    ring = SlotRing.attach(ring_spec)
    ctx = zmq.Context()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_instance_loop, name=ident.decode(), daemon=True,
                         args=(ctx, ident, endpoint, ring, backend_spec, batch, broker_pid, stop))
        for ident in identities
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    ctx.term()
    ring.close()
