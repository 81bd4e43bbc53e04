"""Preprocess stage: load items (npz or images), preprocess them into their slots (the fused
kernel, or the model's library transform: :mod:`engine.models.preprocessing`).

A task names several slots and their items (paths, or in-memory images: see
engine/data/payloads.py); the reply gives the failed slots with their reasons and the
task's summed decode and kernel times.
"""
from __future__ import annotations

import time

import numpy as np
import zmq

from engine.data import payloads
from engine.data.dataconfig import DataConfig
from engine.data.fast_decode import Draft
from engine.models.preprocessing import Preprocessing
from engine.pipeline import wire
from engine.pipeline.lifecycle import become_worker, next_task
from engine.pipeline.slots import SlotRing


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {text}"


def preprocess_main(identity: bytes, endpoint: str, ring_spec: dict, data_config: dict, max_pixels,
                    fast_decode: bool = False) -> None:
    broker_pid = become_worker()
    ring = SlotRing.attach(ring_spec)
    config = DataConfig.from_dict(data_config)
    draft = Draft.for_resize(config.resize) if fast_decode else None
    preprocess = Preprocessing(config)
    preprocess.warm_up(ring.dtype)

    def preprocess_into(img: np.ndarray, slot: int) -> None:
        preprocess(img, ring[slot])

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    wire.send(sock, wire.Hello("pre"))
    try:
        while (task := next_task(sock, broker_pid)) is not None:
            errors, load_us, pre_us = [], 0.0, 0.0
            for slot, item in zip(task.slots, task.items):
                t0 = time.perf_counter()
                try:
                    img = payloads.load(item, max_pixels=max_pixels, draft=draft)
                    t1 = time.perf_counter()
                    preprocess_into(img, slot)
                    t2 = time.perf_counter()
                except Exception as exc:  # noqa: BLE001 - any failure of one item is that item's error record
                    errors.append([slot, _describe(exc)])
                    continue
                load_us += t1 - t0
                pre_us += t2 - t1
            wire.send(sock, wire.PreDone(task.id, errors, round(load_us * 1e6), round(pre_us * 1e6)))
    finally:
        sock.close()
        ctx.term()
        ring.close()
