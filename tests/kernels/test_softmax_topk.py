"""softmax_topk against a float64 numpy reference, ties, non-finite rows, bad input."""
import numpy as np
import pytest
import torch

from engine.kernels import softmax_topk


def _reference(logits, k):
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(p, order, axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_matches_reference_and_torch(dtype):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((37, 1000)) * 4).astype(dtype)
    idx, probs = softmax_topk(logits, 5)
    ref_idx, ref_probs = _reference(logits, 5)
    assert idx.dtype == np.int64 and probs.dtype == np.float32
    assert idx.shape == probs.shape == (37, 5)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(probs, ref_probs)
    t_probs, t_idx = torch.topk(torch.softmax(torch.from_numpy(logits.astype(np.float64)), 1), 5)
    np.testing.assert_array_equal(idx, t_idx.numpy())
    np.testing.assert_allclose(probs, t_probs.numpy(), rtol=1e-6)


def test_large_logits_are_stable():
    logits = np.array([[1000.0, 999.0, -1000.0], [-5000.0, -5001.0, -5000.5]], dtype=np.float32)
    idx, probs = softmax_topk(logits, 3)
    np.testing.assert_array_equal(idx, [[0, 1, 2], [0, 2, 1]])
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_ties_keep_lower_class_first():
    logits = np.array([[0.0, 3.0, 1.0, 3.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    idx, probs = softmax_topk(logits, 6)
    np.testing.assert_array_equal(idx, [[1, 3, 4, 5, 2, 6]])
    assert probs[0, 0] == probs[0, 1] == probs[0, 2] > probs[0, 3]
    idx_all, _ = softmax_topk(np.zeros((1, 10), dtype=np.float32), 10)
    np.testing.assert_array_equal(idx_all, [np.arange(10)])


def test_non_finite_rows_are_reported_not_ranked():
    logits = np.zeros((4, 6), dtype=np.float32)
    logits[0, 2] = 1.0
    logits[1, 3] = np.nan
    logits[2, 0] = np.inf
    logits[3, 5] = -np.inf
    idx, probs = softmax_topk(logits, 2)
    assert idx[0, 0] == 2 and np.isfinite(probs[0]).all()
    for row in (1, 2, 3):
        np.testing.assert_array_equal(idx[row], [-1, -1])
        assert np.isnan(probs[row]).all()


def test_k_equal_to_classes_and_single_class():
    idx, probs = softmax_topk(np.array([[2.0, 1.0]], dtype=np.float32), 2)
    np.testing.assert_array_equal(idx, [[0, 1]])
    idx, probs = softmax_topk(np.array([[7.0]], dtype=np.float32), 1)
    assert idx[0, 0] == 0 and probs[0, 0] == 1.0


@pytest.mark.parametrize("logits, k, message", [
    (np.zeros((2, 3), np.float32), 4, "k 4"),
    (np.zeros((2, 3), np.float32), 0, "k 0"),
    (np.zeros(3, np.float32), 1, "shape"),
    (np.zeros((2, 3), np.int64), 1, "dtype"),
])
def test_bad_input_raises(logits, k, message):
    with pytest.raises(ValueError, match=message):
        softmax_topk(logits, k)
