"""Superposed Decoding on tiny random models of several architectures (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.fixtures.superposed import ARCHITECTURES, VOCAB, char_tokenizer, tiny_causal_lm

from terse.core.errors import ConfigError, ModelMismatchError
from terse.superposed.config import SuperposedConfig
from terse.superposed.decoding import PromptError, _superposed_input, superposed_decode
from terse.superposed.drafter import Drafter, superposed_generate
from terse.superposed.ngrams import NGramIndex, tokenizer_fingerprint

PROMPT = [5, 17, 33, 2, 9, 41, 41, 7]
PAPER = SuperposedConfig.preset("paper")
NO_NGRAMS = PAPER.replace(ngram_weight=0.0)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model(request):
    return tiny_causal_lm(request.param)


@pytest.fixture(scope="module")
def models():
    return {arch: tiny_causal_lm(arch) for arch in ARCHITECTURES}


def toy_index(seed=0, n=4000, vocab=VOCAB, fingerprint="toy"):
    rng = np.random.default_rng(seed)
    # The prompt recurs in the corpus with varied continuations, so its contexts are seen.
    docs = [np.concatenate([PROMPT, rng.integers(0, vocab, 40)]) for _ in range(30)]
    docs.append(rng.integers(0, vocab, n))
    return NGramIndex.build(docs, vocab, fingerprint, max_order=6)


@pytest.mark.parametrize("max_new_tokens", [1, 12])
def test_one_draft_without_ngrams_is_greedy(model, max_new_tokens):
    greedy = model.generate(torch.tensor([PROMPT]), max_new_tokens=max_new_tokens, do_sample=False)[0, len(PROMPT):]
    out = superposed_decode(model, PROMPT, NO_NGRAMS.replace(num_drafts=1, max_new_tokens=max_new_tokens))
    assert list(out.drafts[0].token_ids) == greedy.tolist()
    assert out.stats.lm_forwards == max_new_tokens  # prefill + one forward per further token


class Recorder:
    """Wraps a model and records every forward call's inputs and last-position logits."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, **kwargs):
        out = self.model(**kwargs)
        self.calls.append({k: kwargs.get(k) for k in ("input_ids", "inputs_embeds")} | {"logits": out.logits[0, -1].clone()})
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_cached_steps_equal_an_uncached_forward(model):
    rec = Recorder(model)
    out = superposed_decode(rec, PROMPT, NO_NGRAMS.replace(num_drafts=3, max_new_tokens=8, temperature=1.0))
    assert len(rec.calls) == out.stats.lm_forwards == 8
    with torch.no_grad():
        embeds = [model.get_input_embeddings()(rec.calls[0]["input_ids"])[0]]
        embeds += [call["inputs_embeds"][0] for call in rec.calls[1:]]
        full = torch.cat(embeds)  # (T, d): prompt embeddings, then one superposed input per step
        uncached = model(inputs_embeds=full[None], use_cache=False).logits[0]
    positions = [len(PROMPT) - 1 + i for i in range(len(rec.calls))]
    cached = torch.stack([call["logits"] for call in rec.calls])
    torch.testing.assert_close(cached, uncached[positions], atol=2e-4, rtol=1e-4)
    # The steps really were superposed (several distinct drafts fed at once).
    assert out.stats.gamma_entropy and max(out.stats.gamma_entropy) > 0.01


def test_superposed_input_weights(models):
    embed = models["gemma3"].get_input_embeddings()  # scales inside the module: must be applied, not indexed
    with torch.no_grad():
        same = _superposed_input(embed, np.array([7, 7, 7]), np.array([0.2, 0.3, 0.5]))
        assert torch.equal(same[0, 0], embed(torch.tensor([7]))[0])
        mixed = _superposed_input(embed, np.array([7, 7, 9]), np.array([0.2, 0.3, 0.5]))
        e = embed(torch.tensor([7, 9]))
        torch.testing.assert_close(mixed[0, 0], 0.5 * e[0] + 0.5 * e[1])


