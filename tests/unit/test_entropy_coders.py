import math

import numpy as np
import pytest

from terse.core.errors import FormatError
from terse.entropy.arithmetic import (
    ArithmeticDecoder,
    ArithmeticEncoder,
    bits_to_bytes,
    bytes_to_bits,
)
from terse.entropy.quantize import cumulative, quantize_probabilities
from terse.entropy.range_coder import RangeDecoder, RangeEncoder


def _random_source(n, vocab=256, seed=0, concentration=0.2):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(vocab, concentration), size=n)
    freqs = quantize_probabilities(probs, 16)
    symbols = np.array([rng.choice(vocab, p=f / f.sum()) for f in freqs])
    ideal = -np.log2(freqs[np.arange(n), symbols] / 65536).sum()
    return freqs, symbols, ideal


def test_exact_coder_round_trip_and_length():
    freqs, symbols, ideal = _random_source(1500)
    cdfs = cumulative(freqs)
    encoder = ArithmeticEncoder()
    for cdf, s in zip(cdfs, symbols, strict=False):
        encoder.encode(int(cdf[s]), int(cdf[s + 1] - cdf[s]), 65536)
    bits = encoder.finish()
    # WNC: within 2 bits of the ideal code length (+ tiny rounding loss per symbol)
    assert ideal <= len(bits) <= ideal + 2 + 1e-3 * len(symbols)
    decoder = ArithmeticDecoder(bits)
    assert [decoder.decode(cdf.tolist()) for cdf in cdfs] == symbols.tolist()


def test_exact_coder_extreme_probabilities():
    # one symbol with probability ~1, the others at the minimum frequency 1
    freqs = quantize_probabilities(np.array([[1.0] + [0.0] * 255] * 300), 16)
    symbols = np.array([0] * 290 + [255] * 10)
    cdfs = cumulative(freqs)
    encoder = ArithmeticEncoder()
    for cdf, s in zip(cdfs, symbols, strict=False):
        encoder.encode(int(cdf[s]), int(cdf[s + 1] - cdf[s]), 65536)
    bits = encoder.finish()
    decoder = ArithmeticDecoder(bytes_to_bits(bits_to_bytes(bits)))
    assert [decoder.decode(cdf.tolist()) for cdf in cdfs] == symbols.tolist()


def test_exact_coder_rejects_invalid_intervals():
    with pytest.raises(ValueError):
        ArithmeticEncoder().encode(0, 0, 16)
    with pytest.raises(ValueError):
        ArithmeticEncoder().encode(10, 10, 16)


def test_range_coder_matches_reference_and_entropy():
    freqs, symbols, ideal = _random_source(3000, seed=3)
    encoder = RangeEncoder()
    for start in range(0, len(symbols), 700):  # batched calls, as the compressor makes them
        encoder.encode(symbols[start:start + 700], freqs[start:start + 700])
    data = encoder.finish()
    assert 8 * len(data) <= ideal * 1.001 + 64
    decoder = RangeDecoder(data)
    decoded = np.concatenate([decoder.decode(freqs[s:s + 1000]) for s in range(0, len(symbols), 1000)])
    assert np.array_equal(decoded, symbols)
    # the slow exact coder agrees on the code length to within a few bits
    cdfs = cumulative(freqs)
    reference = ArithmeticEncoder()
    for cdf, s in zip(cdfs, symbols, strict=False):
        reference.encode(int(cdf[s]), int(cdf[s + 1] - cdf[s]), 65536)
    assert abs(len(reference.finish()) - ideal) < 3
    assert math.isclose(8 * len(data), ideal, rel_tol=0.01, abs_tol=64)


def test_range_decoder_rejects_partial_words():
    with pytest.raises(FormatError):
        RangeDecoder(b"\x00\x01\x02")


def test_binary_coder_round_trip_and_cost():
    from terse.entropy import binary_coder as bc

    rng = np.random.default_rng(0)
    probs = rng.integers(1, 4096, 20000)
    bits = (rng.random(20000) < probs / 4096).astype(np.int64)
    state, out = bc.new_state(), np.empty(4 * len(bits) + 8, dtype=np.uint8)
    for bit, p in zip(bits, probs, strict=True):
        bc.encode_bit(state, out, int(bit), int(p))
    n = bc.finish_encoder(state, out)
    ideal = -np.sum(np.where(bits == 1, np.log2(probs / 4096), np.log2(1 - probs / 4096)))
    assert 8 * n < ideal * 1.01 + 64
    state = bc.new_state()
    data = out[:n].copy()
    bc.start_decoder(state, data)
    decoded = [bc.decode_bit(state, data, int(p)) for p in probs]
    assert np.array_equal(decoded, bits)


def test_binary_coder_extreme_probabilities():
    from terse.entropy import binary_coder as bc

    # every bit against a 1/4096 prediction: the interval shrinks fastest here
    bits = np.array([1, 0] * 500)
    probs = np.where(bits == 1, 1, 4095)
    state, out = bc.new_state(), np.empty(4 * len(bits) + 8, dtype=np.uint8)
    for bit, p in zip(bits, probs, strict=True):
        bc.encode_bit(state, out, int(bit), int(p))
    n = bc.finish_encoder(state, out)
    state, data = bc.new_state(), out[:n].copy()
    bc.start_decoder(state, data)
    assert [bc.decode_bit(state, data, int(p)) for p in probs] == list(bits)
