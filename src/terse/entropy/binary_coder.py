"""Binary arithmetic coder for bit-wise context mixing (compiled with numba).

A carry-less 32-bit coder in the style of the paq/lpaq family: the interval
``[low, high]`` is split in proportion to a 12-bit probability that the next bit is 1;
once the top bytes of ``low`` and ``high`` agree they are final and shifted out. All
arithmetic is integer, so the coded bytes depend only on the probability sequence.

State lives in a small int64 array so compiled callers can carry it across calls:
``state = [low, high, value (decoder), position in the buffer]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

PROB_BITS = 12
_TOP = 0xFFFFFFFF


def new_state() -> np.ndarray:
    return np.array([0, _TOP, 0, 0], dtype=np.int64)


@njit(cache=True, inline="always")
def encode_bit(state, out, bit, p1):
    """Code ``bit`` with P(bit = 1) = p1 / 4096 (1 <= p1 <= 4095); bytes go to ``out``.

    ``out`` must have room for 4 more bytes per coded bit (callers reserve it).
    """
    low = state[0]
    high = state[1]
    mid = low + ((high - low) >> PROB_BITS) * p1
    if bit:
        high = mid
    else:
        low = mid + 1
    pos = state[3]
    while ((low ^ high) & 0xFF000000) == 0:
        out[pos] = high >> 24
        pos += 1
        low = (low << 8) & _TOP
        high = ((high << 8) & _TOP) | 255
    state[0] = low
    state[1] = high
    state[3] = pos


@njit(cache=True)
def finish_encoder(state, out):
    """Flush: four bytes of ``low`` pin the final interval. Returns the byte count."""
    low = state[0]
    pos = state[3]
    for shift in (24, 16, 8, 0):
        out[pos] = (low >> shift) & 255
        pos += 1
    state[3] = pos
    return pos


@njit(cache=True)
def start_decoder(state, data):
    value = 0
    pos = 0
    for _ in range(4):
        byte = data[pos] if pos < data.shape[0] else 0
        value = (value << 8) | byte
        pos += 1
    state[0] = 0
    state[1] = _TOP
    state[2] = value
    state[3] = pos


@njit(cache=True, inline="always")
def decode_bit(state, data, p1):
    """Inverse of :func:`encode_bit`. Reading past the end yields zeros (a corrupted
    stream then decodes to wrong data, which the caller's CRC32 check rejects)."""
    low = state[0]
    high = state[1]
    value = state[2]
    mid = low + ((high - low) >> PROB_BITS) * p1
    bit = 1 if value <= mid else 0
    if bit:
        high = mid
    else:
        low = mid + 1
    pos = state[3]
    while ((low ^ high) & 0xFF000000) == 0:
        low = (low << 8) & _TOP
        high = ((high << 8) & _TOP) | 255
        byte = data[pos] if pos < data.shape[0] else 0
        value = ((value << 8) & _TOP) | byte
        pos += 1
    state[0] = low
    state[1] = high
    state[2] = value
    state[3] = pos
    return bit
