"""bench.agreement_model: expected top-1 agreement under Gaussian logit noise."""
from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from bench.agreement_model import expected_agreement, snr_needed


def two_class_rows(gap: float, rows: int = 200) -> np.ndarray:
    return np.tile(np.asarray([[gap, 0.0]]), (rows, 1))


def test_agreement_matches_the_normal_law_for_two_classes():
    """Top-1 survives while the noise difference (variance 2 sigma^2) stays under the gap."""
    reference = two_class_rows(1.0)
    snr_db = 6.0
    sigma = np.sqrt(np.mean(reference**2) * 10 ** (-snr_db / 10))
    want = NormalDist().cdf(1.0 / (sigma * np.sqrt(2)))
    assert expected_agreement(reference, snr_db, draws=400) == pytest.approx(want, abs=0.005)


def test_agreement_falls_with_the_snr_and_near_ties_go_first():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((60, 100))
    reference[:30, 0] = reference[:30].max(axis=1) + 3.0  # clear winners
    reference[30:, 1] = reference[30:].max(axis=1) + 0.01  # near ties
    clear, tied = np.arange(60) < 30, np.arange(60) >= 30
    grid = [60.0, 30.0, 20.0, 10.0]
    rates = [expected_agreement(reference, db) for db in grid]
    assert rates == sorted(rates, reverse=True)
    assert rates[0] > 0.95 > rates[-1]
    assert expected_agreement(reference, 20.0, clear) > expected_agreement(reference, 20.0, tied) + 0.2


def test_snr_needed_inverts_the_two_class_law():
    reference = two_class_rows(1.0)
    target = 0.9
    # keep = Phi(gap / (sigma sqrt 2)); mean square of the rows is gap^2 / 2
    z = NormalDist().inv_cdf(target)
    want_db = 10 * np.log10(0.5 / (1 / (2 * z * z)))
    assert snr_needed(reference, target, draws=400) == pytest.approx(want_db, abs=0.25)


def test_bad_requests_name_the_problem():
    reference = two_class_rows(1.0, rows=4)
    with pytest.raises(ValueError, match="between 0 and 1"):
        snr_needed(reference, 1.0)
    with pytest.raises(ValueError, match="no images"):
        expected_agreement(reference, 20.0, np.zeros(4, bool))
    with pytest.raises(ValueError, match="not reached"):
        snr_needed(np.tile([[1.0, 1.0, 0.0]], (4, 1)), 0.99)  # exact ties flip under any noise
