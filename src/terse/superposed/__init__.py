"""Superposed Decoding (Shen et al., NeurIPS 2024): k drafts from one autoregressive pass of
any Hugging Face causal LM, with n-gram filtering.

    >>> from terse.superposed import load_drafter
    >>> drafter = load_drafter()                 # SmolLM2-135M-Instruct, offline
    >>> out = drafter.generate("The old house stood", num_drafts=3, max_new_tokens=5)
    >>> len(out.drafts), out.stats.lm_forwards   # 3 drafts from 5 (batched) forwards
    (3, 5)

Names are resolved lazily so ``import terse.superposed`` does not import torch or transformers.
"""

from terse.core.exports import lazy_exports

_EXPORTS = {
    "SuperposedConfig": "terse.superposed.config",
    "Draft": "terse.superposed.decoding",
    "DecodeStats": "terse.superposed.decoding",
    "SuperposedOutput": "terse.superposed.decoding",
    "PromptError": "terse.superposed.decoding",
    "superposed_decode": "terse.superposed.decoding",
    "Drafter": "terse.superposed.drafter",
    "load_drafter": "terse.superposed.drafter",
    "superposed_generate": "terse.superposed.drafter",
    "PRESETS": "terse.superposed.config",
    "NGramIndex": "terse.superposed.ngrams",
    "tokenizer_fingerprint": "terse.superposed.ngrams",
    "build_ngram_index": "terse.superposed.corpus",
    "load_model": "terse.superposed.models",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