@pytest.mark.parametrize("preset", ["default", "paper"])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_exactly_k_distinct_drafts_ranked_by_normalized_score(models, k, preset):
    index = toy_index()
    for model in models.values():
        config = SuperposedConfig.preset(preset, num_drafts=k, max_new_tokens=6)
        out = superposed_decode(model, PROMPT, config, ngrams=index)
        assert len(out.drafts) == k
        assert len({d.token_ids for d in out.drafts}) == k
        assert all(len(d.token_ids) == 6 for d in out.drafts)
        norm = [d.normalized_score for d in out.drafts]
        assert norm == sorted(norm, reverse=True)
        assert out.stats.lm_forwards == 6 and (out.stats.ngram_rows > 0) == config.uses_ngrams


def test_first_step_holds_top_k_interpolated_tokens(models):
    index = toy_index()
    config = PAPER.replace(num_drafts=3, max_new_tokens=1)
    for model in models.values():
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([PROMPT])).logits[0, -1].double()
        top = torch.topk(logits, config.tokens_per_step)
        lm = torch.log_softmax(top.values / config.temperature, 0).numpy()
        p = index.lookup(np.array([PROMPT[-5:]]), top.indices.numpy()[None], config.ngram_lambdas).probs[0]
        with np.errstate(divide="ignore"):
            score = (1 - config.ngram_weight) * lm + config.ngram_weight * np.log(p)
        assert np.isfinite(score).sum() >= 3
        expected = top.indices.numpy()[np.argsort(-score, kind="stable")[:3]]
        out = superposed_decode(model, PROMPT, config, ngrams=index)
        assert [d.token_ids[0] for d in out.drafts] == expected.tolist()
        np.testing.assert_allclose([d.score for d in out.drafts], np.sort(score)[::-1][:3], rtol=1e-5)


def test_ngram_filter_changes_drafts_and_fallback_keeps_k(models):
    model = models["llama"]
    plain = superposed_decode(model, PROMPT, NO_NGRAMS.replace(max_new_tokens=6))
    filtered = superposed_decode(model, PROMPT, PAPER.replace(max_new_tokens=6), ngrams=toy_index())
    assert [d.token_ids for d in plain.drafts] != [d.token_ids for d in filtered.drafts]
    # An index in which no context of ours occurs: every row takes the -penalty fallback.
    foreign = NGramIndex.build([[95, 95, 95, 95]], VOCAB, "toy")
    out = superposed_decode(model, PROMPT, PAPER.replace(max_new_tokens=4), ngrams=foreign)
    assert out.stats.fallback_rows == out.stats.ngram_rows > 0
    assert len({d.token_ids for d in out.drafts}) == 3
    # Fallback scores are (1 - w) * log p_lm - penalty: within a step the normaliser and the
    # penalty are shared by all drafts, so the search equals n-gram-free decoding at tau / (1 - w).
    config = PAPER
    same = NO_NGRAMS.replace(max_new_tokens=4, temperature=config.temperature / (1 - config.ngram_weight))
    assert [d.token_ids for d in out.drafts] == [d.token_ids for d in superposed_decode(model, PROMPT, same).drafts]


def test_end_of_sequence_moves_drafts_to_the_finished_pool(models):
    model = models["qwen2"]
    first = superposed_decode(model, PROMPT, NO_NGRAMS.replace(num_drafts=1, max_new_tokens=1)).drafts[0].token_ids[0]
    # The best first token is EOS: that draft is finished (and still ranks first); the two
    # alive drafts continue with the next-best tokens.
    out = superposed_decode(model, PROMPT, NO_NGRAMS.replace(num_drafts=3, max_new_tokens=1), eos_token_ids=[first])
    assert out.drafts[0].token_ids == (first,) and out.drafts[0].finished
    assert all(not d.finished and d.token_ids[0] != first for d in out.drafts[1:])
    out = superposed_decode(model, PROMPT, NO_NGRAMS.replace(num_drafts=3, max_new_tokens=6, temperature=1.0),
                            eos_token_ids=[first])
    for d in out.drafts:
        assert first not in d.token_ids[:-1] and d.finished == (d.token_ids[-1] == first)
        assert d.finished or len(d.token_ids) == 6


