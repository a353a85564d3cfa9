"""Building an :class:`~terse.superposed.ngrams.NGramIndex` from text files with a model's tokenizer."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from terse.core.errors import DataError
from terse.core.progress import progress
from terse.superposed.ngrams import NGramIndex, tokenizer_fingerprint

log = logging.getLogger(__name__)

CHUNK_CHARS = 1 << 16  # tokenised in pieces cut at blank lines, so no token straddles a cut


def text_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively: ``*.txt``) into a sorted list of files."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise DataError(f"{path} holds no .txt files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"no such file or folder: {path}")
    if not files:
        raise DataError("no corpus files given")
    return files


def _chunks(text: str, size: int = CHUNK_CHARS) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n\n", start + size // 2, end)
            end = cut + 2 if cut >= 0 else end
        yield text[start:end]
        start = end


def tokenize_files(tokenizer, files: list[Path], max_chars: int | None = None) -> list[np.ndarray]:
    """One int32 token array per file (``max_chars`` caps the total text read)."""
    docs, budget = [], max_chars
    total = sum(f.stat().st_size for f in files)
    with progress(total=total if max_chars is None else min(total, max_chars), desc="tokenizing", unit="B",
                  unit_scale=True) as bar:
        for path in files:
            if budget is not None and budget <= 0:
                break
            try:
                text = path.read_bytes().decode("utf-8", errors="replace")
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc}") from None
            if budget is not None:
                text, budget = text[:budget], budget - len(text[:budget])
            pieces = list(_chunks(text))
            ids: list[int] = []
            for batch_start in range(0, len(pieces), 16):
                batch = pieces[batch_start:batch_start + 16]
                for row in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                    ids.extend(row)
                bar.update(sum(len(p) for p in batch))
            if ids:
                docs.append(np.asarray(ids, dtype=np.int32))
    return docs


def build_ngram_index(tokenizer, paths: Iterable[str | Path], max_order: int = 6, max_chars: int | None = None,
                      info: dict | None = None) -> NGramIndex:
    """Tokenise ``paths`` (files or folders of ``*.txt``) with ``tokenizer`` and count n-grams.

    Args:
        tokenizer: the generating model's tokenizer (its fingerprint is stored).
        paths: corpus files/folders; each file is one document.
        max_order: highest n-gram order (orders 2..max_order are stored).
        max_chars: read at most this many characters in total (for small indexes).
    """
    files = text_files(paths)
    start = time.perf_counter()
    docs = tokenize_files(tokenizer, files, max_chars)
    tokenize_seconds = time.perf_counter() - start
    vocab = max(len(tokenizer), max((int(d.max()) for d in docs if d.size), default=0) + 1)
    index = NGramIndex.build(docs, vocab, tokenizer_fingerprint(tokenizer), max_order=max_order,
                             info={**(info or {}), "files": [f.name for f in files][:200], "num_files": len(files),
                                   "max_chars": max_chars, "tokenize_seconds": round(tokenize_seconds, 3)})
    log.info("n-gram index: %s", index.summary())
    return index
