"""Equal-Info Windows: text -> M1 arithmetic code cut into windows of exactly b bits.

Lester et al. 2024, *Training LLMs over Neurally Compressed Text*, §3.3. Text is coded
byte by byte with M1 and an exact arithmetic coder; a window closes when the next byte
would need more than ``b`` bits, its code is zero-padded to exactly ``b`` bits, and both
the coder and M1's context reset. Each window therefore decodes on its own, and its
bits are split into ``b / token_bits`` tokens (vocabulary ``2**token_bits``).

**Decodability.** The paper's greedy rule (pack as many bytes as fit) is not uniquely
decodable: a window's zero-padded code can equal the code of one of its own prefixes,
so the decoder cannot know where the window ends. terse's rule (``"delay"``) closes the
window after the longest prefix that fits in ``b`` bits *and* whose padded code differs
from the padded codes of all its shorter prefixes; the bytes after it start the next
window. The decoder then returns the shortest decoded prefix whose padded code equals
the window. Proof: the window value is the left end of a dyadic interval inside the
coded prefix's interval, so decoding the point reproduces the encoder's bytes one by
one; the encoder's chosen prefix is the first whose padded code matches, by
construction; and a single byte always fits (its code has <= precision + 1 <= b bits),
so every window makes progress. ``tests/unit/test_equal_info.py`` checks it exhaustively
on small alphabets and by property tests. ``"greedy"`` is kept only to measure what the
rule costs (its windows are not guaranteed to decode).

**Determinism.** Encoder and decoder get M1's probabilities from the same incremental
steps, every window starting at position 0. With ``compute="integer"`` (the default) M1
is its integer version (:class:`~terse.nn.integer_gpt.IntegerGPT`), so the ids decode
on any machine, whatever its CPU, thread count or batch. The float settings of earlier
tokenizers (``"bf16"``, ``"fp32"``) pad batches to a multiple of ``lockstep.ROW_BLOCK`` rows,
which made rows independent of their batch on the machine that measured it, not across
CPU families.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terse.core.config import FrozenConfig
from terse.core.errors import ArtifactError, ConfigError, FormatError
from terse.entropy.interval import Interval
from terse.textcomp.lockstep import LockstepM1
from terse.textcomp.model import BOS, ByteLM
from terse.textcomp.tokenizer_base import (
    LenientDecoding,
    Tokenizer,
    as_bytes,
    as_compute,
    check_token_ids,
    copy_m1_into,
    flops_per_byte_of,
    load_m1_from,
)

RULES = ("delay", "greedy")


@dataclass(frozen=True)
class EqualInfoConfig(FrozenConfig):
    """Shape of an Equal-Info tokenization.

    Attributes:
        window_bits: b, bits per window (the paper uses 16, 32, 64, 128).
        token_bits: bits per token, 8 (vocabulary 256) or 16 (65,536).
        precision: P, the integer CDFs sum to 2**P (the paper's coder uses 14).
        max_window_bytes: most bytes one window may hold (bounds decoding work and the
            KV cache); 0 means ``window_bits`` (>= 1 bit per byte).
        segment_bytes: long inputs are cut into segments of this many bytes that are
            encoded in parallel (a window never spans a cut; decoding ignores them);
            0 means ``64 * window_bits`` (each cut costs about half a window).
        rule: ``"delay"`` (uniquely decodable, default) or ``"greedy"`` (the paper's
            rule, not decodable in general; for measurements only).
        compute: M1 arithmetic: ``"integer"`` (M1's integer version: ids decode on every
            machine) or the float network of earlier tokenizers, ``"bf16"`` or ``"fp32"``
            (ids decode only where the float kernels match). Part of the tokenization.
    """

    window_bits: int = 16
    token_bits: int = 16
    precision: int = 14
    max_window_bytes: int = 0
    segment_bytes: int = 0
    rule: str = "delay"
    compute: str = "integer"

    def __post_init__(self) -> None:
        if self.token_bits not in (8, 16):
            raise ConfigError(f"token_bits must be 8 or 16, got {self.token_bits}")
        if self.window_bits < self.token_bits or self.window_bits % self.token_bits:
            raise ConfigError(f"window_bits ({self.window_bits}) must be a positive multiple of token_bits "
                             f"({self.token_bits})")
        if not 9 <= self.precision <= 16:
            raise ConfigError(f"precision must be in 9..16 (256 symbols need >= 9 bits), got {self.precision}")
        if self.precision + 1 > self.window_bits:
            raise ConfigError(f"a byte may need precision + 1 = {self.precision + 1} bits: window_bits must be "
                             f">= that (got {self.window_bits}); lower precision or widen the window")
        if not 0 <= self.max_window_bytes <= 190:
            raise ConfigError("max_window_bytes must be in 0..190 (0 = window_bits)")
        if self.segment_bytes < 0:
            raise ConfigError("segment_bytes must be >= 0 (0 = automatic)")
        if self.compute not in ("integer", "bf16", "fp32"):
            raise ConfigError(f"compute must be 'integer', 'bf16' or 'fp32', got {self.compute!r}")
        if self.rule not in RULES:
            raise ConfigError(f"rule must be one of {RULES}, got {self.rule!r}")

    @property
    def byte_cap(self) -> int:
        return self.max_window_bytes or min(self.window_bits, 190)

    @property
    def segment_size(self) -> int:
        return self.segment_bytes or 64 * self.window_bits

    @property
    def tokens_per_window(self) -> int:
        return self.window_bits // self.token_bits

    @property
    def vocab_size(self) -> int:
        return 1 << self.token_bits


def _advance(stepper: LockstepM1, alive: list[int], open_rows: list[int], next_byte
             ) -> tuple[list[int], dict[int, int], np.ndarray]:
    """Prepare the next step: drop closed rows from the batch once they make up a quarter
    of it, and feed ``next_byte(row)`` to every open row (closed rows get 0).

    Returns the rows now in the batch (in batch order), each row's batch index, and the
    input tokens.
    """
    position = {row: i for i, row in enumerate(alive)}
    if len(open_rows) * 4 < len(alive) * 3:
        stepper.keep(np.array([position[row] for row in open_rows], dtype=np.int64))
        alive = open_rows
        position = {row: i for i, row in enumerate(alive)}
    tokens = np.zeros(len(alive), dtype=np.int64)
    for row in open_rows:
        tokens[position[row]] = next_byte(row)
    return alive, position, tokens


@torch.no_grad()
def encode_windows(m1: ByteLM, config: EqualInfoConfig, chunks: Sequence[bytes]) -> tuple[list[int], list[int]]:
    """Code the first window of each chunk (all in one batch).

    Args:
        m1: M1 (integer, or float for the float ``compute`` settings).
        config: the tokenization.
        chunks: non-empty byte strings, each the rest of a segment (only the first
            ``config.byte_cap`` bytes can be used).

    Returns:
        (window values as ``window_bits``-bit integers, bytes consumed per chunk).
    """
    bits, precision, cap = config.window_bits, config.precision, config.byte_cap
    greedy = config.rule == "greedy"
    n = len(chunks)
    intervals = [Interval() for _ in range(n)]
    seen: list[set[int]] = [set() for _ in range(n)]
    best_len, best_code = [0] * n, [0] * n
    stepper = LockstepM1(m1, n, cap + 1, precision, compute=config.compute)
    alive = list(range(n))  # rows in the batch, in batch order
    position = {row: row for row in alive}
    open_rows = list(alive)
    tokens = np.full(n, BOS, dtype=np.int64)
    for j in range(cap):
        freqs = stepper.step(tokens[: len(alive)])
        # each open row's byte j: its frequency and cumulative low, gathered in one go
        index = np.array([position[row] for row in open_rows], dtype=np.int64)
        symbols = np.array([chunks[row][j] for row in open_rows], dtype=np.int64)
        freq = freqs[index, symbols]
        cum_low = np.cumsum(freqs, axis=1)[index, symbols] - freq
        next_open = []
        for row, low, width in zip(open_rows, cum_low.tolist(), freq.tolist(), strict=True):
            interval = intervals[row]
            interval.narrow(low, width, precision)
            if not interval.shorten(bits):
                continue  # byte j does not fit: the window ends before it
            code = interval.padded_code(bits)
            if greedy or code not in seen[row]:
                best_len[row], best_code[row] = j + 1, code
            seen[row].add(code)
            if j + 1 < min(len(chunks[row]), cap):
                next_open.append(row)
        if not next_open:
            break
        alive, position, tokens = _advance(stepper, alive, next_open, lambda row, j=j: chunks[row][j])
        open_rows = next_open
    return best_code, best_len


@torch.no_grad()
def decode_windows(m1: ByteLM, config: EqualInfoConfig, values: Sequence[int]) -> list[bytes | None]:
    """Decode independent windows (all in one batch); None for a window no byte string codes to.

    The delay rule's decoder returns the shortest decoded prefix whose padded code is the
    window. For ``rule="greedy"`` it is the paper's decoder instead (App. D.5): the
    longest such prefix, which is what a greedy window would hold if it were decodable.
    """
    bits, precision, cap = config.window_bits, config.precision, config.byte_cap
    longest_match = config.rule == "greedy"
    n = len(values)
    intervals = [Interval() for _ in range(n)]
    decoded: list[bytearray] = [bytearray() for _ in range(n)]
    result: list[bytes | None] = [None] * n
    if n == 0:
        return result
    stepper = LockstepM1(m1, n, cap + 1, precision, compute=config.compute)
    alive = list(range(n))
    position = {row: row for row in alive}
    open_rows = list(alive)
    tokens = np.full(n, BOS, dtype=np.int64)
    for _ in range(cap):
        freqs = stepper.step(tokens[: len(alive)])
        cum = np.cumsum(freqs, axis=1)
        next_open = []
        for row in open_rows:
            i = position[row]
            interval = intervals[row]
            target = interval.target(values[row], bits, precision)
            byte = int(np.searchsorted(cum[i], target, side="right"))
            interval.narrow(int(cum[i, byte] - freqs[i, byte]), int(freqs[i, byte]), precision)
            decoded[row].append(byte)
            if not interval.shorten(bits):
                continue  # overran the window: the last match (if any) stands
            if interval.padded_code(bits) == values[row]:
                result[row] = bytes(decoded[row])
                if longest_match:
                    next_open.append(row)
            else:
                next_open.append(row)
        if not next_open:
            break
        alive, position, tokens = _advance(stepper, alive, next_open, lambda row: decoded[row][-1])
        open_rows = next_open
    return result


def encode_segments(m1: ByteLM, config: EqualInfoConfig, segments: Sequence[bytes]
                    ) -> tuple[list[list[int]], list[list[int]]]:
    """Window values and byte lengths of each segment; segments advance in lock-step,
    one window per wave."""
    starts = [0] * len(segments)
    windows: list[list[int]] = [[] for _ in segments]
    lengths: list[list[int]] = [[] for _ in segments]
    active = [i for i, seg in enumerate(segments) if seg]
    cap = config.byte_cap
    while active:
        codes, used = encode_windows(m1, config, [segments[i][starts[i]:starts[i] + cap] for i in active])
        for i, code, length in zip(active, codes, used, strict=True):
            windows[i].append(code)
            lengths[i].append(length)
            starts[i] += length
        active = [i for i in active if starts[i] < len(segments[i])]
    return windows, lengths


def windows_to_tokens(values: Sequence[int], config: EqualInfoConfig) -> np.ndarray:
    """Window values -> token ids, most significant token first."""
    per, tb = config.tokens_per_window, config.token_bits
    out = np.empty(len(values) * per, dtype=np.int64)
    mask = (1 << tb) - 1
    for w, value in enumerate(values):
        for t in range(per):
            out[w * per + t] = (value >> (tb * (per - 1 - t))) & mask
    return out


def tokens_to_windows(ids: np.ndarray, config: EqualInfoConfig) -> list[int]:
    """Token ids (a whole number of windows, ids in range) -> window values."""
    per, tb = config.tokens_per_window, config.token_bits
    values = []
    for w in range(len(ids) // per):
        value = 0
        for t in range(per):
            value = (value << tb) | int(ids[w * per + t])
        values.append(value)
    return values


def check_ids(ids, config: EqualInfoConfig, allow_partial: bool = False) -> np.ndarray:
    """Validate token ids: integers in [0, vocab) and (unless allowed) whole windows."""
    array = check_token_ids(ids, config.vocab_size, f"this tokenizer (b={config.window_bits})")
    if len(array) % config.tokens_per_window and not allow_partial:
        raise FormatError(f"{len(array)} tokens is not a whole number of windows ({config.tokens_per_window} "
                          "tokens each): the sequence is truncated")
    return array


MAX_BATCH_ROWS = 2048  # windows/segments coded per batch (bounds KV-cache memory)


class EqualInfoTokenizer(Tokenizer):
    """Equal-Info Windows over an M1 (see the module docstring for the rule).

    Args:
        m1: the byte LM (:class:`~terse.textcomp.model.ByteLM`) that drives the coder.
        config: window and token sizes.

    Example::

        tok = EqualInfoTokenizer(load_byte_lm("m1-small"), EqualInfoConfig(window_bits=16, token_bits=16))
        ids = tok.encode("Hello world")          # one token per 16-bit window
        assert tok.decode(ids) == "Hello world"
    """

    kind = "equal_info"

    def __init__(self, m1: ByteLM, config: EqualInfoConfig | None = None):
        self.config = config or EqualInfoConfig()
        self.m1 = as_compute(m1, self.config.compute)
        self.vocab_size = self.config.vocab_size
        self.m1_flops_per_byte = flops_per_byte_of(self.m1)

    @property
    def name(self) -> str:
        suffix = "_greedy" if self.config.rule == "greedy" else ""
        return f"equal_info_b{self.config.window_bits}_v{self.vocab_size}{suffix}"

    def segments(self, data: bytes) -> list[bytes]:
        size = self.config.segment_size
        return [data[i:i + size] for i in range(0, len(data), size)]

    def encode_windows_batch(self, texts: Sequence[str | bytes]) -> tuple[list[list[int]], list[list[int]]]:
        """Window values (``window_bits``-bit integers) and window byte lengths of each text."""
        pieces = [(doc, seg) for doc, text in enumerate(texts) for seg in self.segments(as_bytes(text))]
        windows: list[list[int]] = [[] for _ in texts]
        lengths: list[list[int]] = [[] for _ in texts]
        for start in range(0, len(pieces), MAX_BATCH_ROWS):
            batch = pieces[start:start + MAX_BATCH_ROWS]
            values, used = encode_segments(self.m1, self.config, [s for _, s in batch])
            for (doc, _), v, u in zip(batch, values, used, strict=True):
                windows[doc].extend(v)
                lengths[doc].extend(u)
        return windows, lengths

    def encode_batch(self, texts: Sequence[str | bytes]) -> list[np.ndarray]:
        return [windows_to_tokens(w, self.config) for w in self.encode_windows_batch(texts)[0]]

    def encode_bytes(self, data: bytes) -> np.ndarray:
        return self.encode_batch([data])[0]

    def decode_window_values(self, values: Sequence[int]) -> list[bytes | None]:
        """Decode windows independently (batched); None marks a window nothing codes to."""
        out: list[bytes | None] = []
        for start in range(0, len(values), MAX_BATCH_ROWS):
            out.extend(decode_windows(self.m1, self.config, values[start:start + MAX_BATCH_ROWS]))
        return out

    def check_ids(self, ids) -> np.ndarray:
        return check_ids(ids, self.config)

    def decode_bytes(self, ids: np.ndarray) -> bytes:
        decoded = self.decode_window_values(tokens_to_windows(ids, self.config))
        for index, window in enumerate(decoded):
            if window is None:
                raise FormatError(f"window {index} (tokens {index * self.config.tokens_per_window}..) does not "
                                  f"decode under {self.name} with M1 {self.m1.model_id}: the ids were made by "
                                  "another tokenizer configuration or are corrupted")
        return b"".join(decoded)  # type: ignore[arg-type]

    def decode_lenient(self, ids) -> LenientDecoding:
        """Generated ids: invalid windows and a trailing partial window become U+FFFD."""
        ids = check_ids(ids, self.config, allow_partial=True)
        whole = len(ids) - len(ids) % self.config.tokens_per_window
        decoded = self.decode_window_values(tokens_to_windows(ids[:whole], self.config))
        invalid = sum(w is None for w in decoded) + (whole < len(ids))
        parts = [w if w is not None else "\ufffd".encode() for w in decoded]
        if whole < len(ids):
            parts.append("\ufffd".encode())
        valid_bytes = sum(len(w) for w in decoded if w is not None)
        return LenientDecoding(b"".join(parts).decode("utf-8", errors="replace"), invalid, valid_bytes)

    def config_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "m1_id": self.m1.model_id}

    def _save_files(self, folder: Path) -> None:
        copy_m1_into(self.m1, folder)

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any]) -> EqualInfoTokenizer:
        try:
            eq_config = EqualInfoConfig.from_dict(config["config"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{folder}: bad Equal-Info config ({exc})") from None
        return cls(load_m1_from(folder, config["m1_id"], exact=eq_config.compute == "integer"), eq_config)
