import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from terse.entropy.quantize import cumulative, quantize_probabilities


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 300)),
              elements=st.floats(0, 1e6, allow_nan=False, allow_infinity=False)),
       st.integers(9, 20))
def test_frequencies_are_positive_and_sum_to_total(probs, precision):
    if probs.shape[-1] > 1 << precision:
        return
    freqs = quantize_probabilities(probs, precision)
    assert freqs.dtype == np.int64
    assert (freqs >= 1).all()
    assert (freqs.sum(-1) == 1 << precision).all()


def test_quantization_tracks_probabilities():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(256), size=50)
    freqs = quantize_probabilities(probs, 16)
    # the remainder (< V) goes to the top symbol
    assert np.abs(freqs / 65536 - probs).max() <= 257 / 65536
    others = np.ones_like(probs, dtype=bool)
    others[np.arange(len(probs)), probs.argmax(-1)] = False
    bound = (1 + probs * 256) / 65536  # floor(p (T - V)) + 1 vs p T
    assert (np.abs(freqs / 65536 - probs) <= bound + 1e-12)[others].all()


def test_zero_rows_become_uniform_and_bad_inputs_raise():
    freqs = quantize_probabilities(np.zeros((1, 4)), 10)
    assert freqs.tolist() == [[256, 256, 256, 256]]
    with pytest.raises(ValueError):
        quantize_probabilities(np.array([[0.5, -0.1]]), 10)
    with pytest.raises(ValueError):
        quantize_probabilities(np.array([[np.nan, 1.0]]), 10)
    with pytest.raises(ValueError):
        quantize_probabilities(np.ones((1, 2048)), 10)


def test_quantization_is_deterministic():
    probs = np.random.default_rng(1).random((8, 256))
    assert np.array_equal(quantize_probabilities(probs), quantize_probabilities(probs.copy()))


def test_cumulative():
    assert cumulative(np.array([[1, 2, 3]])).tolist() == [[0, 1, 3, 6]]
