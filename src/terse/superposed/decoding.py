"""Superposed Decoding: k drafts from one autoregressive pass of any HF causal LM.

Shen et al., "Superposed Decoding: Multiple Generations from a Single Autoregressive
Inference Pass", NeurIPS 2024 (arXiv 2405.18400).

One shared KV cache holds the prompt and then, per step, one *superposed* input: the
weighted sum of the k drafts' last-token embeddings (Eq. 4). The single next-token
distribution is shared by all drafts; each draft rescores its candidates with an n-gram
model over its own context (Eq. 5-7), and beam-search bookkeeping (tensor2tensor style, as
in the official code) keeps the best k distinct drafts. Only public HF APIs are used:
``model(inputs_embeds=..., past_key_values=..., use_cache=True)`` and
``get_input_embeddings()``.

``SuperposedConfig.selection`` picks how drafts grow: ``"beam"`` is the paper's rule above;
``"lineage"`` keeps one superposed row but lets each draft extend only itself; ``"branches"``
(the tuned default) gives each draft its own exact row of a batched pass after the drafts
split where the model hesitates (see :mod:`terse.superposed.config`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from terse.core.errors import ConfigError, TerseError
from terse.superposed.config import SuperposedConfig
from terse.superposed.ngrams import NGramIndex

log = logging.getLogger(__name__)


class PromptError(TerseError, ValueError):
    """The prompt cannot be decoded (empty, or too long for the model's context)."""


@dataclass(frozen=True)
class Draft:
    """One draft continuation.

    Attributes:
        token_ids: generated tokens (prompt excluded).
        score: cumulative interpolated, temperature-sharpened log-score (what the search ranks).
        normalized_score: ``score / len(token_ids)``; drafts are returned best first by it.
        finished: the draft ended with an end-of-sequence token.
        text: decoded text (filled by :meth:`terse.superposed.Drafter.generate`).
    """

    token_ids: tuple[int, ...]
    score: float
    normalized_score: float
    finished: bool = False
    text: str = ""


@dataclass
class DecodeStats:
    """What one decode cost and how the superposition behaved."""

    prompt_tokens: int = 0
    lm_forwards: int = 0
    steps: int = 0
    seconds: float = 0.0
    ngram_seconds: float = 0.0
    ngram_rows: int = 0
    fallback_rows: int = 0
    resets: int = 0
    gamma_entropy: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SuperposedOutput:
    drafts: list[Draft]
    stats: DecodeStats
    ngram_index: str | None = None


def context_limit(model) -> int | None:
    """The longest sequence the model's config allows, if it states one."""
    cfg = model.config
    cfg = getattr(cfg, "get_text_config", lambda: cfg)()
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _vocab_size(model) -> int:
    return int(model.get_output_embeddings().weight.shape[0]) if model.get_output_embeddings() is not None \
        else int(model.config.get_text_config().vocab_size)


def cache_argument(model) -> str:
    """Name of the forward argument that takes the KV cache: ``past_key_values`` in
    transformers 4.x, ``cache`` in recent 5.x (where the old name is deprecated)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params and "past_key_values" not in params else "past_key_values"


def _forward_params(model) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def output_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head on a few final hidden states ``(rows, d)`` -> ``(rows, V)`` float logits.

    Up to 16 rows it is computed as ``W @ h^T``: ``F.linear``'s few-row GEMM path is slow for
    a 49k x 576 head (34.5 ms vs 6.8 ms at 3 rows, results/superposed/rows.json).
    Gemma's final logit soft-capping is applied as the model does.
    """
    head = model.get_output_embeddings()
    if hidden.shape[0] <= 16:
        logits = torch.mm(head.weight, hidden.to(head.weight.dtype).t()).t()
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias
    else:  # longer inputs (the judge's continuations): the ordinary GEMM is the fast one
        logits = head(hidden)
    logits = logits.float()
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def returned_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _log_softmax_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _superposed_input(embed: torch.nn.Module, last_tokens: np.ndarray, gamma: np.ndarray) -> torch.Tensor:
    """sum_i gamma_i * E[x_i] as a (1, 1, d) input; drafts sharing a last token merge weights.

    The embedding *module* is applied (not its weight matrix) so models that scale
    embeddings inside it (Gemma 3) get exactly what ``input_ids`` would give them.
    """
    unique, inverse = np.unique(last_tokens, return_inverse=True)
    ids = torch.from_numpy(unique.astype(np.int64))
    vectors = embed(ids)  # (U, d)
    if unique.size == 1:  # every draft agrees: the input is that token's embedding, exactly
        return vectors[:1].unsqueeze(0)
    weights = np.bincount(inverse.ravel(), weights=gamma, minlength=unique.size)
    weights = torch.from_numpy(weights / weights.sum()).to(vectors.dtype)
    return (weights @ vectors).view(1, 1, -1)


@torch.inference_mode()
def superposed_decode(model, input_ids: Sequence[int], config: SuperposedConfig | None = None,
                      ngrams: NGramIndex | None = None, eos_token_ids: Sequence[int] = ()) -> SuperposedOutput:
    """Generate ``config.num_drafts`` drafts from one superposed autoregressive pass.

    Args:
        model: a Hugging Face causal LM (``*ForCausalLM``) in eval mode.
        input_ids: the prompt's token ids (non-empty).
        config: search hyperparameters (paper defaults when omitted).
        ngrams: n-gram index over the model's tokenizer; required when
            ``config.ngram_weight > 0`` (pass ``config.replace(ngram_weight=0)`` to go without).
        eos_token_ids: tokens that end a draft (it then moves to the finished pool).

    Returns:
        :class:`SuperposedOutput` with up to ``num_drafts`` drafts, best first by
        length-normalised score, and :class:`DecodeStats`.
    """
    config = config or SuperposedConfig()
    start_time = time.perf_counter()
    prompt = [int(t) for t in input_ids]
    if not prompt:
        raise PromptError("the prompt is empty (it must contain at least one token)")
    vocab = _vocab_size(model)
    k = config.num_drafts
    if k > vocab:
        raise ConfigError(f"num_drafts={k} is larger than the model's vocabulary ({vocab} tokens)")
    if min(prompt) < 0 or max(prompt) >= vocab:
        raise PromptError(f"prompt token ids must lie in [0, {vocab})")
    limit = context_limit(model)
    if limit is not None and len(prompt) + config.max_new_tokens > limit:
        raise PromptError(f"the prompt is {len(prompt)} tokens; with {config.max_new_tokens} new tokens it exceeds "
                          f"the model's context of {limit} tokens (shorten the prompt or ask for fewer tokens)")
    use_ngrams = config.uses_ngrams
    if use_ngrams and ngrams is None:
        raise ConfigError("ngram_weight > 0 needs an n-gram index (pass ngrams=..., or set ngram_weight=0)")
    lambdas = config.ngram_lambdas
    if use_ngrams and len(lambdas) > ngrams.max_context:
        lambdas = lambdas[:ngrams.max_context]
        log.warning("n-gram index stores orders up to %d: using the first %d lambdas", ngrams.max_order, len(lambdas))
    n_ctx = len(lambdas)
    weight = config.ngram_weight
    m = min(config.tokens_per_step, vocab)
    eos = np.array(sorted({int(t) for t in eos_token_ids}), dtype=np.int64)
    rng = np.random.default_rng(config.seed)
    stats = DecodeStats(prompt_tokens=len(prompt))
    embed = model.get_input_embeddings()
    cache_kw = cache_argument(model)
    decoder = model.get_decoder()
    decoder_cache_kw = cache_argument(decoder)

    # Prefill the prompt with ordinary token inputs (only the last position's logits are
    # needed; `logits_to_keep` skips the vocabulary projection of the others where supported).
    extra = {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(model) else {}
    out = model(input_ids=torch.tensor([prompt]), use_cache=True, **extra)
    stats.lm_forwards += 1
    past, logits = returned_cache(out), out.logits[:, -1]  # (rows, V): 1 row until branches split
    committed = len(prompt)  # tokens in the cache that are real (prompt + tokens fixed by resets)
    base = np.array(prompt, dtype=np.int64)  # real tokens shared by all drafts
    seqs = np.zeros((1, 0), dtype=np.int64)  # (A, t) alive drafts' tokens since `base`
    cum = np.zeros(1, dtype=np.float64)  # (A,) cumulative scores
    finished: list[tuple[np.ndarray, float]] = []

    for step in range(config.max_new_tokens):
        # LM candidates: the top-m tokens of the tau-sharpened distribution, renormalised;
        # one shared row (superposed) or one row per draft (branches).
        A = seqs.shape[0]
        top = torch.topk(logits.float(), m)
        cand = np.broadcast_to(top.indices.numpy().astype(np.int64), (A, m))  # (A, m)
        lm_lp = np.broadcast_to(_log_softmax_rows(top.values.double().numpy() / config.temperature), (A, m))
        score = lm_lp.copy()  # (A, m)
        fallback = None
        if use_ngrams:
            t0 = time.perf_counter()
            full = np.concatenate([np.broadcast_to(base, (A, base.size)), seqs], axis=1)  # (A, T)
            probs = ngrams.lookup(full[:, -n_ctx:], cand, lambdas).probs
            if config.ngram_floor:
                probs = probs + config.ngram_floor  # an unseen token is demoted, not dropped
            stats.ngram_seconds += time.perf_counter() - t0
            with np.errstate(divide="ignore"):
                score = (1 - weight) * lm_lp + weight * np.log(probs)  # -inf where p_ngram = 0
            fallback = (1 - weight) * lm_lp - config.fallback_penalty  # (A, m)
            dead = ~np.isfinite(score).any(axis=1)
            score[dead] = fallback[dead]
            stats.ngram_rows += A
            stats.fallback_rows += int(dead.sum())
        if config.selection in ("lineage", "branches"):
            # One draft splits into k when the k-th best token is at least branch_min_ratio as
            # likely as the best (T = 1), and at the latest at token branch_within.
            split = A == 1 and k > 1 and (step + 1 >= config.branch_within or np.exp(
                (lm_lp[0, min(k, m) - 1] - lm_lp[0, 0]) * config.temperature) >= config.branch_min_ratio)
            parents, tokens, new_cum = _lineage_step(cum, score, fallback, cand, k, config.diversity_penalty, split)
        else:
            parents, tokens, new_cum = _beam_step(cum, score, fallback, cand, k)
        is_eos = np.isin(tokens, eos) if eos.size else np.zeros(tokens.size, dtype=bool)
        # tensor2tensor bookkeeping: EOS candidates among the top 2k enter the finished pool,
        # the best k others stay alive.
        for p, t, s in zip(parents[:2 * k][is_eos[:2 * k]], tokens[:2 * k][is_eos[:2 * k]],
                           new_cum[:2 * k][is_eos[:2 * k]], strict=True):
            finished.append((np.concatenate([base[len(prompt):], seqs[p], [t]]), float(s)))  # relative to the prompt
        finished.sort(key=lambda item: item[1] / item[0].size, reverse=True)
        del finished[k:]
        alive = np.flatnonzero(~is_eos)[:k]
        stats.steps += 1
        if alive.size == 0:  # every draft has ended
            seqs, cum = seqs[:0], cum[:0]
            break
        seqs = np.concatenate([seqs[parents[alive]], tokens[alive, None]], axis=1)
        cum = new_cum[alive]
        if step == config.max_new_tokens - 1:
            break
        if config.selection == "branches":
            # Each draft in its own row: reorder/repeat/drop the cache rows like the drafts.
            past.batch_select_indices(torch.from_numpy(parents[alive]))
            out = decoder(input_ids=torch.from_numpy(seqs[:, -1:]), use_cache=True, **{decoder_cache_kw: past})
            stats.lm_forwards += 1
            past, logits = returned_cache(out), output_logits(model, out.last_hidden_state[:, -1])
            continue
        # gamma_i = p_i / sum_j p_j with p_i = exp(cumulative score) (Eq. 4); a sharpness
        # below 1 flattens it so that lower-ranked drafts still steer the shared stream.
        gamma = np.exp(config.superposition_sharpness * (cum - cum.max()))
        gamma /= gamma.sum()
        stats.gamma_entropy.append(float(-(gamma * np.log(np.maximum(gamma, 1e-300))).sum()))
        if config.reset_every and (step + 1) % config.reset_every == 0 and seqs.shape[0] > 1:
            # Reset (§5.3): sample one draft and continue from its real tokens.
            chosen = int(rng.choice(seqs.shape[0], p=gamma))
            superposed = past.get_seq_length() - committed  # drop the superposed inputs since the last reset
            if superposed > 0:
                past.crop(-superposed)  # negative = tokens to remove (transformers 4.x and 5.x)
            new = seqs[chosen]
            out = model(input_ids=torch.from_numpy(new[None]), use_cache=True, **{cache_kw: past})
            committed += new.size
            base = np.concatenate([base, new])
            seqs, cum = np.zeros((1, 0), dtype=np.int64), cum[chosen:chosen + 1]
            stats.resets += 1
        else:
            out = model(inputs_embeds=_superposed_input(embed, seqs[:, -1], gamma), use_cache=True, **{cache_kw: past})
        stats.lm_forwards += 1
        past, logits = returned_cache(out), out.logits[:, -1]

    generated_prefix = base[len(prompt):]
    pool = [(np.concatenate([generated_prefix, s]), float(c), False) for s, c in zip(seqs, cum, strict=True)]
    pool += [(f, s, True) for f, s in finished]
    pool.sort(key=lambda item: item[1] / max(item[0].size, 1), reverse=True)
    drafts = [Draft(token_ids=tuple(int(t) for t in toks), score=s, normalized_score=s / max(toks.size, 1), finished=fin)
              for toks, s, fin in pool[:k]]
    stats.seconds = time.perf_counter() - start_time
    return SuperposedOutput(drafts=drafts, stats=stats)


def _beam_step(cum: np.ndarray, score: np.ndarray, fallback: np.ndarray | None, cand: np.ndarray, k: int):
    """The paper's selection: the best (draft, token) pairs over all drafts, best first.

    Returns ``(parents, tokens, cumulative scores)`` of the ranked candidates; the caller
    keeps the first k that do not end the draft.
    """
    m = cand.shape[1]
    total = (cum[:, None] + score).ravel()  # (A*m,)
    finite = np.isfinite(total)
    if fallback is not None and finite.sum() < min(k, total.size):
        # Fewer admissible candidates than drafts: fill the rest by the fallback score so
        # that k distinct drafts survive (the paper leaves such slots at -inf).
        total = np.where(finite, total, (cum[:, None] + fallback).ravel())
    order = np.lexsort((-total, ~finite))  # admissible first, then by score, best first
    order = order[np.isfinite(total[order])]
    return order // m, cand.ravel()[order], total[order]


def _lineage_step(cum: np.ndarray, score: np.ndarray, fallback: np.ndarray | None, cand: np.ndarray, k: int,
                  diversity_penalty: float, split: bool):
    """Each draft extends only itself, so drafts keep the distinct tokens they split on.

    With ``split``, the single draft splits into k drafts on its k best tokens. Otherwise draft i
    (best first) takes its best candidate, less ``diversity_penalty`` for a token that a
    better draft already took at this step (Hamming diversity, as in diverse beam search).
    Every row of ``score`` has a finite entry (the n-gram fallback guarantees it).
    """
    if split:  # one parent, its k best tokens
        first = score[0]
        if fallback is not None and np.isfinite(first).sum() < k:
            first = np.where(np.isfinite(first), first, fallback[0])  # k drafts even where the n-gram knows few
        order = np.argsort(-first, kind="stable")
        return np.zeros(order.size, dtype=np.int64), cand[0][order], cum[0] + first[order]
    ranks = np.argsort(-cum, kind="stable")
    tokens = np.empty(cum.size, dtype=np.int64)
    totals = np.empty(cum.size, dtype=np.float64)
    taken: list[int] = []
    for i in ranks:
        row = score[i] - diversity_penalty * np.isin(cand[i], taken) if taken and diversity_penalty else score[i]
        j = int(np.argmax(row))
        tokens[i], totals[i] = cand[i][j], cum[i] + score[i][j]
        taken.append(int(cand[i][j]))
    return ranks, tokens[ranks], totals[ranks]


def eos_ids(model, tokenizer=None) -> list[int]:
    """End-of-sequence ids from the model's generation config and the tokenizer."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for source in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(x) for x in source)
    return sorted(ids)


@functools.lru_cache(maxsize=4)
def _load_index(folder: str, manifest_mtime_ns: int) -> NGramIndex:
    """Loaded (and sha256-verified) once per process and index version: a full text/train
    index is ~1.2 GB and verifying it takes seconds, far more than one decode."""
    return NGramIndex.load(Path(folder))


def load_ngrams(folder: str | Path) -> NGramIndex:
    folder = Path(folder).resolve()
    try:
        mtime = (folder / "manifest.json").stat().st_mtime_ns
    except OSError:
        return NGramIndex.load(folder)  # raises the right error
    return _load_index(str(folder), mtime)


def resolve_ngrams(ngrams: NGramIndex | str | Path | None, fingerprint: str) -> tuple[NGramIndex | None, str | None]:
    """An index (or a folder holding one; None: the default index for the tokenizer, if any)
    checked against the tokenizer, and where it came from."""
    if isinstance(ngrams, NGramIndex):
        ngrams.check_tokenizer(fingerprint)
        return ngrams, "in-memory index"
    if ngrams is None:
        from terse.superposed.models import default_ngram_dir

        folder = default_ngram_dir(fingerprint)
        if folder is None:
            log.warning("no default n-gram index for this tokenizer: decoding without n-grams "
                        "(build one with `terse superposed build-ngrams`)")
            return None, None
        index = load_ngrams(folder)
        index.check_tokenizer(fingerprint, str(folder))
        return index, str(folder)
    index = load_ngrams(ngrams)
    index.check_tokenizer(fingerprint, str(ngrams))
    return index, str(ngrams)
