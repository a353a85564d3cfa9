"""Superposed Decoding (Shen et al., NeurIPS 2024): k drafts from one autoregressive pass of
any Hugging Face causal LM, with n-gram filtering.

    >>> from terse.superposed import load_model, superposed_generate      # doctest: +SKIP
    >>> model, tokenizer = load_model()          # SmolLM2-135M-Instruct, offline
    >>> out = superposed_generate(model, tokenizer, "The old house stood", num_drafts=3)
    >>> [d.text for d in out.drafts]

Names are resolved lazily so ``import terse.superposed`` does not import torch or transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SuperposedConfig": "terse.superposed.config",
    "Draft": "terse.superposed.decoding",
    "DecodeStats": "terse.superposed.decoding",
    "SuperposedOutput": "terse.superposed.decoding",
    "PromptError": "terse.superposed.decoding",
    "superposed_decode": "terse.superposed.decoding",
    "superposed_generate": "terse.superposed.decoding",
    "NGramIndex": "terse.superposed.ngrams",
    "tokenizer_fingerprint": "terse.superposed.ngrams",
    "build_ngram_index": "terse.superposed.corpus",
    "load_model": "terse.superposed.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'terse.superposed' has no attribute {name!r}")
