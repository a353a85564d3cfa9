"""N-gram index: exact counts vs a brute-force reference, interpolation rules, storage."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from terse.core.errors import ArtifactError, ConfigError, DataError, ModelMismatchError
from terse.superposed.ngrams import NGramIndex, tokenizer_fingerprint


def brute_counts(docs, max_order):
    """{context tuple: Counter(next token)} for contexts of length 1..max_order-1."""
    table: dict[tuple, Counter] = {}
    for doc in docs:
        doc = list(doc)
        for i in range(1, len(doc)):
            for L in range(1, max_order):
                if i - L < 0:
                    break
                table.setdefault(tuple(doc[i - L:i]), Counter())[doc[i]] += 1
    return table


def brute_prob(table, context, token, lambdas):
    p = 0.0
    for j, lam in enumerate(lambdas):
        L = j + 1
        if len(context) < L:
            break
        ctx = tuple(context[-L:])
        if ctx in table:  # unseen contexts are skipped (no renormalisation over orders)
            p += lam * table[ctx][token] / sum(table[ctx].values())
    return p


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(7)
    # Small vocabulary + a repeated motif so that long contexts recur.
    motif = [3, 1, 4, 1, 5, 9, 2, 6]
    docs = []
    for _ in range(6):
        doc = list(rng.integers(0, 12, 300))
        for pos in rng.integers(0, 280, 8):
            doc[pos:pos + len(motif)] = motif
        docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def index(corpus):
    return NGramIndex.build(corpus, vocab_size=16, tokenizer_fingerprint="toy", max_order=6)


def test_counts_match_brute_force(corpus, index):
    table = brute_counts(corpus, 6)
    rng = np.random.default_rng(0)
    contexts = list(table)[:400] + [tuple(rng.integers(0, 16, rng.integers(1, 6))) for _ in range(200)]
    for ctx in contexts:
        expected_total = sum(table[ctx].values()) if ctx in table else 0
        for token in range(16):
            count, total = index.count(ctx, token)
            assert total == expected_total
            assert count == (table[ctx][token] if ctx in table else 0)


def test_lookup_matches_reference_interpolation(corpus, index):
    table = brute_counts(corpus, 6)
    lambdas = (0.01, 0.04, 0.15, 0.18, 0.12)
    rng = np.random.default_rng(1)
    # Real draft contexts (from the corpus) and random ones, 5 tokens each.
    starts = rng.integers(0, 290, 40)
    contexts = np.array([corpus[i % len(corpus)][s:s + 5] for i, s in enumerate(starts)]
                        + [list(rng.integers(0, 16, 5)) for _ in range(20)], dtype=np.int64)
    candidates = rng.integers(0, 16, (contexts.shape[0], 9))
    got = index.lookup(contexts, candidates, lambdas).probs
    expected = np.array([[brute_prob(table, list(c), int(t), lambdas) for t in row]
                         for c, row in zip(contexts, candidates, strict=True)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert (got > 0).any() and (got == 0).any()


def test_interpolation_rules_on_a_hand_made_corpus():
    index = NGramIndex.build([[1, 2, 3, 1, 2, 4]], vocab_size=5, tokenizer_fingerprint="toy", max_order=3)
    lam = (0.25, 0.5)
    # context (1, 2): bigram 2 -> {3: 1, 4: 1}; trigram (1, 2) -> {3: 1, 4: 1}
    p = index.lookup(np.array([[1, 2]]), np.array([[3, 4, 0]]), lam).probs[0]
    np.testing.assert_allclose(p, [0.25 * 0.5 + 0.5 * 0.5, 0.25 * 0.5 + 0.5 * 0.5, 0.0])
    # context (4, 2): trigram context unseen -> skipped, NOT renormalised (sum is 0.25 * ..)
    p = index.lookup(np.array([[4, 2]]), np.array([[3]]), lam).probs[0]
    np.testing.assert_allclose(p, [0.25 * 0.5])
    # context ending in 4: 4 is never followed by anything (end of document) -> unseen
    lookup = index.lookup(np.array([[2, 4]]), np.array([[1, 2]]), lam)
    assert (lookup.probs == 0).all() and not lookup.context_seen.any()


def test_ngrams_do_not_cross_documents():
    index = NGramIndex.build([[1, 2], [3, 4]], vocab_size=5, tokenizer_fingerprint="toy", max_order=3)
    assert index.count([2], 3) == (0, 0)
    assert index.count([1], 2) == (1, 1)


def test_candidates_outside_the_index_vocabulary_get_zero(index):
    # Models often pad their vocabulary beyond the tokenizer's: those ids never match.
    p = index.lookup(np.array([[3, 1, 4, 1, 5]]), np.array([[9, 16 + 9, 10**6]]), (0.5, 0.5)).probs[0]
    assert p[0] > 0 and p[1] == 0 and p[2] == 0


def test_save_load_round_trip_and_no_pickle(tmp_path, index):
    folder = index.save(tmp_path / "idx")
    loaded = NGramIndex.load(folder)
    assert loaded.tokenizer_fingerprint == "toy" and loaded.max_order == 6
    for name, array in index.arrays().items():
        np.testing.assert_array_equal(np.load(folder / f"{name}.npy", allow_pickle=False), array)
    ctx, cand = np.array([[3, 1, 4, 1, 5]]), np.arange(16)[None]
    np.testing.assert_array_equal(loaded.lookup(ctx, cand, (0.1,) * 5).probs, index.lookup(ctx, cand, (0.1,) * 5).probs)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert not list(tmp_path.glob(".*tmp"))


def test_corrupted_or_foreign_index_is_an_error(tmp_path, index):
    folder = index.save(tmp_path / "idx")
    arr = folder / "next_counts_2.npy"
    data = bytearray(arr.read_bytes())
    data[-1] ^= 1
    arr.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        NGramIndex.load(folder)
    with pytest.raises(ArtifactError, match="not an n-gram index"):
        NGramIndex.load(tmp_path / "nothing")
    with pytest.raises(ModelMismatchError, match="different tokenizer"):
        index.check_tokenizer("another")


def test_save_replaces_atomically(tmp_path, index):
    folder = index.save(tmp_path / "idx")
    small = NGramIndex.build([[1, 2, 3]], vocab_size=4, tokenizer_fingerprint="other", max_order=2)
    small.save(folder)
    assert NGramIndex.load(folder).tokenizer_fingerprint == "other"
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


def test_bad_build_inputs():
    with pytest.raises(DataError, match="empty corpus"):
        NGramIndex.build([[], []], vocab_size=5, tokenizer_fingerprint="x")
    with pytest.raises(DataError, match="token ids"):
        NGramIndex.build([[1, 7]], vocab_size=5, tokenizer_fingerprint="x")
    with pytest.raises(ConfigError, match="max_order"):
        NGramIndex.build([[1, 2]], vocab_size=5, tokenizer_fingerprint="x", max_order=1)
    index = NGramIndex.build([[1, 2, 3]], vocab_size=5, tokenizer_fingerprint="x", max_order=2)
    with pytest.raises(ConfigError, match="orders up to 2"):
        index.lookup(np.array([[1, 2]]), np.array([[3]]), (0.1, 0.2))


def test_tokenizer_fingerprint_depends_on_the_vocabulary():
    from tests.fixtures.superposed import char_tokenizer

    a, b = char_tokenizer(), char_tokenizer(vocab=50)
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(char_tokenizer())
    assert tokenizer_fingerprint(a) != tokenizer_fingerprint(b)
