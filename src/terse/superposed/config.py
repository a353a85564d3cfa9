"""Superposed Decoding hyperparameters (defaults: Shen et al. 2024, ``params/p15_d3_mixed.json``)."""

from __future__ import annotations

import dataclasses
import math

from terse.core.config import FrozenConfig
from terse.core.errors import ConfigError

PAPER_NGRAM_LAMBDAS = (0.01, 0.04, 0.15, 0.18, 0.12)  # orders 2..6 (App. B; sum 0.5, not renormalised)
SELECTIONS = ("beam", "lineage", "branches")
# How the n-gram is switched on over a setting that has it off (e.g. when an index is named
# explicitly): the weight and floor measured as "default + n-gram" by the benchmark.
NGRAM_ON = {"ngram_weight": 0.3, "ngram_floor": 1e-3}


@dataclasses.dataclass(frozen=True)
class SuperposedConfig(FrozenConfig):
    """How :func:`terse.superposed.superposed_decode` searches.

    Attributes:
        num_drafts: drafts kept and returned (paper: k).
        max_new_tokens: tokens generated per draft.
        ngram_weight: weight of the n-gram in the per-draft score (paper: alpha, Eq. 6):
            ``(1 - w) * log p_lm + w * log p_ngram``. 0 disables the n-gram.
        temperature: LM sharpening temperature (paper: tau).
        n_token_sample: LM tokens kept per step (top-n of the sharpened distribution,
            renormalised); ``None`` -> ``3 * num_drafts`` as in the official configs.
        ngram_lambdas: interpolation weights of n-gram orders 2, 3, ... (paper: lambda_n).
        ngram_floor: added to every candidate's n-gram probability; 0 (the paper) drops
            candidates the n-gram has not seen after a draft's context, a small floor only
            demotes them.
        fallback_penalty: when every candidate of a draft has zero n-gram probability, its
            candidates score ``(1 - w) * log p_lm - fallback_penalty`` (paper: -log delta, Eq. 7).
        reset_every: if set, every this many steps one draft is sampled (by its weight) and
            the superposition restarts from it (paper §5.3, for long generations).
        selection: how drafts are extended each step. ``"beam"`` (the paper): the best k
            (draft, token) pairs over all drafts, so drafts may all descend from the best one;
            ``"lineage"``: each draft extends only itself, keeping the k distinct first tokens;
            ``"branches"``: like lineage, but each draft is decoded exactly in its own row of
            a batched pass instead of sharing one superposed row (k rows cost more than one:
            1.6x greedy at k=3 and 1.3x at k=5 on a 2-core CPU, results/superposed/bench.json).
        superposition_sharpness: exponent on the draft probabilities that weight the
            superposed input (1 = the paper's gamma_i = p_i / sum p_j; 0 = uniform).
        branch_within: (lineage, branches) the drafts split from one shared start at the
            latest at this generated token (1: on the first token, k distinct first tokens).
        branch_min_ratio: (lineage, branches) before that, split as soon as the k-th best
            next token is at least this fraction as likely as the best one (T = 1), so drafts
            share the tokens the model is sure of and differ where it hesitates.
        diversity_penalty: (lineage, branches) score subtracted from a token that a better draft
            already took at the same step.
        seed: seeds the reset sampling (decoding is otherwise deterministic).
        add_special_tokens: whether the tokenizer adds its special tokens (e.g. BOS) to the prompt.
    """

    num_drafts: int = 3
    max_new_tokens: int = 10
    ngram_weight: float = 0.0
    temperature: float = 0.06
    n_token_sample: int | None = None
    ngram_lambdas: tuple[float, ...] = PAPER_NGRAM_LAMBDAS
    ngram_floor: float = 0.0
    fallback_penalty: float = 200.0
    reset_every: int | None = None
    selection: str = "branches"
    superposition_sharpness: float = 1.0
    branch_within: int = 3
    branch_min_ratio: float = 0.3
    diversity_penalty: float = 0.0
    seed: int = 0
    add_special_tokens: bool = False

    def __post_init__(self):
        object.__setattr__(self, "ngram_lambdas", tuple(float(x) for x in self.ngram_lambdas))
        if not isinstance(self.num_drafts, int) or self.num_drafts < 1:
            raise ConfigError(f"num_drafts must be a positive integer, got {self.num_drafts!r}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not 0.0 <= self.ngram_weight <= 1.0 or math.isnan(self.ngram_weight):
            raise ConfigError(f"ngram_weight must be in [0, 1], got {self.ngram_weight}")
        if self.ngram_weight == 1.0:
            raise ConfigError("ngram_weight 1 ignores the LM entirely; use a value below 1")
        if not self.temperature > 0 or math.isinf(self.temperature):
            raise ConfigError(f"temperature must be a positive number, got {self.temperature}")
        if self.n_token_sample is not None and (not isinstance(self.n_token_sample, int) or self.n_token_sample < 1):
            raise ConfigError(f"n_token_sample must be a positive integer or None, got {self.n_token_sample!r}")
        if self.n_token_sample is not None and self.n_token_sample < self.num_drafts:
            raise ConfigError(f"n_token_sample ({self.n_token_sample}) must be at least num_drafts ({self.num_drafts}) "
                             "so that the first step can start num_drafts distinct drafts")
        if not 1 <= len(self.ngram_lambdas) <= 7:
            raise ConfigError(f"ngram_lambdas must list weights for orders 2..n (1 to 7 values), got {len(self.ngram_lambdas)}")
        if any(not (x >= 0) or math.isinf(x) for x in self.ngram_lambdas) or sum(self.ngram_lambdas) <= 0:
            raise ConfigError(f"ngram_lambdas must be non-negative with a positive sum, got {self.ngram_lambdas}")
        if not 0 <= self.ngram_floor < 1:
            raise ConfigError(f"ngram_floor must be in [0, 1), got {self.ngram_floor}")
        if not self.fallback_penalty >= 0 or math.isinf(self.fallback_penalty):
            raise ConfigError(f"fallback_penalty must be a non-negative number, got {self.fallback_penalty}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if not 0 <= self.superposition_sharpness < math.inf:
            raise ConfigError(f"superposition_sharpness must be a non-negative number, got {self.superposition_sharpness}")
        if not isinstance(self.branch_within, int) or self.branch_within < 1:
            raise ConfigError(f"branch_within must be a positive integer, got {self.branch_within!r}")
        if not 0 <= self.branch_min_ratio <= 1:
            raise ConfigError(f"branch_min_ratio must be in [0, 1], got {self.branch_min_ratio}")
        if not 0 <= self.diversity_penalty < math.inf:
            raise ConfigError(f"diversity_penalty must be a non-negative number, got {self.diversity_penalty}")
        if self.reset_every is not None and self.selection == "branches":
            raise ConfigError("reset_every applies to a superposed pass; branches decode every draft in its own row")
        if self.reset_every is not None and (not isinstance(self.reset_every, int) or self.reset_every < 1):
            raise ConfigError(f"reset_every must be a positive integer or None, got {self.reset_every!r}")

    @classmethod
    def preset(cls, name: str, **changes) -> SuperposedConfig:
        """A named setting (:data:`PRESETS`) with ``changes`` applied: ``"default"`` (tuned
        for SmolLM2-135M on a dev split), ``"one-pass"`` (one superposed row) or ``"paper"``
        (Shen et al.'s main configuration)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; known presets are {sorted(PRESETS)}")
        return cls(**PRESETS[name]).replace(**changes)

    @property
    def tokens_per_step(self) -> int:
        return self.n_token_sample if self.n_token_sample is not None else 3 * self.num_drafts

    @property
    def uses_ngrams(self) -> bool:
        return self.ngram_weight > 0


# The defaults above are what benchmarks/tune_superposed.py chose for SmolLM2-135M on the
# dev split (results/superposed/tuning.json): exact branches that split where the model
# hesitates. "one-pass" is the best setting found that keeps a single superposed row (the
# cost of greedy decoding, but near-copy drafts at 135M); "paper" is the paper's main
# configuration (params/p15_d3_mixed.json).
PRESETS: dict[str, dict] = {
    "default": {},
    "one-pass": {"selection": "lineage", "ngram_weight": 0.0, "superposition_sharpness": 0.3, "branch_within": 1,
                 "branch_min_ratio": 0.0},
    "paper": {"selection": "beam", "ngram_weight": 0.54, "temperature": 0.06, "n_token_sample": None,
              "ngram_lambdas": PAPER_NGRAM_LAMBDAS, "ngram_floor": 0.0, "superposition_sharpness": 1.0,
              "diversity_penalty": 0.0, "branch_within": 1, "branch_min_ratio": 0.0},
}
