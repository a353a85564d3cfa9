"""Token n-gram index for Superposed Decoding's n-gram interpolation (Shen et al. 2024, §3.2).

The paper's model is an interpolated maximum-likelihood n-gram estimate

    p_ngram(x | ctx) = sum_{n} lambda_n * count(ctx_{n-1}, x) / count(ctx_{n-1}, *)

where ``ctx_{n-1}`` is the last ``n - 1`` tokens of a draft (prompt included). An order
whose context never occurs in the corpus is skipped; a seen context followed by an unseen
``x`` contributes 0. The sum is *not* renormalised over the orders found.

Storage (no pickle: ``.npy`` arrays + JSON, sha256 manifest, tokenizer fingerprint).
Contexts are interned as a trie read *backwards* from the most recent token, so one walk
over a draft's last tokens yields the ids of all its context lengths at once:

* length-1 context id = the token id itself;
* length-L context id = rank of ``id_{L-1} * V + token_{-L}`` in the sorted array
  ``ctx_keys_L`` (L >= 2), where ``V`` is the vocabulary size.

For each context length L, ``next_keys_L`` holds the sorted unique ``ctx_id * V + x`` with
``next_counts_L`` their counts, and ``ctx_totals_L[ctx_id]`` the number of continuations.
All keys are exact (no hashing): ids are below the corpus size ``N``, so ``N * V < 2**64``.
Lookups are ``np.searchsorted`` over whole batches of (draft, candidate) pairs; memory is
O(N) per order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from terse.core.artifacts import atomic_write_bytes, sha256_file, verify_files
from terse.core.errors import ArtifactError, ConfigError, DataError, ModelMismatchError

log = logging.getLogger(__name__)

KIND = "terse.superposed.ngrams"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
MANIFEST_FILE = "manifest.json"
MAX_ORDER = 8


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 (first 16 hex digits) of a tokenizer's token -> id map.

    Two tokenizers with the same fingerprint map every token string to the same id, which
    is what an n-gram index over token ids relies on.
    """
    vocab = tokenizer.get_vocab()
    payload = json.dumps(sorted(vocab.items(), key=lambda item: item[1]), ensure_ascii=False).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


@dataclass(frozen=True)
class NGramLookup:
    """Result of :meth:`NGramIndex.lookup`.

    Attributes:
        probs: (D, C) float64 interpolated n-gram probability of each candidate (not
            renormalised over orders; 0 when no seen context continues with it).
        context_seen: (D, L) bool, whether each context length 1..L occurs in the corpus.
    """

    probs: np.ndarray
    context_seen: np.ndarray


