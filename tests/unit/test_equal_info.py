"""Equal-Info Windows: exact interval codes, unique decodability, bad input."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terse.core.errors import ArtifactError, ConfigError, FormatError
from terse.entropy.interval import Interval
from terse.textcomp.equal_info import (
    EqualInfoConfig,
    EqualInfoTokenizer,
    check_ids,
    tokens_to_windows,
    windows_to_tokens,
)
from terse.textcomp.tokenizers import load_tokenizer


def brute_force_code(low: int, width: int, depth: int, max_bits: int):
    """Shortest dyadic [m/2^n, (m+1)/2^n) inside [low, low+width)/2^depth, smallest m."""
    for n in range(max_bits + 1):
        for m in range(1 << n):
            if m * (1 << depth) >= low * (1 << n) and (m + 1) * (1 << depth) <= (low + width) * (1 << n):
                return n, m
    return None


def test_interval_code_is_the_shortest_dyadic_inside():
    rng = random.Random(0)
    for _ in range(300):
        interval = Interval()
        for _ in range(rng.randint(1, 3)):
            freq = rng.randint(1, 64)
            interval.narrow(rng.randint(0, 64 - freq), freq, 6)
        expected = brute_force_code(interval.low, interval.width, interval.depth, 18)
        fits = interval.shorten(18)
        assert fits == (expected is not None)
        if fits:
            assert (interval.code_bits, interval.code) == expected


def test_a_single_byte_always_fits():
    for freq in (1, 2, 3, 1000, (1 << 14) - 255):
        for cum in (0, 5, (1 << 14) - freq):
            interval = Interval()
            interval.narrow(cum, freq, 14)
            assert interval.shorten(15)
    with pytest.raises(ConfigError, match="precision"):
        EqualInfoConfig(window_bits=8, token_bits=8)  # a 14-bit-precision byte may need 15 bits


def decode_all(tok: EqualInfoTokenizer, ids_list):
    """Decode many texts' windows in one batch; returns texts (None where a window failed)."""
    per = tok.config.tokens_per_window
    windows = [tokens_to_windows(ids, tok.config) for ids in ids_list]
    decoded = tok.decode_window_values([v for w in windows for v in w])
    out, k = [], 0
    for w in windows:
        parts = decoded[k:k + len(w)]
        k += len(w)
        out.append(None if None in parts else b"".join(parts).decode("utf-8", errors="replace"))
    assert all(len(ids) % per == 0 for ids in ids_list)
    return out


@pytest.mark.parametrize("window_bits", [16, 32])
def test_exhaustive_small_alphabet_decodes_exactly_and_greedy_does_not(peaked_m1, window_bits):
    """Every string of length <= 7 over {a, b, ' '}: the delay rule round-trips all of
    them; the paper's greedy rule, on the same model, does not (so the test can fail)."""
    strings = ["".join(p) for n in range(1, 8) for p in itertools.product("ab ", repeat=n)]
    results = {}
    for rule in ("delay", "greedy"):
        tok = EqualInfoTokenizer(peaked_m1, EqualInfoConfig(window_bits=window_bits, token_bits=16, rule=rule,
                                                            compute="fp32"))
        ids = tok.encode_batch(strings)
        decoded = decode_all(tok, ids)
        results[rule] = sum(d != s for d, s in zip(decoded, strings, strict=True))
        windows = sum(len(i) for i in ids) / tok.config.tokens_per_window
        assert sum(map(len, strings)) / windows > 2.5  # windows really hold several bytes
    assert results["delay"] == 0
    assert results["greedy"] > 0  # with the paper's longest-match decoder


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60), window_bits=st.sampled_from([16, 32, 64]), token_bits=st.sampled_from([8, 16]))
def test_round_trip_any_unicode(tiny_m1, text, window_bits, token_bits):
    tok = EqualInfoTokenizer(tiny_m1, EqualInfoConfig(window_bits=window_bits, token_bits=token_bits))
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and len(ids) % tok.config.tokens_per_window == 0
    assert ids.size == 0 or (ids.min() >= 0 and ids.max() < tok.vocab_size)
    assert tok.decode(ids) == text


