"""The Superposed Decoding object: a causal LM with its tokenizer, n-gram index and setting.

    >>> from terse.superposed import load_drafter
    >>> drafter = load_drafter()                 # SmolLM2-135M-Instruct, offline
    >>> out = drafter.generate("The old house stood", num_drafts=3, max_new_tokens=5)
    >>> len(out.drafts), out.stats.lm_forwards   # 3 drafts from 5 (batched) forwards
    (3, 5)

:func:`terse.superposed.superposed_generate` is the same call for a model and tokenizer
loaded elsewhere.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from terse.superposed.config import SuperposedConfig
from terse.superposed.decoding import PromptError, SuperposedOutput, eos_ids, resolve_ngrams, superposed_decode
from terse.superposed.ngrams import NGramIndex, tokenizer_fingerprint


class Drafter:
    """k drafts per prompt from one decoding pass of ``model``.

    Args:
        model: any Hugging Face causal LM.
        tokenizer: its tokenizer.
        ngrams: an :class:`NGramIndex` or a folder holding one; ``None`` uses the default
            index for this tokenizer (:func:`terse.superposed.models.default_ngram_dir`),
            loaded the first time a setting with ``ngram_weight > 0`` needs it. A setting
            with ``ngram_weight == 0`` (the default) never reads an index.
        config: the setting every :meth:`generate` starts from.
    """

    def __init__(self, model, tokenizer, ngrams: NGramIndex | str | Path | None = None,
                 config: SuperposedConfig | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.config = config or SuperposedConfig()
        self._ngrams_arg = ngrams
        self._index: NGramIndex | None = None
        self._index_name: str | None = None
        self._resolved = False
        if ngrams is not None or self.config.uses_ngrams:
            self._resolve()  # an index named explicitly is checked against the tokenizer now

    def _resolve(self) -> NGramIndex | None:
        if not self._resolved:
            self._index, self._index_name = resolve_ngrams(self._ngrams_arg, tokenizer_fingerprint(self.tokenizer))
            self._resolved = True
        return self._index

    @property
    def ngram_index(self) -> str | None:
        """Where the n-gram index in use came from (None until one is loaded)."""
        return self._index_name

    def generate(self, prompt: str, num_drafts: int | None = None, config: SuperposedConfig | None = None,
                 **overrides) -> SuperposedOutput:
        """Drafts continuing ``prompt``, best first (``.drafts[i].text``), with decode stats.

        ``num_drafts`` and ``overrides`` (``max_new_tokens=20``, ``ngram_weight=0.3``, ...)
        replace fields of ``config`` (default: the drafter's setting) for this call only.
        """
        if not isinstance(prompt, str):
            raise PromptError(f"the prompt must be a string, got {type(prompt).__name__}")
        if not prompt:
            raise PromptError("the prompt is empty")
        if num_drafts is not None:
            overrides["num_drafts"] = num_drafts
        config = (config or self.config).replace(**overrides)
        index = self._resolve() if config.uses_ngrams else None
        if index is None:
            config = config.replace(ngram_weight=0.0)
        ids = self.tokenizer(prompt, add_special_tokens=config.add_special_tokens)["input_ids"]
        if not ids:
            raise PromptError("the prompt encodes to no tokens")
        output = superposed_decode(self.model, ids, config, index, eos_ids(self.model, self.tokenizer))
        output.drafts = [dataclasses.replace(d, text=self.tokenizer.decode(list(d.token_ids), skip_special_tokens=True))
                         for d in output.drafts]
        output.ngram_index = self._index_name if index is not None else None
        return output


def load_drafter(model: str | Path | None = None, ngrams: NGramIndex | str | Path | None = None,
                 preset: str = "default", cache: bool = True, **overrides) -> Drafter:
    """Load a causal LM (default SmolLM2-135M-Instruct, offline) as a :class:`Drafter`.

    ``preset`` names the setting (``"default"``, ``"one-pass"``, ``"paper"``; see
    :meth:`SuperposedConfig.preset`) and ``overrides`` change its fields. ``model``,
    ``cache``: as :func:`terse.superposed.models.load_model`; ``ngrams``: as :class:`Drafter`.
    """
    from terse.superposed.models import load_model

    config = SuperposedConfig.preset(preset, **overrides)
    lm, tokenizer = load_model(model, cache=cache)
    return Drafter(lm, tokenizer, ngrams, config)


def superposed_generate(model, tokenizer, prompt: str, num_drafts: int = 3,
                        ngrams: NGramIndex | str | Path | None = None, config: SuperposedConfig | None = None,
                        **overrides) -> SuperposedOutput:
    """k drafts for ``prompt``: ``Drafter(model, tokenizer, ngrams, config).generate(prompt, num_drafts, **overrides)``."""
    return Drafter(model, tokenizer, ngrams, config).generate(prompt, num_drafts, **overrides)
