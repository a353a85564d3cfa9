"""Baseline tokenizations for M2: lossless round trips, persistence, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from terse.core.errors import ArtifactError, FormatError
from terse.textcomp.tokenizers import (
    ArithmeticTokenizer,
    ByteTokenizer,
    GzipTokenizer,
    SentencePieceTokenizer,
    load_tokenizer,
)

TEXTS = ["", "a", "Hello, world!\n\nSecond paragraph with  two spaces.\r\n", "é ü 漢字 🙂 \t end", "x" * 500]
CORPUS = ["The quick brown fox jumps over the lazy dog.\nA second line, with numbers 12345.\n" * 20,
          "Elementary, my dear Watson. The hound was on the moor.\n" * 20]


@pytest.fixture(scope="module")
def sentencepiece():
    return SentencePieceTokenizer.train(CORPUS, vocab_size=300)


def all_tokenizers(tiny_m1, sentencepiece):
    return [ByteTokenizer(), GzipTokenizer(8), GzipTokenizer(16), ArithmeticTokenizer(8, m1=tiny_m1),
            ArithmeticTokenizer(16, m1=tiny_m1), ArithmeticTokenizer.static_from_corpus("".join(CORPUS).encode(), 8),
            ArithmeticTokenizer.static_from_corpus("".join(CORPUS).encode(), 16), sentencepiece]


def test_round_trips_and_persistence(tiny_m1, sentencepiece, tmp_path):
    for tok in all_tokenizers(tiny_m1, sentencepiece):
        batch = tok.encode_batch(TEXTS)
        for text, ids in zip(TEXTS, batch, strict=True):
            assert ids.dtype == np.int64 and (ids.size == 0 or 0 <= ids.min() <= ids.max() < tok.vocab_size)
            assert tok.decode(ids) == text, tok.name
            assert np.array_equal(tok.encode(text), ids), tok.name  # batch-independent
        tok.save_pretrained(tmp_path / tok.name)
        again = load_tokenizer(tmp_path / tok.name)
        assert again.name == tok.name
        assert np.array_equal(again.encode(TEXTS[2]), batch[2])


def test_compressed_tokenizers_compress(tiny_m1):
    text = CORPUS[0]
    assert len(GzipTokenizer(8).encode(text)) < len(text) / 3
    assert len(GzipTokenizer(16).encode(text)) * 2 == pytest.approx(len(GzipTokenizer(8).encode(text)), abs=1)
    static = ArithmeticTokenizer.static_from_corpus("".join(CORPUS).encode(), 8)
    assert len(static.encode(text)) < len(text) * 0.75  # ~ the byte entropy of English, < 6 bits


def test_sentencepiece_is_lossless_on_whitespace_and_unseen_characters(sentencepiece):
    for text in ("  leading and trailing  ", "\n\n\ttabs\n", "unseen: ñ ß ∑ 🙂", "▁ looks like the space marker"):
        assert sentencepiece.decode(sentencepiece.encode(text)) == text


def test_bad_ids(tiny_m1):
    for tok in (ByteTokenizer(), GzipTokenizer(8), ArithmeticTokenizer(8, m1=tiny_m1)):
        with pytest.raises(FormatError, match="out of range"):
            tok.decode([1, 256])
        with pytest.raises(FormatError, match="integers"):
            tok.decode([[1]])
    gz = GzipTokenizer(8)
    with pytest.raises(FormatError):
        gz.decode(gz.encode("some text to compress")[:-3])
    with pytest.raises(FormatError):
        gz.decode([1, 2, 3, 4])
    ac = ArithmeticTokenizer(8, m1=tiny_m1)
    ids = ac.encode("a document long enough to need several tokens of arithmetic code")
    lenient = ac.decode_lenient(ids[: len(ids) // 2])  # a truncated stream decodes leniently, never raises
    assert lenient.invalid_units == 1 or lenient.decoded_bytes > 0
    with pytest.raises(FormatError):
        ByteTokenizer().decode([0xC3])  # not UTF-8
    with pytest.raises(ArtifactError, match="not a saved tokenizer"):
        load_tokenizer("/nonexistent/folder")