def test_resets_restart_from_one_draft(models):
    model = models["gpt2"]
    config = NO_NGRAMS.replace(num_drafts=3, max_new_tokens=8, reset_every=3, temperature=1.0)
    out = superposed_decode(model, PROMPT, config)
    assert out.stats.resets == 2
    prefixes = {d.token_ids[:6] for d in out.drafts}
    assert len(prefixes) == 1 and len({d.token_ids for d in out.drafts}) == 3
    again = superposed_decode(model, PROMPT, config)
    assert [d.token_ids for d in again.drafts] == [d.token_ids for d in out.drafts]  # seeded


def test_bad_inputs(models):
    model = models["llama"]
    with pytest.raises(PromptError, match="empty"):
        superposed_decode(model, [], NO_NGRAMS)
    with pytest.raises(PromptError, match="context of 64 tokens"):
        superposed_decode(model, [1] * 60, NO_NGRAMS)
    with pytest.raises(ConfigError, match="larger than the model's vocabulary"):
        superposed_decode(model, PROMPT, NO_NGRAMS.replace(num_drafts=VOCAB + 1, n_token_sample=VOCAB + 1))
    with pytest.raises(PromptError, match="token ids"):
        superposed_decode(model, [VOCAB + 3], NO_NGRAMS)
    with pytest.raises(ConfigError, match="needs an n-gram index"):
        superposed_decode(model, PROMPT, PAPER)
    for bad in ({"temperature": 0}, {"ngram_weight": 1.5}, {"num_drafts": 0}, {"n_token_sample": 2, "num_drafts": 3},
                {"ngram_lambdas": ()}, {"reset_every": 0}, {"max_new_tokens": 0}):
        with pytest.raises(ValueError):
            SuperposedConfig(**bad)


def test_generate_from_text(models, monkeypatch, tmp_path):
    monkeypatch.setenv("TERSE_CACHE", str(tmp_path))
    model, tok = models["llama"], char_tokenizer()
    out = superposed_generate(model, tok, "Hello there", num_drafts=3, max_new_tokens=5)
    assert out.ngram_index is None  # no default index for this tokenizer: n-grams off
    assert len(out.drafts) == 3 and all(len(d.text) == 5 for d in out.drafts)
    index = NGramIndex.build([tok("Hello there, general. Hello there, friend.")["input_ids"]], VOCAB,
                             tokenizer_fingerprint(tok))
    out = superposed_generate(model, tok, "Hello there", ngrams=index, max_new_tokens=3, ngram_weight=0.3)
    assert out.ngram_index == "in-memory index"
    with pytest.raises(ModelMismatchError, match="different tokenizer"):
        superposed_generate(model, tok, "Hello", ngrams=toy_index())
    with pytest.raises(PromptError, match="empty"):
        superposed_generate(model, tok, "")
    with pytest.raises(ConfigError):
        superposed_generate(model, tok, "Hi", num_drafts=0)


def test_drafter_owns_its_setting_and_index(models, monkeypatch, tmp_path):
    monkeypatch.setenv("TERSE_CACHE", str(tmp_path))
    model, tok = models["llama"], char_tokenizer()
    index = NGramIndex.build([tok("Hello there, general. Hello there, friend.")["input_ids"]], VOCAB,
                             tokenizer_fingerprint(tok))
    drafter = Drafter(model, tok, index, SuperposedConfig.preset("paper", max_new_tokens=3))
    assert drafter.ngram_index == "in-memory index"
    out = drafter.generate("Hello there")
    assert out.ngram_index == "in-memory index" and len(out.drafts) == 3
    # a per-call setting without the n-gram, and the same call through the module function
    plain = drafter.generate("Hello there", num_drafts=2, config=SuperposedConfig(max_new_tokens=3))
    assert plain.ngram_index is None and len(plain.drafts) == 2
    same = superposed_generate(model, tok, "Hello there", num_drafts=2, config=SuperposedConfig(max_new_tokens=3))
    assert [d.token_ids for d in same.drafts] == [d.token_ids for d in plain.drafts]
    # the paper setting without any index for this tokenizer decodes without n-grams
    assert Drafter(model, tok, config=SuperposedConfig.preset("paper")).generate("Hi").ngram_index is None
    with pytest.raises(ConfigError, match="unknown keys"):
        drafter.generate("Hi", beams=2)


