"""Tiny random causal LMs of several architectures (built from configs, no downloads)."""

from __future__ import annotations

import contextlib

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


def char_tokenizer(vocab: int = VOCAB):
    """A character-level fast tokenizer: printable ASCII -> ids 1..95, id 0 = [UNK]."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)][: vocab - 1]
    table = {"[UNK]": 0, **{ch: i + 1 for i, ch in enumerate(chars)}}
    backend = Tokenizer(models.WordLevel(table, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def save_tiny_model_dir(folder, arch: str = "llama", seed: int = 0):
    """A Hugging Face model directory (config, safetensors, tokenizer) for CLI tests."""
    model = tiny_causal_lm(arch, seed=seed)
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return folder


@contextlib.contextmanager
def serve_in_thread(arch: str, limits):
    """The autocomplete server on a free port with a tiny model, in a daemon thread."""
    import threading

    from terse.superposed.drafter import Drafter
    from terse.superposed.server import AutocompleteService, make_server

    service = AutocompleteService(Drafter(tiny_causal_lm(arch), char_tokenizer()), limits)
    srv = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
