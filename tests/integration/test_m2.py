"""M2 over compressed tokens: training, evaluation in bits/byte, persistence, generation."""

from __future__ import annotations

import math

import pytest
import torch

from terse.core.errors import ArtifactError, ConfigError
from terse.nn.gpt import GPT, GPTConfig
from terse.textcomp.equal_info import EqualInfoConfig, EqualInfoTokenizer
from terse.textcomp.m2 import (
    M2TrainConfig,
    evaluate_m2,
    generate,
    load_m2,
    m2_config,
    m2_flops_per_byte,
    sample_examples,
    tokenize_examples,
    train_m2,
)
from terse.textcomp.tokenizers import ByteTokenizer

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness, it was the epoch of belief. ") * 12


def test_two_level_vocab_is_an_exact_distribution():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2, window=8, two_level_vocab=True))
    context = torch.tensor([[3, 15, 7]])
    # the loss of every possible next id, as probabilities, must sum to 1
    probs = [math.exp(-model(context, torch.tensor([[15, 7, t]])).item() * 3 + model(context[:, :2], torch.tensor(
        [[15, 7]])).item() * 2) for t in range(16)]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert 0 <= int(model.sample_next(context)[0]) < 16
    with pytest.raises(ConfigError, match="square"):
        GPTConfig(vocab_size=257, two_level_vocab=True)


def test_train_evaluate_generate(tiny_m1, tmp_path):
    examples = [TEXT[i:i + 256] for i in range(0, len(TEXT), 256)]
    assert sample_examples(examples, 600, seed=1) == sample_examples(examples, 600, seed=1)
    config = M2TrainConfig(size="s", train_bytes=4000, seq_len=16, batch_size=4, eval_sequences=8, output="two-level")
    results = {}
    for tok in (ByteTokenizer(), EqualInfoTokenizer(tiny_m1, EqualInfoConfig(window_bits=16, token_bits=16))):
        data = tokenize_examples(tok, examples, cache_dir=tmp_path / "cache")
        again = tokenize_examples(tok, examples, cache_dir=tmp_path / "cache")  # from the cache
        assert (again.tokens == data.tokens).all() and again.num_bytes == data.num_bytes == len(TEXT)
        result = train_m2(tok, data, data, config, tmp_path / tok.name)
        results[tok.name] = result
        assert math.isfinite(result["bits_per_byte"]) and result["train_bytes"] >= 4000
        assert result["bytes_per_token"] == pytest.approx(data.bytes_per_token)
        model, loaded_tok, info = load_m2(tmp_path / tok.name / "model")
        assert loaded_tok.name == tok.name and info["result"]["method"] == tok.name
        evaluated = evaluate_m2(model, loaded_tok, examples, sequences=8)
        assert evaluated["bits_per_byte"] == pytest.approx(result["bits_per_byte"], rel=0.05)
        gen = generate(model, loaded_tok, 6, prompt="It was", seed=0)
        assert gen.steps == 6 and isinstance(gen.text, str)
    eq = results["equal_info_b16_v65536"]
    assert eq["steps_per_byte"] == pytest.approx(1 / eq["bytes_per_token"])
    assert results["bytes"]["flops_per_byte"] == 2.0 * m2_config("s", 256, 16).non_embedding_params()
    assert eq["flops_per_byte"] == pytest.approx(m2_flops_per_byte(
        m2_config("s", 65536, 16, "two-level"), eq["bytes_per_token"], 2.0 * tiny_m1.model.config.non_embedding_params()))


def test_bad_sizes_and_folders(tmp_path):
    with pytest.raises(ConfigError):
        m2_config("xl", 256, 16)
    with pytest.raises(ConfigError):
        m2_config("s", 256, 16, "hierarchical")
    assert m2_config("s", 65536, 16).two_level_vocab is False
    assert m2_config("s", 65536, 16, "two-level").two_level_vocab is True
    assert m2_config("s", 256, 16, "two-level").two_level_vocab is False
    with pytest.raises(ConfigError, match="size"):
        M2TrainConfig(size="xl")
    with pytest.raises(ArtifactError):
        load_m2(tmp_path)


def test_token_cache_is_keyed_by_the_tokenizer_config(tiny_m1, tmp_path):
    """Same name, different settings (segment cuts): never served each other's tokens."""
    examples = [TEXT[:300]]
    cut = EqualInfoTokenizer(tiny_m1, EqualInfoConfig(window_bits=32, token_bits=16, segment_bytes=7))
    whole = EqualInfoTokenizer(tiny_m1, EqualInfoConfig(window_bits=32, token_bits=16))
    assert cut.name == whole.name and cut.fingerprint() != whole.fingerprint()
    first = tokenize_examples(cut, examples, cache_dir=tmp_path)
    second = tokenize_examples(whole, examples, cache_dir=tmp_path)
    assert (second.tokens == whole.encode(examples[0])).all()
    assert len(first.tokens) != len(second.tokens)
