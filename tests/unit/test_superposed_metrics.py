"""Diversity and judge metrics used by the Superposed Decoding benchmark."""

from __future__ import annotations

import math

import pytest
from tests.fixtures.superposed import char_tokenizer, tiny_causal_lm

from terse.superposed.metrics import bleu, continuation_nll, distinct_n, self_bleu


def test_bleu_identical_and_disjoint():
    words = "the quick brown fox jumps".split()
    assert bleu(words, [words]) == pytest.approx(1.0)
    # No overlap at all: every precision is epsilon / count (method1 smoothing).
    other = "a b c d e".split()
    expected = math.exp(sum(math.log(0.1 / (5 - n + 1)) for n in range(1, 5)) / 4)
    assert bleu(words, [other]) == pytest.approx(expected)


def test_bleu_hand_computed_with_brevity_penalty():
    hyp, ref = "the cat sat".split(), "the cat sat down".split()
    # precisions 3/3, 2/2, 1/1, 4-gram: 0 matches of 0 -> sentence too short -> 0
    assert bleu(hyp, [ref]) == 0.0
    hyp, ref = "the cat sat on".split(), "the cat sat on the mat".split()
    assert bleu(hyp, [ref]) == pytest.approx(math.exp(1 - 6 / 4))


def test_self_bleu_and_distinct():
    same = ["a b c d e"] * 3
    assert self_bleu(same) == pytest.approx(1.0)
    assert distinct_n(same, 1) == pytest.approx(5 / 15)
    diverse = ["a b c d e", "f g h i j", "k l m n o"]
    assert self_bleu(diverse) < 0.1 and distinct_n(diverse, 2) == 1.0
    assert math.isnan(self_bleu(["only one"]))


def test_continuation_nll_counts_only_the_continuation():
    model, tok = tiny_causal_lm("llama"), char_tokenizer()
    rows = continuation_nll(model, tok, "Hello ", ["world", "w", ""], batch_size=2)
    assert [r["tokens"] for r in rows] == [5, 1, 0] and [r["bytes"] for r in rows] == [5, 1, 0]
    assert rows[1]["nll"] > 0 and rows[0]["nll"] > rows[1]["nll"] and rows[2]["nll"] == 0


@pytest.mark.parametrize("arch", ["gpt2", "gemma3"])
def test_continuation_nll_equals_full_logits(arch):
    import torch

    model, tok = tiny_causal_lm(arch), char_tokenizer()
    prefix, cont = "Good ", "morning"
    got = continuation_nll(model, tok, prefix, [cont, "day"])[0]["nll"]
    ids = tok(prefix + cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    n = len(prefix)
    expected = -sum(logp[i - 1, ids[i]].item() for i in range(n, len(ids)))
    assert got == pytest.approx(expected, rel=1e-4)


def test_coverage_counts_word_prefixes():
    from terse.superposed.metrics import coverage

    truth = " He said, that the door"
    assert coverage([" he said that it", " she went"], truth, 1)
    assert coverage([" she went", " He said, that"], truth, 3)
    assert not coverage([" he says that"], truth, 2)
    assert not coverage([" he"], " he", 2)  # the truth is shorter than n words
    assert not coverage([], truth, 1)
