"""The integer network's numba kernels against plain int64 numpy references.

The kernels are rewritten for speed (unrolled, reassociated float32 sums of integers);
these references pin down the one answer they must keep computing.
"""

from __future__ import annotations

import numpy as np
import pytest

from terse.nn import integer_kernels as K

HALF = np.int64(1) << 31


def reference_attention(q, keys, values, filled, score_multiplier, exp_table, value_multiplier):
    rows, n_heads, hd = q.shape
    group = n_heads // keys.shape[1]
    out = np.empty((rows, n_heads * hd), dtype=np.int64)
    last = len(exp_table) - 1
    for h in range(n_heads):
        k = keys[:, h // group, :, :filled].astype(np.int64)  # (B, hd, filled)
        v = values[:, h // group, :, :filled].astype(np.int64)
        scores = np.einsum("bi,biw->bw", q[:, h].astype(np.int64), k)
        index = np.minimum(((scores.max(1, keepdims=True) - scores) * score_multiplier) >> 32, last)
        e = exp_table[index]
        weights = (e * ((np.int64(1) << 48) // e.sum(1, keepdims=True))) >> 32
        acc = np.einsum("bw,biw->bi", weights, v)
        out[:, h * hd:(h + 1) * hd] = np.clip((acc * value_multiplier + HALF) >> 32, -127, 127)
    return out


@pytest.mark.parametrize(("n_heads", "n_kv", "hd", "filled"), [(4, 1, 64, 192), (3, 1, 64, 50), (6, 2, 10, 7),
                                                                 (8, 1, 7, 33), (2, 2, 5, 1)])
def test_attention_matches_the_integer_reference(n_heads, n_kv, hd, filled):
    rng = np.random.default_rng(hd * 100 + filled)
    rows, window = 5, 192
    q = rng.integers(-127, 128, (rows, n_heads, hd)).astype(np.int16)
    keys = rng.integers(-127, 128, (rows, n_kv, hd, window)).astype(np.int8)
    values = rng.integers(-127, 128, (rows, n_kv, hd, window)).astype(np.int8)
    exp_table = np.round(65536 * np.exp(-np.arange(1025) / 64)).astype(np.int64)
    exp_table[-1] = 0
    out = np.empty((rows, n_heads * hd), dtype=np.int8)
    K.attention(q, keys, values, filled, 98366771, exp_table, 75046, out)
    want = reference_attention(q, keys, values, filled, 98366771, exp_table, 75046)
    assert np.array_equal(out, want)


def test_gelu_lookup_matches_the_integer_reference():
    rng = np.random.default_rng(3)
    acc = rng.integers(-(1 << 22), 1 << 22, (6, 37)).astype(np.int32)
    bias = rng.integers(-(1 << 20), 1 << 20, 37)
    multiplier = rng.integers(1 << 20, 1 << 30, 37)
    table = rng.integers(-128, 128, 301)
    out = np.empty((6, 37), dtype=np.int8)
    K.gelu_lookup(acc, bias, multiplier, table, out)
    index = np.clip(((acc + bias) * multiplier + HALF) >> 32, -150, 150) + 150
    assert np.array_equal(out, table[index])


@pytest.mark.parametrize("precision", [16, 24])
def test_logits_to_frequencies_match_the_integer_reference(precision):
    rng = np.random.default_rng(precision)
    vocab, rows = 257, 9
    acc = rng.integers(-(1 << 22), 1 << 22, (rows, vocab)).astype(np.int32)
    acc[0] = 0  # a flat row: every e equal
    bias = rng.integers(-(1 << 20), 1 << 20, vocab)
    multiplier = rng.integers(1 << 18, 1 << 24, vocab)
    exp_table = np.round((1 << 20) * np.exp(-np.arange(2049) / 64)).astype(np.int64)
    out = np.empty((rows, vocab), dtype=np.int64)
    K.logits_to_frequencies(acc, bias, multiplier, exp_table, precision, out)
    logits = ((acc + bias) * multiplier + HALF) >> 32
    e = exp_table[np.minimum(logits.max(1, keepdims=True) - logits, len(exp_table) - 1)]
    want = (e * ((1 << precision) - vocab)) // e.sum(1, keepdims=True) + 1
    want[np.arange(rows), logits.argmax(1)] += (1 << precision) - want.sum(1)
    assert np.array_equal(out, want)
    assert (out.sum(1) == 1 << precision).all()
