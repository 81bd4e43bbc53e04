"""Preprocessing alone, for ``engine.preprocess``: worker processes decode items and run
the model's preprocessing (the fused kernel, or its library's transform) straight into a
ring of shared-memory batches; the owner reads each batch out once it is whole.

The work is the pipeline's preprocess stage (the same :class:`SlotFiller`: decode of
paths and in-memory items, then the model's preprocessing), without a broker: one task is
one batch, handed to whichever worker is free, and at most ``depth`` batches are in
flight, so memory is bounded whatever the input's length.
"""
from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np

from engine.data import payloads
from engine.data.dataconfig import DataConfig
from engine.pipeline.preprocess_worker import SlotFiller
from engine.pipeline.slots import SlotRing, sweep_stale_segments
from engine.pipeline.spawning import main_module_hidden

_worker: dict = {}  # in each worker process: its SlotFiller


def _start_worker(ring_spec: dict, data_config: dict, max_pixels: int | None) -> None:
    _worker["filler"] = SlotFiller(SlotRing.attach(ring_spec), DataConfig.from_dict(data_config), max_pixels)


def _preprocess_batch(first_slot: int, items: list) -> list[tuple[int, str]]:
    """Write ``items`` into the slots from ``first_slot`` on; the failed positions and why."""
    filled = _worker["filler"].fill(range(first_slot, first_slot + len(items)), items)
    return [(slot - first_slot, reason) for slot, reason in filled.errors]


@dataclass
class _Batch:
    first_slot: int
    indices: list[int]  # input positions of the items sent
    result: mp.pool.AsyncResult | None


class PreprocessPool:
    def __init__(self, data_config: DataConfig, *, batch_size: int, workers: int, dtype: str,
                 max_pixels: int | None):
        self.batch_size = batch_size
        self.depth = 2 * workers + 1
        sweep_stale_segments()
        self.ring = SlotRing.create(self.depth * batch_size, tuple(data_config.input_size), dtype)
        with main_module_hidden():
            self.pool = mp.get_context("spawn").Pool(workers, initializer=_start_worker,
                                                      initargs=(self.ring.spec(), data_config.to_dict(), max_pixels))

    def batches(self, items: Iterable, on_error) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(indices, batch)`` per ``batch_size`` items in input order: the NCHW batch holds
        the items that preprocessed, ``indices`` their input positions; ``on_error(index,
        reason)`` hears of each one that did not."""
        numbered = enumerate(items)
        pending: deque[_Batch] = deque()
        blocks = 0
        while True:
            while len(pending) < self.depth and (taken := list(islice(numbered, self.batch_size))):
                pending.append(self._submit(taken, blocks % self.depth, on_error))
                blocks += 1
            if not pending:
                return
            batch = pending.popleft()
            failed = dict(batch.result.get()) if batch.result is not None else {}
            for position, reason in failed.items():
                on_error(batch.indices[position], reason)
            kept = [p for p in range(len(batch.indices)) if p not in failed]
            rows = self.ring.array[batch.first_slot:batch.first_slot + len(batch.indices)]
            yield np.asarray([batch.indices[p] for p in kept], dtype=np.int64), np.array(rows[kept])

    def _submit(self, taken: list[tuple[int, object]], block: int, on_error) -> _Batch:
        first_slot = block * self.batch_size
        encoded = payloads.encode_all(taken)
        for position, reason in encoded.refused:
            on_error(taken[position][0], reason)
        result = self.pool.apply_async(_preprocess_batch, (first_slot, encoded.items)) if encoded.items else None
        return _Batch(first_slot, [taken[p][0] for p in encoded.positions], result)

    def close(self) -> None:
        """Stop the workers and remove the ring (idempotent)."""
        if self.ring.array is None:
            return
        self.pool.terminate()
        self.pool.join()
        self.ring.close()
