"""M1 stepped in lock-step over rows that all start at position 0, the batch both the
Equal-Info and the arithmetic-coded tokenizers code with.

The float M1 of earlier tokenizers (``compute="bf16"``/``"fp32"``) runs on batches padded
to a multiple of ``ROW_BLOCK`` rows, which made rows independent of their batch on the
machine that measured it (not across CPU families); the integer M1 needs no padding.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from terse.entropy.quantize import quantize_probabilities
from terse.nn.gpt import KVCache
from terse.textcomp.model import ByteLM

ROW_BLOCK = 16


class LockstepM1:
    """M1 stepped one byte per row, all rows starting at position 0 (BOS).

    Finished rows are dropped now and then (``keep``). For a float M1 the batch is padded
    to a multiple of ``ROW_BLOCK`` rows (see the module docstring); an integer M1 needs
    no padding.
    """

    def __init__(self, m1: ByteLM, rows: int, positions: int, precision: int, symbols: int = 256,
                 compute: str = "integer"):
        self.m1, self.precision, self.symbols = m1, precision, symbols
        self.rows = rows
        if m1.exact:  # the model's own sliding window (windows rarely outgrow it)
            self.cache = m1.model.new_cache(rows)
            return
        self.config = dataclasses.replace(m1.model.config, window=positions)  # cache holds one window
        self.bf16 = compute == "bf16"
        self.cache = KVCache(self.config, _padded(rows), dtype=torch.bfloat16 if self.bf16 else torch.float32)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (rows,) -> integer frequencies (rows, symbols) summing to 2**precision."""
        if self.m1.exact:
            return self.m1.model.step(np.asarray(tokens, dtype=np.int64), self.cache, self.precision, self.symbols)
        padded = np.zeros(_padded(self.rows), dtype=np.int64)
        padded[: len(tokens)] = tokens
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.m1.model.step(torch.from_numpy(padded), self.cache)[: self.rows, : self.symbols]
        logits = logits.double().numpy()
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return quantize_probabilities(probs, self.precision)

    def keep(self, rows: np.ndarray) -> None:
        """Keep only these row indices (in this order)."""
        self.rows = len(rows)
        if self.m1.exact:
            self.cache.select(rows)
            return
        index = np.zeros(_padded(self.rows), dtype=np.int64)
        index[: len(rows)] = rows
        index_t = torch.from_numpy(index)
        for layer in range(len(self.cache.keys)):
            self.cache.keys[layer] = self.cache.keys[layer].index_select(0, index_t)
            self.cache.values[layer] = self.cache.values[layer].index_select(0, index_t)


def _padded(rows: int) -> int:
    return max(ROW_BLOCK, -(-rows // ROW_BLOCK) * ROW_BLOCK)