def test_fewer_admissible_candidates_than_drafts_still_gives_k(models):
    model = models["gemma3"]
    top1 = superposed_decode(model, PROMPT, NO_NGRAMS.replace(num_drafts=1, max_new_tokens=1)).drafts[0].token_ids[0]
    # Only "PROMPT[-1] -> top1" is in the corpus: at the first step one candidate has n-gram
    # support and the others have none; the remaining slots are filled by the fallback score.
    index = NGramIndex.build([[PROMPT[-1], top1]], VOCAB, "toy", max_order=2)
    config = PAPER.replace(num_drafts=3, max_new_tokens=1, ngram_lambdas=(0.5,))
    out = superposed_decode(model, PROMPT, config, ngrams=index)
    assert len({d.token_ids for d in out.drafts}) == 3 and all(np.isfinite(d.score) for d in out.drafts)
    assert out.drafts[0].token_ids == (top1,)
    assert out.drafts[0].score > out.drafts[1].score + config.fallback_penalty / 2  # fill-ins carry the penalty
    # Longer drafts: the supported draft's children outrank the penalised ones (beam behaviour).
    out = superposed_decode(model, PROMPT, config.replace(max_new_tokens=3), ngrams=index)
    assert len({d.token_ids for d in out.drafts}) == 3 and all(d.token_ids[0] == top1 for d in out.drafts)


LINEAGE = NO_NGRAMS.replace(selection="lineage")  # the paper's tau and gamma, lineage selection


def test_lineage_drafts_keep_their_distinct_first_tokens(models):
    index = toy_index()
    for model in models.values():
        first = superposed_decode(model, PROMPT, LINEAGE.replace(max_new_tokens=1))
        out = superposed_decode(model, PROMPT, LINEAGE.replace(max_new_tokens=8))
        # Each draft extends only itself: the k first tokens of step 1 all survive to the end.
        assert sorted(d.token_ids[0] for d in out.drafts) == sorted(d.token_ids[0] for d in first.drafts)
        assert len({d.token_ids[0] for d in out.drafts}) == 3 and all(len(d.token_ids) == 8 for d in out.drafts)
        with_ngrams = superposed_decode(model, PROMPT, LINEAGE.replace(ngram_weight=0.5, max_new_tokens=8), ngrams=index)
        assert len({d.token_ids[0] for d in with_ngrams.drafts}) == 3


def test_lineage_with_one_draft_is_greedy(model):
    greedy = model.generate(torch.tensor([PROMPT]), max_new_tokens=6, do_sample=False)[0, len(PROMPT):]
    out = superposed_decode(model, PROMPT, LINEAGE.replace(num_drafts=1, max_new_tokens=6))
    assert list(out.drafts[0].token_ids) == greedy.tolist()


def test_lineage_diversity_penalty_separates_same_step_tokens(models):
    model = models["qwen2"]
    config = LINEAGE.replace(max_new_tokens=8, temperature=1.0, superposition_sharpness=0.0)
    plain = superposed_decode(model, PROMPT, config)
    shared = sum(len({d.token_ids[t] for d in plain.drafts}) < 3 for t in range(8))
    assert shared > 0  # without the penalty the drafts often agree (the case the penalty is for)
    apart = superposed_decode(model, PROMPT, config.replace(diversity_penalty=1e6))
    for t in range(8):  # a prohibitive penalty: no two drafts take the same token at a step
        assert len({d.token_ids[t] for d in apart.drafts}) == 3


def test_superposition_sharpness_zero_weights_drafts_equally(models):
    out = superposed_decode(models["llama"], PROMPT, LINEAGE.replace(max_new_tokens=5, superposition_sharpness=0.0))
    np.testing.assert_allclose(out.stats.gamma_entropy, np.log(3), rtol=1e-12)
    paper = superposed_decode(models["llama"], PROMPT, LINEAGE.replace(max_new_tokens=5))
    assert max(paper.stats.gamma_entropy) < np.log(3)