class NGramIndex:
    """Exact token n-gram counts of a corpus, stored as sorted arrays.

    Args:
        vocab_size: tokenizer vocabulary size ``V`` (all token ids are ``< V``).
        max_context: longest context length stored (``max order - 1``).
        tokenizer_fingerprint: :func:`tokenizer_fingerprint` of the tokenizer that produced
            the ids; checked before decoding so an index is never used with another tokenizer.
        arrays: the tables described in the module docstring.
        info: provenance (corpus, token count, build time).
    """

    def __init__(self, vocab_size: int, max_context: int, tokenizer_fingerprint: str,
                 arrays: dict[str, np.ndarray], info: dict | None = None):
        self.vocab_size = int(vocab_size)
        self.max_context = int(max_context)
        self.tokenizer_fingerprint = tokenizer_fingerprint
        self.info = dict(info or {})
        self.ctx_keys = [None, None] + [arrays[f"ctx_keys_{n}"] for n in range(2, self.max_context + 1)]
        self.next_keys = [None] + [arrays[f"next_keys_{n}"] for n in range(1, self.max_context + 1)]
        self.next_counts = [None] + [arrays[f"next_counts_{n}"] for n in range(1, self.max_context + 1)]
        self.ctx_totals = [None] + [arrays[f"ctx_totals_{n}"] for n in range(1, self.max_context + 1)]
        self._V = np.uint64(self.vocab_size)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, sequences: Iterable[Sequence[int] | np.ndarray], vocab_size: int, tokenizer_fingerprint: str,
              max_order: int = 6, info: dict | None = None) -> NGramIndex:
        """Count all n-grams of orders 2..``max_order`` in ``sequences`` (documents of token
        ids; n-grams never cross a document boundary)."""
        if not 2 <= max_order <= MAX_ORDER:
            raise ConfigError(f"max_order must be in 2..{MAX_ORDER}, got {max_order}")
        if vocab_size < 1:
            raise ConfigError(f"vocab_size must be positive, got {vocab_size}")
        docs = [np.asarray(s, dtype=np.int64).ravel() for s in sequences]
        docs = [d for d in docs if d.size]
        if not docs:
            raise DataError("cannot build an n-gram index from an empty corpus")
        tokens = np.concatenate(docs)
        if tokens.min() < 0 or tokens.max() >= vocab_size:
            raise DataError(f"token ids must lie in [0, {vocab_size}); got [{tokens.min()}, {tokens.max()}]")
        lengths = np.array([d.size for d in docs], dtype=np.int64)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)  # (N,) start of each token's document
        positions = np.arange(tokens.size, dtype=np.int64)
        max_context = max_order - 1
        if tokens.size * vocab_size >= 2**63:
            raise DataError("corpus too large for exact 64-bit n-gram keys")
        V = np.uint64(vocab_size)
        arrays: dict[str, np.ndarray] = {}
        start = time.perf_counter()
        # Positions i predict tokens[i] from contexts ending at i-1; `valid` shrinks as L grows.
        valid = positions[positions - 1 >= starts]
        ctx_ids = tokens[valid - 1].astype(np.uint64)  # length-1 context id = token id
        for L in range(1, max_context + 1):
            if L >= 2:
                keep = valid - L >= starts[valid]
                valid, ctx_ids = valid[keep], ctx_ids[keep]
                keys = ctx_ids * V + tokens[valid - L].astype(np.uint64)
                uniq, inverse = np.unique(keys, return_inverse=True)
                arrays[f"ctx_keys_{L}"] = uniq
                ctx_ids = inverse.astype(np.uint64).ravel()
                n_ctx = uniq.size
            else:
                n_ctx = vocab_size
            next_keys, counts = np.unique(ctx_ids * V + tokens[valid].astype(np.uint64), return_counts=True)
            arrays[f"next_keys_{L}"] = next_keys
            arrays[f"next_counts_{L}"] = counts.astype(np.uint32)
            arrays[f"ctx_totals_{L}"] = np.bincount(ctx_ids.astype(np.int64), minlength=n_ctx).astype(np.uint32)
        info = {**(info or {}), "num_tokens": int(tokens.size), "num_documents": len(docs),
                "build_seconds": round(time.perf_counter() - start, 3)}
        return cls(vocab_size, max_context, tokenizer_fingerprint, arrays, info)

    @property
    def max_order(self) -> int:
        return self.max_context + 1

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for L in range(1, self.max_context + 1):
            if L >= 2:
                out[f"ctx_keys_{L}"] = self.ctx_keys[L]
            out[f"next_keys_{L}"] = self.next_keys[L]
            out[f"next_counts_{L}"] = self.next_counts[L]
            out[f"ctx_totals_{L}"] = self.ctx_totals[L]
        return out

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays().values()))

    # ----------------------------------------------------------------- lookup
    def context_ids(self, contexts: np.ndarray, context_lengths: np.ndarray | None = None) -> np.ndarray:
        """Ids of the context of each length for a batch of drafts.

        Args:
            contexts: (D, L) int64, the last ``L`` tokens of each draft, most recent last.
                Use ``context_lengths`` when a draft has fewer real tokens (left padding).
            context_lengths: (D,) number of real tokens per row (default: all ``L``).

        Returns:
            (D, L) int64: ``[:, j]`` is the id of the length-(j+1) context, -1 if unseen.
        """
        D, L = contexts.shape
        L = min(L, self.max_context)
        out = np.full((D, L), -1, dtype=np.int64)
        if D == 0 or L == 0:
            return out
        lengths = np.full(D, contexts.shape[1]) if context_lengths is None else np.asarray(context_lengths)
        last = contexts[:, -1].astype(np.int64)
        ids = last.astype(np.uint64)
        seen = (lengths >= 1) & (self.ctx_totals[1][np.clip(last, 0, self.vocab_size - 1)] > 0) & (last >= 0)
        out[:, 0] = np.where(seen, last, -1)
        for j in range(2, L + 1):
            if not seen.any():
                break
            tok = contexts[:, -j].astype(np.int64)
            keys = ids * self._V + np.clip(tok, 0, None).astype(np.uint64)
            table = self.ctx_keys[j]
            pos = np.searchsorted(table, keys)
            found = pos < table.size
            found[found] = table[pos[found]] == keys[found]
            seen = seen & found & (lengths >= j)
            ids = np.where(seen, pos, 0).astype(np.uint64)
            out[:, j - 1] = np.where(seen, pos, -1)
        return out

    def lookup(self, contexts: np.ndarray, candidates: np.ndarray, lambdas: Sequence[float],
               context_lengths: np.ndarray | None = None) -> NGramLookup:
        """Interpolated n-gram probability of candidate next tokens for each draft.

        Args:
            contexts: (D, L) int64 last tokens of each draft (most recent last).
            candidates: (D, C) int64 candidate next tokens per draft.
            lambdas: weight of orders 2, 3, ... (``lambdas[i]`` for context length i+1);
                must not be longer than :attr:`max_context`.
            context_lengths: (D,) real tokens per row when rows are left-padded.

        Returns:
            :class:`NGramLookup` with (D, C) probabilities.
        """
        if len(lambdas) > self.max_context:
            raise ConfigError(f"{len(lambdas)} n-gram weights given but the index stores orders up to {self.max_order}")
        contexts = np.asarray(contexts, dtype=np.int64)
        candidates = np.asarray(candidates, dtype=np.int64)
        D, C = candidates.shape
        ctx = self.context_ids(contexts[:, -len(lambdas):] if len(lambdas) else contexts[:, :0],
                               None if context_lengths is None else np.minimum(context_lengths, len(lambdas)))
        probs = np.zeros((D, C), dtype=np.float64)
        in_vocab = (candidates >= 0) & (candidates < self.vocab_size)  # a model may pad its vocabulary
        cand = np.where(in_vocab, candidates, 0).astype(np.uint64)
        for j, lam in enumerate(lambdas):
            if lam == 0 or j >= ctx.shape[1]:
                continue
            L = j + 1
            rows = ctx[:, j] >= 0
            if not rows.any() or self.next_keys[L].size == 0:
                continue
            cid = ctx[rows, j].astype(np.uint64)
            keys = (cid[:, None] * self._V + cand[rows]).ravel()
            table = self.next_keys[L]
            pos = np.searchsorted(table, keys)
            hit = pos < table.size
            hit[hit] = table[pos[hit]] == keys[hit]
            hit &= in_vocab[rows].ravel()
            counts = np.where(hit, self.next_counts[L][np.minimum(pos, table.size - 1)], 0).reshape(-1, C)
            totals = self.ctx_totals[L][cid.astype(np.int64)].astype(np.float64)
            probs[rows] += lam * counts / totals[:, None]
        return NGramLookup(probs=probs, context_seen=ctx >= 0)

    def count(self, context: Sequence[int], token: int) -> tuple[int, int]:
        """(count(context, token), count(context, *)) for one context (tests, debugging)."""
        context = list(context)
        if not context:
            raise ConfigError("context must hold at least one token")
        if len(context) > self.max_context:
            raise ConfigError(f"context longer than the index's {self.max_context} tokens")
        ids = self.context_ids(np.array([context], dtype=np.int64))
        cid = int(ids[0, len(context) - 1])
        if cid < 0:
            return 0, 0
        key = np.uint64(cid) * self._V + np.uint64(token)
        table = self.next_keys[len(context)]
        pos = int(np.searchsorted(table, key))
        hit = pos < table.size and table[pos] == key
        return (int(self.next_counts[len(context)][pos]) if hit else 0), int(self.ctx_totals[len(context)][cid])

    # -------------------------------------------------------------- save/load
    def save(self, folder: Path) -> Path:
        """Write the index folder atomically (a temporary folder renamed into place)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            files = {}
            for name, array in self.arrays().items():
                path = tmp / f"{name}.npy"
                np.save(path, np.ascontiguousarray(array), allow_pickle=False)
                files[path.name] = sha256_file(path)
            header = {"format_version": FORMAT_VERSION, "vocab_size": self.vocab_size, "max_order": self.max_order,
                      "tokenizer_fingerprint": self.tokenizer_fingerprint, "info": self.info}
            atomic_write_bytes(tmp / INDEX_FILE, (json.dumps(header, indent=2, sort_keys=True) + "\n").encode())
            files[INDEX_FILE] = sha256_file(tmp / INDEX_FILE)
            manifest = {"manifest_version": 1, "kind": KIND, "files": files}
            atomic_write_bytes(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old.{os.getpid()}")
                os.replace(folder, old)
                os.replace(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: Path, verify: bool = True, mmap: bool = True) -> NGramIndex:
        """Load an index folder, checking the manifest's sha256 of every file."""
        folder = Path(folder)
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
            header = json.loads((folder / INDEX_FILE).read_text())
        except FileNotFoundError:
            raise ArtifactError(f"{folder} is not an n-gram index (build one with `terse superposed build-ngrams`)") from None
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read n-gram index {folder}: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
            raise ArtifactError(f"{folder} is not a terse n-gram index")
        if not isinstance(header, dict) or header.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{folder}: unsupported n-gram index version (expected {FORMAT_VERSION})")
        files = manifest.get("files", {})
        if verify:
            verify_files(folder, files)
        try:
            vocab_size, max_order = int(header["vocab_size"]), int(header["max_order"])
            fingerprint = str(header["tokenizer_fingerprint"])
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{folder}/{INDEX_FILE} is malformed") from None
        if not 2 <= max_order <= MAX_ORDER:
            raise ArtifactError(f"{folder}: invalid max_order {max_order}")
        arrays = {}
        for name in [n for n in files if n.endswith(".npy")]:
            try:
                arrays[name[:-4]] = np.load(folder / name, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"cannot read {folder / name}: {exc}") from None
        try:
            return cls(vocab_size, max_order - 1, fingerprint, arrays, header.get("info"))
        except KeyError as exc:
            raise ArtifactError(f"{folder}: array {exc} is missing") from None

    def check_tokenizer(self, fingerprint: str, where: str = "this n-gram index") -> None:
        if fingerprint != self.tokenizer_fingerprint:
            raise ModelMismatchError(
                f"{where} was built with a different tokenizer (fingerprint {self.tokenizer_fingerprint}, "
                f"model's tokenizer {fingerprint}); rebuild it with `terse superposed build-ngrams --model ...`")

    def summary(self) -> str:
        return (f"{self.info.get('num_tokens', '?'):,} tokens, orders 2..{self.max_order}, "
                f"{self.nbytes() / 1e6:.1f} MB") if isinstance(self.info.get("num_tokens"), int) else \
            f"orders 2..{self.max_order}, {self.nbytes() / 1e6:.1f} MB"
