"""Preprocess stage: load items (npz or images), preprocess them into their slots (the fused
kernel, or the model's library transform: :mod:`engine.models.preprocessing`).

A task names several slots and their items (paths, or in-memory images: see
engine/data/payloads.py); the reply gives the failed slots with their reasons and the
task's summed decode and kernel times.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

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


@dataclass
class Filled:
    errors: list = field(default_factory=list)  # [slot, reason] of each item that failed
    load_us: float = 0.0  # summed decode time of the items that did not
    pre_us: float = 0.0  # ... and their preprocessing time


class SlotFiller:
    """The preprocess stage's work, for the pipeline's workers and ``engine.preprocess``'s
    pool alike: load each item and preprocess it into its slot of the ring; one item's
    failure is that item's error."""

    def __init__(self, ring: SlotRing, config: DataConfig, max_pixels, fast_decode: bool = False):
        self.ring = ring
        self.max_pixels = max_pixels
        self.draft = Draft.for_resize(config.resize) if fast_decode else None
        self.preprocess = Preprocessing(config)
        self.preprocess.warm_up(ring.dtype)

    def fill(self, slots, items) -> Filled:
        filled = Filled()
        for slot, item in zip(slots, items):
            t0 = time.perf_counter()
            try:
                img = payloads.load(item, max_pixels=self.max_pixels, draft=self.draft)
                t1 = time.perf_counter()
                self.preprocess(img, self.ring[slot])
                t2 = time.perf_counter()
            except Exception as exc:  # noqa: BLE001 - any failure of one item is that item's error record
                filled.errors.append([slot, _describe(exc)])
                continue
            filled.load_us += (t1 - t0) * 1e6
            filled.pre_us += (t2 - t1) * 1e6
        return filled


def preprocess_main(identity: bytes, endpoint: str, ring_spec: dict, data_config: dict, max_pixels,
                    fast_decode: bool = False) -> None:
    broker_pid = become_worker()
    ring = SlotRing.attach(ring_spec)
    filler = SlotFiller(ring, DataConfig.from_dict(data_config), max_pixels, fast_decode)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    wire.send(sock, wire.Hello("pre"))
    try:
        while (task := next_task(sock, broker_pid)) is not None:
            filled = filler.fill(task.slots, task.items)
            wire.send(sock, wire.PreDone(task.id, filled.errors, round(filled.load_us), round(filled.pre_us)))
    finally:
        sock.close()
        ctx.term()
        ring.close()
