"""Tiny random causal LMs of several architectures (built from configs, no downloads)."""

from __future__ import annotations

import torch

VOCAB = 96
ARCHITECTURES = ("gpt2", "llama", "qwen2", "gemma3")


def tiny_causal_lm(arch: str, seed: int = 0, vocab: int = VOCAB, max_positions: int = 64):
    import transformers as tf

    common = dict(vocab_size=vocab, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    if arch == "gpt2":
        config = tf.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=max_positions, **common)
    elif arch == "llama":
        config = tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, max_position_embeddings=max_positions, **common)
    elif arch == "qwen2":
        config = tf.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, max_position_embeddings=max_positions, **common)
    elif arch == "gemma3":
        config = tf.Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, head_dim=8, max_position_embeddings=max_positions,
                                     sliding_window=16, **common)
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # sharper than init so that drafts differ in interesting ways
        model.get_output_embeddings().weight.mul_(8.0) if not config.tie_word_embeddings else None
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()