def test_round_trip_peaked_text_and_segments(peaked_m1):
    rng = random.Random(1)
    texts = ["".join(rng.choice("aaaab  bc\n") for _ in range(rng.randint(0, 300))) for _ in range(40)]
    tok = EqualInfoTokenizer(peaked_m1, EqualInfoConfig(window_bits=16, token_bits=8, segment_bytes=37))
    ids = tok.encode_batch(texts)
    assert decode_all(tok, ids) == texts


def test_encoding_does_not_depend_on_the_batch(tiny_m1):
    texts = ["The quick brown fox", "jumps over", "the lazy dog. " * 20, "é ü 漢字 🙂"]
    tok = EqualInfoTokenizer(tiny_m1, EqualInfoConfig(window_bits=32, token_bits=16, segment_bytes=16))
    batch = tok.encode_batch(texts)
    for text, ids in zip(texts, batch, strict=True):
        assert np.array_equal(tok.encode(text), ids)
    assert tok("abc")["input_ids"] == tok.encode("abc").tolist()
    assert tok(["abc", "de"])["input_ids"] == [tok.encode("abc").tolist(), tok.encode("de").tolist()]


def test_encoding_does_not_depend_on_the_thread_count(tiny_m1):
    import torch

    tok = EqualInfoTokenizer(tiny_m1, EqualInfoConfig(window_bits=16, token_bits=16))
    text = "Threads split the matmuls; the windows must not notice. " * 4
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = tok.encode(text)
        torch.set_num_threads(1)
        one = tok.encode(text)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, two) and tok.decode(two) == text


def test_window_token_regrouping():
    wide, narrow = EqualInfoConfig(window_bits=32, token_bits=16), EqualInfoConfig(window_bits=32, token_bits=8)
    values = [0, 1, 0xFFFFFFFF, 0x12345678]
    assert windows_to_tokens(values, wide).tolist() == [0, 0, 0, 1, 0xFFFF, 0xFFFF, 0x1234, 0x5678]
    assert tokens_to_windows(windows_to_tokens(values, narrow), narrow) == values


def test_bad_ids_are_clear_errors(tiny_m1):
    tok = EqualInfoTokenizer(tiny_m1, EqualInfoConfig(window_bits=32, token_bits=16))
    ids = tok.encode("hello world")
    with pytest.raises(FormatError, match="out of range"):
        tok.decode([70000, 1])
    with pytest.raises(FormatError, match="truncated"):
        tok.decode(ids[:-1])
    with pytest.raises(FormatError, match="integers"):
        check_ids([[1, 2]], tok.config)
    # ids of another configuration: some window decodes to nothing
    other = EqualInfoTokenizer(tiny_m1, EqualInfoConfig(window_bits=16, token_bits=16))
    foreign = other.encode("some other text that is long enough to make several windows")
    with pytest.raises(FormatError, match="another tokenizer configuration"):
        tok.decode(np.concatenate([foreign, foreign])[: (len(foreign) // 2) * 2])
    lenient = tok.decode_lenient(np.concatenate([ids, [5]]))
    assert lenient.text.startswith("hello world") and lenient.text.endswith("\ufffd")
    assert lenient.invalid_units == 1 and lenient.decoded_bytes == len("hello world")


def test_save_and_load(tiny_m1, tmp_path):
    tok = EqualInfoTokenizer(tiny_m1, EqualInfoConfig(window_bits=16, token_bits=8))
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert isinstance(again, EqualInfoTokenizer) and again.config == tok.config
    assert np.array_equal(again.encode("abc def"), tok.encode("abc def"))
    weights = tmp_path / "tok" / "m1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtifactError):
        load_tokenizer(tmp_path / "tok")
