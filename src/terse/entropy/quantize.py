"""Probabilities -> integer frequencies that an exact coder can use.

Invariants (tested): every symbol gets frequency >= 1 (so any symbol stays codable,
whatever the model predicted), each row sums to exactly ``2**precision``, and the
result is a deterministic function of the input array.
"""

from __future__ import annotations

import numpy as np


def quantize_probabilities(probs: np.ndarray, precision: int = 16) -> np.ndarray:
    """Quantize probability rows to integer frequencies.

    Args:
        probs: (..., V) non-negative floats; rows need not be normalized.
        precision: P, rows sum to 2**P; requires V <= 2**P.

    Returns:
        (..., V) int64 frequencies, each >= 1, each row summing to 2**P. The rounding
        remainder goes to the most probable symbol of each row.
    """
    probs = np.asarray(probs, dtype=np.float64)
    vocab = probs.shape[-1]
    total = 1 << precision
    if vocab > total:
        raise ValueError(f"{vocab} symbols do not fit in {precision}-bit frequencies")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError("probabilities must be finite and non-negative")
    sums = probs.sum(axis=-1, keepdims=True)
    safe = np.where(sums > 0, probs / np.where(sums > 0, sums, 1.0), 1.0 / vocab)
    freqs = np.floor(safe * (total - vocab)).astype(np.int64) + 1
    remainder = total - freqs.sum(axis=-1)
    top = safe.argmax(axis=-1)
    np.put_along_axis(freqs, top[..., None], np.take_along_axis(freqs, top[..., None], -1) + remainder[..., None], -1)
    return freqs


def cumulative(freqs: np.ndarray) -> np.ndarray:
    """(..., V) frequencies -> (..., V+1) cumulative table starting at 0."""
    freqs = np.asarray(freqs, dtype=np.int64)
    zeros = np.zeros(freqs.shape[:-1] + (1,), dtype=np.int64)
    return np.concatenate((zeros, np.cumsum(freqs, axis=-1)), axis=-1)
