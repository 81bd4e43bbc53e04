"""Preprocess stage: load items (npz or images), run the fused kernel into their slots.

A task names several slots and their item paths; the reply gives the failed slots with
their reasons and the task's summed decode and kernel times.
"""
from __future__ import annotations

import time

import numpy as np
import zmq

import kernels
from engine.data.decode import load_item
from engine.pipeline import wire
from engine.pipeline.lifecycle import become_worker, next_task
from engine.pipeline.slots import SlotRing


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {text}"


def _kernel_warmup_samples(size: int) -> list[np.ndarray]:
    contiguous = np.zeros((size, size, 3), np.uint8)
    readonly = contiguous.copy()
    readonly.flags.writeable = False
    return [contiguous, readonly, np.zeros((3, size, size), np.uint8).transpose(1, 2, 0)]


def preprocess_main(identity: bytes, endpoint: str, ring_spec: dict, data_config: dict, max_pixels) -> None:
    broker_pid = become_worker()
    ring = SlotRing.attach(ring_spec)
    resize, crop = data_config["resize"], data_config["crop"]
    mean, std = tuple(data_config["mean"]), tuple(data_config["std"])

    def preprocess_into(img: np.ndarray, slot: int) -> None:
        if ring.dtype == np.uint8:  # the device normalizes (engine.run --normalize-on device)
            kernels.resize_crop_uint8(img, out=ring[slot], resize=resize, crop=crop)
        else:
            kernels.resize_crop_normalize(img, out=ring[slot], resize=resize, crop=crop, mean=mean, std=std)

    # load the compiled kernel before timing starts, for every array type items arrive as:
    # decoded images (read-only contiguous HWC) and npz arrays (CHW seen through a transposed view)
    for sample in _kernel_warmup_samples(crop):
        preprocess_into(sample, 0)

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    wire.send(sock, {"type": "hello", "role": "pre"})
    try:
        while (header := next_task(sock, broker_pid)) is not None:
            errors, load_us, pre_us = [], 0.0, 0.0
            for slot, path in zip(header["slots"], header["paths"]):
                t0 = time.perf_counter()
                try:
                    img = load_item(path, max_pixels=max_pixels)
                    t1 = time.perf_counter()
                    preprocess_into(img, slot)
                    t2 = time.perf_counter()
                except Exception as exc:  # noqa: BLE001 - any failure of one item is that item's error record
                    errors.append([slot, _describe(exc)])
                    continue
                load_us += t1 - t0
                pre_us += t2 - t1
            wire.send(sock, {"type": "pre_done", "id": header["id"], "errors": errors,
                             "load_us": round(load_us * 1e6), "pre_us": round(pre_us * 1e6)})
    finally:
        sock.close()
        ctx.term()
        ring.close()
