"""Token blocks for distillation: a corpus read into memory, or streamed from disk.

Both sources answer ``batch(step, batch_size)`` with the same (B, T) block tensor for the
same step every time, which is what makes a resumed distillation equal an uninterrupted
one: :class:`BlockArray` indexes a seeded permutation of blocks held in memory;
:class:`CorpusStream` reads ``*.txt`` files in a seeded order, a slice at a time, and
replays the stream up to the requested step when a run resumes (tokenizing is far
cheaper than the distillation it feeds, so the replay costs seconds).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import torch

from terse.core.errors import DataError
from terse.core.progress import progress


def _txt_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else [folder]
    if not files or not all(f.is_file() for f in files):
        raise DataError(f"no .txt files in {folder}")
    return files


def _framed(tokenizer, ids: list[int]) -> list[int]:
    return [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]


def read_corpus_ids(folder: Path, tokenizer, max_tokens: int, seq_len: int, seed: int = 0,
                    desc: str = "tokenizing corpus") -> torch.Tensor:
    """Token blocks of ``seq_len`` (each ``[CLS] ... [SEP]``) from the ``*.txt`` files in
    ``folder``, up to ``max_tokens`` tokens, shuffled. -> (N, seq_len) int64."""
    files = _txt_files(folder)
    body = seq_len - 2
    rng = random.Random(seed)
    rng.shuffle(files)
    per_file = max(body, max_tokens // len(files))
    blocks = []
    for path in progress(files, desc=desc, unit="file"):
        text = path.read_text(encoding="utf-8", errors="replace")
        # Take a contiguous slice from a random offset so many books contribute.
        want_chars = per_file * 6
        start = rng.randrange(0, max(1, len(text) - want_chars))
        ids = tokenizer(text[start:start + want_chars], add_special_tokens=False)["input_ids"][:per_file]
        for i in range(0, len(ids) - body + 1, body):
            blocks.append(_framed(tokenizer, ids[i:i + body]))
    if not blocks:
        raise DataError(f"{folder}: not enough text for one block of {seq_len} tokens")
    rng.shuffle(blocks)
    return torch.tensor(blocks[: max(1, max_tokens // seq_len)], dtype=torch.long)


def random_padding(ids: torch.Tensor, generator: torch.Generator, min_fraction: float = 0.5):
    """Cut each block at a random length (so padding is exercised) -> (ids, mask)."""
    B, T = ids.shape
    lengths = torch.randint(int(T * min_fraction), T + 1, (B,), generator=generator)
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    ids = ids * mask
    return ids, mask


class BlockArray:
    """Blocks held in memory, visited in a seeded random order, cycling."""

    def __init__(self, blocks: torch.Tensor, seed: int = 0):
        if blocks.ndim != 2 or len(blocks) == 0:
            raise DataError("expected a non-empty (N, T) tensor of token blocks")
        self.blocks = blocks
        self.order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed))

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        idx = torch.arange(step * batch_size, (step + 1) * batch_size) % len(self.blocks)
        return self.blocks[self.order[idx]]


class CorpusStream:
    """Blocks streamed from a folder of ``*.txt`` files, never all in memory.

    Pass ``p`` visits the files in an order seeded by ``(seed, p)``; each file is read in
    slices of ``chunk_chars`` characters (cut at a line end), tokenized and cut into
    ``[CLS] body [SEP]`` blocks; a seeded shuffle buffer of ``shuffle_blocks`` mixes blocks
    of different books. Batches must be asked for in increasing step order; asking for an
    earlier step (or starting at a later one, on resume) replays the stream from its start.
    """

    def __init__(self, folder: Path, tokenizer, seq_len: int, seed: int = 0, shuffle_blocks: int = 4096,
                 chunk_chars: int = 200_000):
        self.files = _txt_files(folder)
        self.folder, self.tokenizer, self.seq_len, self.seed = Path(folder), tokenizer, seq_len, seed
        self.shuffle_blocks, self.chunk_chars = max(1, shuffle_blocks), chunk_chars
        self.passes = 0               # completed passes over the corpus (for logging)
        self._restart()

    def _restart(self) -> None:
        self._iter, self._position = self._shuffled(), 0

    def _raw_blocks(self) -> Iterator[list[int]]:
        body = self.seq_len - 2
        produced = False
        for p in range(1 << 30):
            files = list(self.files)
            random.Random(self.seed * 1_000_003 + p).shuffle(files)
            for path in files:
                pending: list[int] = []
                with open(path, encoding="utf-8", errors="replace") as handle:
                    while True:
                        text = handle.read(self.chunk_chars)
                        if not text:
                            break
                        text += handle.readline()   # finish the line so no word is split
                        pending += self.tokenizer(text, add_special_tokens=False)["input_ids"]
                        whole = len(pending) - len(pending) % body
                        for i in range(0, whole, body):
                            produced = True
                            yield _framed(self.tokenizer, pending[i:i + body])
                        pending = pending[whole:]
            if not produced:
                raise DataError(f"{self.folder}: not enough text for one block of {self.seq_len} tokens")
            self.passes = p + 1

    def _shuffled(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed)
        buffer: list[list[int]] = []
        for block in self._raw_blocks():
            if len(buffer) < self.shuffle_blocks:
                buffer.append(block)
                continue
            i = rng.randrange(len(buffer))
            yield buffer[i]
            buffer[i] = block

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        first = step * batch_size
        if first < self._position:
            self._restart()
        while self._position < first:   # replay up to the step (resume)
            next(self._iter)
            self._position += 1
        rows = [next(self._iter) for _ in range(batch_size)]
        self._position += batch_size
        return torch.tensor(rows, dtype=torch.long)

    def describe(self) -> str:
        return f"streaming {len(self.files)} files from {self.folder} (pass {self.passes + 1})"


def block_source(blocks, seed: int = 0):
    """A tensor of blocks becomes a :class:`BlockArray`; a source passes through."""
    return BlockArray(blocks, seed) if isinstance(blocks, torch.Tensor) else blocks
