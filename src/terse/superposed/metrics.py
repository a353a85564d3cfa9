"""Draft quality and diversity metrics used by the benchmark (and usable on their own).

* :func:`continuation_nll` - a judge LM's negative log-likelihood of a continuation given
  its prefix, per token of the judge and per UTF-8 byte (comparable across tokenizers).
* :func:`self_bleu` - mean BLEU-4 of each draft against the other drafts (smoothing
  "method1" of Chen & Cherry 2014, as ``nltk``'s SmoothingFunction().method1 used by the
  official code). Lower = more diverse.
* :func:`distinct_n` - unique n-grams / total n-grams over all drafts.
* :func:`coverage` - does any draft start with the true next n words (an autocomplete hit).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from terse.superposed.decoding import output_logits


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4, epsilon: float = 0.1) -> float:
    """Sentence BLEU with uniform weights, clipped counts over several references, the
    closest-reference brevity penalty and method1 smoothing (``epsilon`` for zero counts)."""
    if not hypothesis or not references:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        hyp = _ngrams(hypothesis, n)
        total = sum(hyp.values())
        if total == 0:
            return 0.0  # hypothesis shorter than n: nltk returns 0 for such a sentence too
        best: Counter = Counter()
        for ref in references:
            for gram, count in _ngrams(ref, n).items():
                best[gram] = max(best[gram], count)
        clipped = sum(min(count, best[gram]) for gram, count in hyp.items())
        log_sum += math.log((clipped if clipped > 0 else epsilon) / total) / max_n
    ref_len = min((abs(len(r) - len(hypothesis)), len(r)) for r in references)[1]
    bp = 1.0 if len(hypothesis) > ref_len else math.exp(1 - ref_len / len(hypothesis))
    return bp * math.exp(log_sum)


def self_bleu(drafts: Sequence[str]) -> float:
    """Mean BLEU of each draft (whitespace words) against all the others."""
    words = [d.split() for d in drafts]
    if len(words) < 2:
        return float("nan")
    return sum(bleu(w, words[:i] + words[i + 1:]) for i, w in enumerate(words)) / len(words)


def distinct_n(drafts: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams (whitespace words) across the drafts."""
    grams: list[tuple] = []
    for d in drafts:
        w = d.split()
        grams += [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def _words(text: str) -> list[str]:
    """Lower-cased whitespace words without surrounding punctuation."""
    return [w for w in (w.strip(".,;:!?\"'()[]-").lower() for w in text.split()) if w]


def coverage(drafts: Sequence[str], truth: str, n: int) -> bool:
    """True when one of the drafts starts with the first ``n`` words of ``truth``
    (case and surrounding punctuation ignored); False when ``truth`` has fewer words."""
    want = _words(truth)[:n]
    return len(want) == n and any(_words(d)[:n] == want for d in drafts)


@torch.inference_mode()
def continuation_nll(model, tokenizer, prefix: str, continuations: Sequence[str], add_bos: bool = False,
                     batch_size: int = 16) -> list[dict]:
    """A judge's NLL of each ``prefix + continuation`` restricted to the continuation.

    The full text is tokenised once; judge tokens that end after the prefix count as the
    continuation's (a token straddling the boundary is charged to the continuation).

    Returns:
        per continuation: ``{"nll": total nats, "tokens": judge tokens, "bytes": UTF-8 bytes}``.
    """
    rows = []
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    for text in continuations:
        full = prefix + text
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = bos + list(enc["input_ids"])
        ends = [0] * len(bos) + [end for _, end in enc["offset_mapping"]]
        first = next((i for i, end in enumerate(ends) if i >= len(bos) and end > len(prefix)), len(ids))
        rows.append((ids, max(first, 1), len(text.encode("utf-8"))))
    out: list[dict] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(ids) for ids, _, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (row, _, _) in enumerate(batch):
            ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        # Project only the positions that predict continuation tokens: a judge with a large
        # vocabulary (Gemma: 262k) would otherwise materialise (B, T, V) logits.
        hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, d)
        for i, (row, first, n_bytes) in enumerate(batch):
            targets = torch.tensor(row[first:])
            if not targets.numel():
                out.append({"nll": 0.0, "tokens": 0, "bytes": n_bytes})
                continue
            logits = output_logits(model, hidden[i, first - 1:len(row) - 1])  # (n, V)
            nll = -torch.log_softmax(logits, -1).gather(1, targets[:, None]).sum().item()
            out.append({"nll": nll, "tokens": int(targets.numel()), "bytes": n_bytes})
    return out
