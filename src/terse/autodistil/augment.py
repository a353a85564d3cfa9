"""Task-distillation inputs made from a task's own training sentences.

A small student fine-tuned on a few thousand labelled examples learns little of what the
teacher knows: on STS-B, a 2-layer slice of the teacher reaches ~20 Pearson after the
protocol's 3 epochs, ~43 after 10, while its mean-pooled embeddings already score ~65
zero-shot. The teacher's outputs on many more inputs close much of that gap (TinyBERT's
data augmentation, here without word vectors or a masked LM): new inputs are built from
the training set's own sentences and labelled by the task teacher only.

Pair tasks (STS-B, MRPC, RTE) get

* neighbour pairs: a sentence and one of its nearest neighbours by the teacher's
  mean-pooled embedding (graded similarity, the hard part of the label range);
* perturbed pairs: a sentence and a copy with words dropped and one swap (near-duplicates);
* random pairs (unrelated).

Single-sentence tasks (SST-2, CoLA) get perturbed sentences and splices (the start of a
sentence joined to the end of one of its neighbours). The inputs depend only on the
training set, the teacher and ``seed``: every student and seed sees the same ones.
"""

from __future__ import annotations

import random

import torch

from terse.core.progress import progress

NEIGHBOURS = 20           # a neighbour pair takes one of the 20 nearest sentences (itself excluded)
PAIR_MIX = (0.6, 0.25)    # shares of neighbour and perturbed pairs; the rest are random pairs
DROP = 0.15               # word dropout of a perturbed sentence


@torch.no_grad()
def sentence_embeddings(encoder, tokenizer, sentences: list[str], batch_size: int = 256,
                        max_len: int = 64) -> torch.Tensor:
    """Unit-length mean-pooled last hidden states ``(N, H)`` of a ``BertModel``-like encoder."""
    encoder.eval()
    out = []
    bar = progress(total=len(sentences), desc="embedding sentences", unit="sentence")
    for start in range(0, len(sentences), batch_size):
        enc = tokenizer(sentences[start:start + batch_size], padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt")
        enc = {k: v.to(encoder.device) for k, v in enc.items()}
        hidden = encoder(**enc).last_hidden_state.float()
        mask = enc["attention_mask"][..., None].float()
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).cpu())
        bar.update(len(sentences[start:start + batch_size]))
    bar.close()
    return torch.cat(out)


def perturb(sentence: str, rng: random.Random) -> str:
    """Drop each word with probability DROP (one is always kept) and, half the time, swap two neighbours."""
    words = sentence.split()
    if len(words) < 4:
        return sentence
    kept = [w for w in words if rng.random() >= DROP] or words[:1]
    if len(kept) > 3 and rng.random() < 0.5:
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return " ".join(kept)


def _neighbours(emb: torch.Tensor, rng: random.Random) -> list[int]:
    """For each sentence, one of its NEIGHBOURS nearest others (by cosine), drawn at random."""
    k = min(NEIGHBOURS + 1, len(emb))
    picks = []
    for start in range(0, len(emb), 1024):
        top = (emb[start:start + 1024] @ emb.T).topk(k, dim=1).indices
        picks += [top[r, rng.randrange(1, k)].item() if k > 1 else start + r for r in range(len(top))]
    return picks


def augmented_inputs(inputs: list[tuple[str, ...]], count: int, encoder, tokenizer, seed: int = 0) -> list[tuple[str, ...]]:
    """``count`` new inputs shaped like ``inputs`` (1 or 2 texts each), built from their sentences."""
    if count <= 0 or not inputs:
        return []
    rng = random.Random(seed)
    sentences = sorted({s for x in inputs for s in x if s.strip()})
    neighbour = _neighbours(sentence_embeddings(encoder, tokenizer, sentences), rng)
    out: list[tuple[str, ...]] = []
    pair = len(inputs[0]) == 2
    while len(out) < count:
        i = rng.randrange(len(sentences))
        a, u = sentences[i], rng.random()
        if pair:
            if u < PAIR_MIX[0]:
                b = sentences[neighbour[i]]
            elif u < PAIR_MIX[0] + PAIR_MIX[1]:
                b = perturb(a, rng)
            else:
                b = sentences[rng.randrange(len(sentences))]
            out.append((a, b) if rng.random() < 0.5 else (b, a))
        elif u < 0.5:
            out.append((perturb(a, rng),))
        else:
            head, tail = a.split(), sentences[neighbour[i]].split()
            out.append((" ".join(head[:max(1, len(head) // 2)] + tail[len(tail) // 2:]),))
    return out
