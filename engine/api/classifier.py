"""``engine.Classifier``: the pipeline of ``engine.run`` kept up for many streams of items.

It is the same machinery, not a second path: a :class:`ShardBroker` on a thread of its own
runs the broker, the preprocess and device processes, the shared-memory slots, the fused
kernel and the backends. :meth:`Classifier.stream` hands the input in batch-sized shards,
at most a ring's worth at a time (so a generator of any length holds only what is in
flight: the slots apply the backpressure), and yields each item's :class:`Result` in input
order. Closing a stream early (``break``) leaves its items not yet taken from the
iterable untouched; those already in the pipeline finish there and are dropped. Leaving
the ``with`` block, :meth:`close`, a ``KeyboardInterrupt`` in a stream, garbage collection
or the interpreter's exit stop every process and remove the shared memory.
"""
from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np

from engine.api.job import RunFailed
from engine.api.model import resolve
from engine.api.options import EngineOptions
from engine.api.run_config import build_run_config
from engine.data import payloads
from engine.data.labels import class_name
from engine.pipeline.broker import RunStopped
from engine.pipeline.shard_broker import ShardBroker
from engine.pipeline.summary import STAGES, latency_stats


class Result:
    """One item's answer. ``topk``: ``(class_index, class_name, probability)``, best first;
    ``logits``: the model's output row (float32); ``error``: None, or one line naming the
    item and the reason (then ``topk`` is empty and ``logits`` None).

    The top-k list is built when first read, from the ranked row the device instance sent:
    a stream of thousands of items per second should not pay for tuples nobody reads."""

    __slots__ = ("index", "item", "logits", "error", "_ranked", "_probs", "_class_names")

    def __init__(self, index: int, item: str, *, ranked=None, probs=None, class_names=None, logits=None,
                 error: str | None = None):
        self.index, self.item, self.logits, self.error = index, item, logits, error
        self._ranked, self._probs, self._class_names = ranked, probs, class_names

    @property
    def topk(self) -> list[tuple[int, str, float]]:
        if self._ranked is None:
            return []
        return [(int(c), class_name(self._class_names, c), float(p)) for c, p in zip(self._ranked, self._probs)]

    def __repr__(self) -> str:
        return (f"Result(index={self.index}, item={self.item!r}, topk={self.topk}, error={self.error!r})")


class _ChunkSink:
    """The answers for one chunk of a stream, by position in the chunk; the shard broker
    calls :meth:`results` and :meth:`error` with positions in the shard it was given (the
    chunk's items that could be sent, ``rows``)."""

    def __init__(self, first_index: int, names: list[str], class_names: list[str] | None, k: int):
        self.answers: list[Result | None] = [None] * len(names)
        self.first_index = first_index
        self.names = names
        self.class_names = class_names
        self.k = k
        self.rows: list[int] = []

    def fail(self, position: int, reason: str) -> None:
        self.answers[position] = Result(self.first_index + position, self.names[position], error=reason)

    def results(self, positions, ranked, probs, outputs) -> None:
        k, names = self.k, self.class_names
        logits = outputs[0].reshape(len(positions), -1)
        if logits.dtype != np.float32:
            logits = logits.astype(np.float32)
        for j, shard_position in enumerate(positions):
            position = self.rows[shard_position]
            self.answers[position] = Result(self.first_index + position, self.names[position], ranked=ranked[j, :k],
                                            probs=probs[j, :k], class_names=names, logits=logits[j])

    def error(self, shard_position: int, reason: str) -> None:
        self.fail(self.rows[shard_position], reason)


@dataclass
class _Pending:
    sink: _ChunkSink
    shard: object | None  # the OpenShard, None when no item of the chunk could be sent


