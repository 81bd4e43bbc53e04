"""Softmax + top-k over classifier logits (the models' post-processing)."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def _softmax_topk_rows(logits, k, indices, probs):
    n_classes = logits.shape[1]
    p = np.empty(n_classes, dtype=np.float32)
    for b in range(logits.shape[0]):
        row = logits[b]
        top = -np.inf
        finite = True
        for c in range(n_classes):
            v = np.float64(row[c])
            if not np.isfinite(v):
                finite = False
                break
            if v > top:
                top = v
        if not finite:
            for i in range(k):
                indices[b, i] = -1
                probs[b, i] = np.nan
            continue
        total = 0.0
        for c in range(n_classes):
            total += np.exp(np.float64(row[c]) - top)
        for c in range(n_classes):
            p[c] = np.float32(np.exp(np.float64(row[c]) - top) / total)
        # Insertion into a sorted list of k: classes are scanned in increasing index order
        # and a class enters only when strictly more probable than one kept, so equal
        # probabilities keep the lower class index first.
        kept = 0
        for c in range(n_classes):
            v = p[c]
            if kept == k and v <= probs[b, k - 1]:
                continue
            pos = kept if kept < k else k - 1
            while pos > 0 and probs[b, pos - 1] < v:
                if pos < k:
                    probs[b, pos] = probs[b, pos - 1]
                    indices[b, pos] = indices[b, pos - 1]
                pos -= 1
            probs[b, pos] = v
            indices[b, pos] = c
            if kept < k:
                kept += 1


def softmax_topk(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` classes of each row of ``logits`` (B, C) by softmax probability.

    Returns ``(indices, probs)``: (B, k) int64 and (B, k) float32, most probable first,
    equal probabilities in increasing class index. The softmax subtracts the row maximum
    and sums in float64, then rounds each probability to float32.
    A row that contains NaN or +-inf is reported, not ranked: its indices are all -1 and
    its probs all NaN (callers turn such rows into error records).
    Raises ValueError for a non-2-D or non-float array, or k outside 1..C.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits: shape {logits.shape}, expected (batch, classes)")
    if logits.dtype.kind != "f":
        raise ValueError(f"logits: dtype {logits.dtype}, expected a float dtype")
    if logits.dtype == np.float16:
        logits = logits.astype(np.float32)
    k = int(k)
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k {k}: must be between 1 and the number of classes {logits.shape[1]}")
    indices = np.empty((logits.shape[0], k), dtype=np.int64)
    probs = np.empty((logits.shape[0], k), dtype=np.float32)
    _softmax_topk_rows(logits, k, indices, probs)
    return indices, probs
