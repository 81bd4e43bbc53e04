"""Ray Data: classify a dataset's column with the engine's pipeline, on every Ray worker.

::

    ds = ray.data.read_parquet(...)          # a column of paths, encoded bytes or HWC arrays
    ds = ds.map_batches(engine.ray_data.Classify, concurrency=4, batch_size=64,
                        fn_constructor_kwargs={"model": "resnet50.a1_in1k", "library": "timm",
                                               "weights": "r50.safetensors", "column": "image"})

Each actor holds one :class:`engine.Classifier` (its own preprocess and device processes),
so the preprocessing is the model library's own, bit for bit, rather than a hand-written
resize in a ``map`` step; the results equal a local run of the same model. The batch comes
back with ``topk_index`` (int64, -1 where the item failed), ``topk_name``, ``topk_prob``
(float32, NaN where it failed) and ``error`` (None, or the line naming the item and why).
"""
from __future__ import annotations

import numpy as np

from engine.api.classifier import Classifier

DEFAULT_WORKERS = 1  # per actor: Ray runs several actors, each with its own processes


class Classify:
    def __init__(self, column: str = "image", workers: int = DEFAULT_WORKERS, **classifier):
        """``column``: the input column; the other keywords are :class:`engine.Classifier`'s."""
        self.column = column
        self.classifier = Classifier(workers=workers, **classifier)
        self.topk = self.classifier.options.topk

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        column = batch[self.column]
        items = [column[i] for i in range(len(column))]
        results = self.classifier.classify(items)
        k = self.topk
        index = np.full((len(results), k), -1, np.int64)
        prob = np.full((len(results), k), np.nan, np.float32)
        names = np.empty(len(results), dtype=object)
        errors = np.empty(len(results), dtype=object)
        for row, r in enumerate(results):
            index[row, :len(r.topk)] = [c for c, _, _ in r.topk]
            prob[row, :len(r.topk)] = [p for _, _, p in r.topk]
            names[row] = [n for _, n, _ in r.topk]
            errors[row] = r.error
        return {**batch, "topk_index": index, "topk_name": names, "topk_prob": prob, "error": errors}
