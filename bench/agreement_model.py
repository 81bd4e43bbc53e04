"""How much top-1 agreement with fp32 a given logit error leaves on a given set of images.

Agreement depends on the images as much as on the model: an image whose fp32 top-1 and
top-2 logits nearly tie changes class under any small error. This model adds independent
Gaussian noise at a given signal-to-noise ratio to the fp32 logits and counts how often
each image keeps its top-1 class. It turns a goal stated as agreement into the logit SNR
the quantized model has to reach on that image set, and says whether a miss comes from the
error or from the images: where the expected and the measured agreement of a build match
(the build suite reports both), int8 error behaves like this noise and only a higher SNR
helps.
"""
from __future__ import annotations

import numpy as np

DRAWS = 100
LOWEST_DB, HIGHEST_DB = 0.0, 80.0


def expected_agreement(reference: np.ndarray, snr_db: float, mask: np.ndarray | None = None,
                       draws: int = DRAWS, seed: int = 0) -> float:
    """Mean share of the rows of ``reference`` (fp32 logits, images x classes; ``mask``
    picks rows) whose arg-max survives noise at ``snr_db`` (SNR as the engine reports it:
    10 log10 of the summed squared logits over the summed squared error). The same seeded
    draws serve every ``snr_db``, so the result falls as the SNR does."""
    rows = reference if mask is None else reference[mask]
    if not len(rows):
        raise ValueError("expected_agreement: no images selected")
    sigma = np.sqrt(np.mean(reference.astype(np.float64) ** 2) * 10 ** (-snr_db / 10))
    top1 = rows.argmax(axis=1)
    rng = np.random.default_rng(seed)
    kept = 0
    for _ in range(draws):
        noisy = rows + sigma * rng.standard_normal(rows.shape)
        kept += int((noisy.argmax(axis=1) == top1).sum())
    return kept / (draws * len(rows))


def snr_needed(reference: np.ndarray, target: float, mask: np.ndarray | None = None,
               tolerance_db: float = 0.1, draws: int = DRAWS) -> float:
    """The lowest logit SNR (dB, within ``tolerance_db``) at which :func:`expected_agreement`
    reaches ``target`` (a share in (0, 1))."""
    if not 0 < target < 1:
        raise ValueError(f"snr_needed: target must be a share between 0 and 1, got {target}")
    low, high = LOWEST_DB, HIGHEST_DB
    if expected_agreement(reference, high, mask, draws) < target:
        raise ValueError(f"snr_needed: {target:.4f} agreement is not reached even at {high} dB")
    while high - low > tolerance_db:
        middle = (low + high) / 2
        if expected_agreement(reference, middle, mask, draws) >= target:
            high = middle
        else:
            low = middle
    return high