def test_presets():
    paper = SuperposedConfig.preset("paper")
    assert (paper.selection, paper.ngram_weight, paper.temperature, paper.tokens_per_step) == ("beam", 0.54, 0.06, 9)
    assert SuperposedConfig.preset("default", num_drafts=5) == SuperposedConfig(num_drafts=5)
    with pytest.raises(ValueError, match="unknown preset"):
        SuperposedConfig.preset("fastest")
    for bad in ({"selection": "greedy"}, {"superposition_sharpness": -1}, {"diversity_penalty": float("inf")}):
        with pytest.raises(ValueError):
            SuperposedConfig(**bad)


def test_when_every_draft_ends_the_finished_pool_is_returned(models):
    for name, model in models.items():
        for selection in ("beam", "lineage", "branches"):
            config = NO_NGRAMS.replace(num_drafts=1, max_new_tokens=4, selection=selection)
            first, second = superposed_decode(model, PROMPT, config).drafts[0].token_ids[:2]
            if first == second:
                continue
            # Every token but the first one ends the draft: the only draft ends at step 2.
            out = superposed_decode(model, PROMPT, config, eos_token_ids=sorted(set(range(VOCAB)) - {first}))
            assert [(d.token_ids, d.finished) for d in out.drafts] == [((first, second), True)], name


@pytest.mark.parametrize("k", [1, 3])
def test_branches_are_exact_greedy_continuations_of_distinct_first_tokens(model, k):
    config = NO_NGRAMS.replace(selection="branches", num_drafts=k, max_new_tokens=6)
    out = superposed_decode(model, PROMPT, config)
    assert len(out.drafts) == k and len({d.token_ids[0] for d in out.drafts}) == k
    assert out.stats.lm_forwards == 6  # one batched forward per step
    firsts = superposed_decode(model, PROMPT, LINEAGE.replace(num_drafts=k, max_new_tokens=1)).drafts
    assert sorted(d.token_ids[0] for d in out.drafts) == sorted(d.token_ids[0] for d in firsts)
    for d in out.drafts:
        alone = model.generate(torch.tensor([PROMPT + [d.token_ids[0]]]), max_new_tokens=5, do_sample=False)
        assert list(d.token_ids[1:]) == alone[0, len(PROMPT) + 1:].tolist()


def test_branches_with_ngrams_and_eos(models):
    index = toy_index()
    for model in models.values():
        config = PAPER.replace(selection="branches", ngram_floor=1e-3, max_new_tokens=6)
        out = superposed_decode(model, PROMPT, config, ngrams=index)
        assert len({d.token_ids[0] for d in out.drafts}) == 3 and out.stats.ngram_rows > 0
    model = models["qwen2"]
    plain = superposed_decode(model, PROMPT, NO_NGRAMS.replace(selection="branches", max_new_tokens=6)).drafts
    # The second draft's third token ends it; the others (if they never produce it) run to the end.
    end = plain[1].token_ids[2]
    out = superposed_decode(model, PROMPT, NO_NGRAMS.replace(selection="branches", max_new_tokens=6),
                            eos_token_ids=[end])
    for d in out.drafts:
        assert d.finished == (end in d.token_ids) and (d.finished or len(d.token_ids) == 6)
    with pytest.raises(ValueError, match="reset_every"):
        SuperposedConfig(selection="branches", reset_every=2)


@pytest.mark.parametrize("selection", ["lineage", "branches"])
def test_drafts_split_where_the_model_hesitates(models, selection):
    model = models["llama"]
    config = NO_NGRAMS.replace(selection=selection, max_new_tokens=6, temperature=1.0)
    # A ratio of 1 is never met (ties aside): the drafts share a greedy start and split on token 3.
    late = superposed_decode(model, PROMPT, config.replace(branch_within=3, branch_min_ratio=1.0)).drafts
    greedy = superposed_decode(model, PROMPT, config.replace(num_drafts=1)).drafts[0].token_ids
    assert all(d.token_ids[:2] == greedy[:2] for d in late) and len({d.token_ids[2] for d in late}) == 3
    # A ratio of 0 is always met: the split is on the first token, as with branch_within=1.
    early = superposed_decode(model, PROMPT, config.replace(branch_within=3, branch_min_ratio=0.0)).drafts
    assert [d.token_ids for d in early] == [d.token_ids for d in superposed_decode(model, PROMPT, config).drafts]
    with pytest.raises(ValueError):
        config.replace(branch_within=0)
