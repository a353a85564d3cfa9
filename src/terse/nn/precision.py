"""Which float precision to train in on this machine.

bf16 autocast is ~3x faster than fp32 on a CPU with native bf16 (AVX512-BF16, AMX) and
~50x slower on one without (AVX2 only), where oneDNN emulates it. Flags do not tell the
whole story (``ONEDNN_MAX_CPU_ISA`` can switch the fast kernels off), so the choice is
measured: one small matmul in each precision, once per process.
"""

from __future__ import annotations

import functools
import time

import torch

MIXED_PRECISIONS = ("auto", "bf16", "no")


def _best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def bf16_is_fast(device_type: str = "cpu") -> bool:
    """Whether a bf16 matmul is at least as fast as an fp32 one on ``device_type``."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    a = torch.randn(256, 256)
    b16, a16 = a.bfloat16(), a.bfloat16()
    a @ a, a16 @ b16  # first-call costs out of the timing
    fp32 = _best_of(lambda: [a @ a for _ in range(4)])
    bf16 = _best_of(lambda: [a16 @ b16 for _ in range(4)])
    return bf16 <= fp32


def use_bf16(mixed_precision: str, device_type: str = "cpu") -> bool:
    """Resolve a ``mixed_precision`` setting ("auto", "bf16" or "no") for a device."""
    if mixed_precision not in MIXED_PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {mixed_precision!r}")
    if mixed_precision == "auto":
        return bf16_is_fast(device_type)
    return mixed_precision == "bf16"