class Classifier:
    """``Classifier(onnx=... | model=..., library=, weights=, backend=, device=, batch_size=,
    instances=, processes=, workers=, topk=, ...)``: the keywords are
    :class:`~engine.api.options.EngineOptions`' (docs/api.md). Raises
    :class:`~engine.data.arg_checks.UsageError` for a bad option and :class:`RunFailed` when
    the pipeline cannot start."""

    def __init__(self, onnx=None, model=None, **keywords):
        options = EngineOptions.from_keywords({"onnx": onnx, "model": model, **keywords})
        options.check()
        model_path, info = resolve(options)
        self.options = options
        self.model_path = model_path
        try:
            self.config = build_run_config(options, model_path, info, warmup=0, quiet=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise RunFailed(str(e)) from None
        self._broker = ShardBroker(self.config, {"k": options.topk, "outputs": True})
        self._closer = weakref.finalize(self, self._broker.close)
        try:
            self._broker.serve()
        except RunStopped as e:
            self.close()
            raise RunFailed(f"the pipeline did not start: {e}") from None
        self._items = 0
        self._failed = 0
        self._busy_s = 0.0

    # ---- streams -------------------------------------------------------------------
    def stream(self, items: Iterable) -> Iterator[Result]:
        """Classify ``items`` (paths, encoded image bytes, HWC uint8 arrays, PIL images, mixed;
        any iterable, however long) and yield one :class:`Result` per item, in input order."""
        self._check_open()
        chunk, window = self.config.batch, max(2, self.config.slots // self.config.batch)
        numbered = enumerate(items)
        pending: deque[_Pending] = deque()
        started = time.perf_counter()
        try:
            while True:
                while len(pending) < window and (taken := list(islice(numbered, chunk))):
                    pending.append(self._submit(taken))
                if not pending:
                    return
                for result in self._collect(pending.popleft()):
                    self._items += 1
                    self._failed += result.error is not None
                    yield result
        except KeyboardInterrupt:
            self.close()
            raise
        finally:
            self._busy_s += time.perf_counter() - started

    def classify(self, items: Iterable) -> list[Result]:
        """:meth:`stream` as a list, in input order."""
        return list(self.stream(items))

    def _submit(self, numbered: list[tuple[int, object]]) -> _Pending:
        names = [payloads.describe(item, index) for index, item in numbered]
        sink = _ChunkSink(numbered[0][0], names, self.config.class_names, self.options.topk)
        encoded = payloads.encode_all(numbered)
        for position, reason in encoded.refused:
            sink.fail(position, reason)
        sink.rows = encoded.positions
        shard = self._broker.submit(encoded.items, sink, figures=False) if encoded.items else None
        return _Pending(sink, shard)

    def _collect(self, pending: _Pending) -> list[Result]:
        if pending.shard is not None:
            pending.shard.done.wait()
            if pending.shard.failure:
                raise RunFailed(f"the pipeline stopped: {pending.shard.failure}")
        return pending.sink.answers

    # ---- figures and life ----------------------------------------------------------------
    def stats(self) -> dict:
        """The report's figures over every stream so far: items, throughput over the time
        spent in streams, end-to-end and model-batch latency percentiles (microseconds, over
        the latest 4,096 to 8,192 batches), the mean time per item of each stage, batch
        sizes, worker restarts, peak memory."""
        meter, supervisor = self._broker.meter, self._broker.supervisor
        return {
            "items": self._items, "failed": self._failed, "seconds": self._busy_s,
            "throughput_qps": self._items / self._busy_s if self._busy_s else 0.0,
            "latency_us": {"end_to_end": latency_stats(np.concatenate(meter.e2e_us) if meter.e2e_us else []),
                           "model_batch": latency_stats(meter.batch_us)},
            "stages_us_per_item": {stage: meter.stages.mean(stage) for stage in STAGES},
            "batch_sizes": {str(k): v for k, v in sorted(meter.batch_sizes.items())},
            "restarts": supervisor.restarts, "peak_rss_mb": supervisor.peak_rss_bytes / 2**20,
            "backends": self._broker.backends, "config": self.config.to_dict(),
        }

    def _check_open(self) -> None:
        if not self._closer.alive:
            raise RunFailed("this Classifier is closed")

    def close(self) -> None:
        """Stop the pipeline's processes and remove its shared memory (idempotent)."""
        self._closer()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
