"""``engine.preprocess``: the engine's decode and preprocessing as a batch iterator, for a
training or evaluation loop of the user's own."""
from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable, Iterator

import numpy as np

from engine.api.model import data_config_of
from engine.api.options import ModelOptions
from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.decode import DEFAULT_MAX_PIXELS
from engine.models.preprocessing import Preprocessing
from engine.pipeline.preprocess_pool import PreprocessPool

DTYPES = ("float32", "uint8")


def _say(index: int, reason: str) -> None:
    print(f"engine.preprocess: item {index} skipped: {reason}", file=sys.stderr, flush=True)


def preprocess(items: Iterable, *, batch_size: int = 64, workers: int = 2, dtype: str = "float32",
               max_pixels: int = DEFAULT_MAX_PIXELS, errors: list | None = None,
               **model) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """An iterator of ``(indices, batch)``: NCHW numpy batches of ``items`` (paths, encoded bytes,
    HWC uint8 arrays, PIL images), preprocessed as the model's library does it (the
    normalized float32 tensor, or with ``dtype="uint8"`` the resized and cropped pixels),
    and the input positions of their rows. ``model``: the keywords naming the model and
    its preprocessing (``model=`` and ``library=``, ``onnx=``, ``preprocess=``, ...: the
    fields of :class:`ModelOptions`). An item that cannot be read is left out of its
    batch: appended to ``errors`` as ``(index, reason)`` when a list is given, else said
    on stderr."""
    options = ModelOptions.from_keywords(model)
    arg_checks.at_least("batch_size", batch_size, 1)
    arg_checks.at_least("workers", workers, 1)
    arg_checks.at_least("max_pixels", max_pixels, 0)
    if dtype not in DTYPES:
        raise UsageError(f"dtype {dtype!r}: use float32 or uint8")
    config = data_config_of(options)
    if config is None:
        raise UsageError(f"{options.onnx or options.deploy_model}: no model-info JSON beside it; name the "
                         "preprocessing with preprocess=FILE")
    try:
        Preprocessing(config).check_output_dtype(np.dtype(dtype))
    except ValueError as e:
        raise UsageError(str(e)) from None
    on_error = (lambda index, reason: errors.append((index, reason))) if errors is not None else _say
    pool = PreprocessPool(config, batch_size=batch_size, workers=workers, dtype=dtype, max_pixels=max_pixels or None)
    batches = _batches(pool, items, on_error)
    weakref.finalize(batches, pool.close)  # also when the iterator is dropped before its first batch
    return batches


def _batches(pool: PreprocessPool, items: Iterable, on_error) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pool's batches; the pool stops when the loop ends, breaks or is collected."""
    try:
        yield from pool.batches(items, on_error)
    finally:
        pool.close()
