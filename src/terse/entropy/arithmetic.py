"""Exact integer arithmetic coder with bit-level output (Witten, Neal & Cleary 1987).

Pure Python, symbol at a time: this is the reference the fast range coder is tested
against, and the coder to use wherever exact bit counts matter more than speed. State is
a pair of ``STATE_BITS``-bit integers; frequencies must sum to ``2**precision`` with
``precision <= STATE_BITS - 2`` so no interval ever collapses.
"""

from __future__ import annotations

from terse.core.errors import FormatError

STATE_BITS = 32
_TOP = (1 << STATE_BITS) - 1
_HALF = 1 << (STATE_BITS - 1)
_QUARTER = 1 << (STATE_BITS - 2)


class ArithmeticEncoder:
    """Encode symbols given (cumulative low, frequency, total) and collect output bits."""

    def __init__(self) -> None:
        self.low, self.high = 0, _TOP
        self.pending = 0
        self.bits: list[int] = []

    def _emit(self, bit: int) -> None:
        self.bits.append(bit)
        self.bits.extend([1 - bit] * self.pending)
        self.pending = 0

    def encode(self, cum_low: int, freq: int, total: int) -> None:
        if freq <= 0 or cum_low < 0 or cum_low + freq > total or total > _QUARTER:
            raise ValueError("invalid symbol interval")
        span = self.high - self.low + 1
        self.high = self.low + span * (cum_low + freq) // total - 1
        self.low = self.low + span * cum_low // total
        while True:
            if self.high < _HALF:
                self._emit(0)
            elif self.low >= _HALF:
                self._emit(1)
                self.low -= _HALF
                self.high -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.pending += 1
                self.low -= _QUARTER
                self.high -= _QUARTER
            else:
                break
            self.low = 2 * self.low
            self.high = 2 * self.high + 1

    def finish(self) -> list[int]:
        """Flush: two more bits (plus pending) pin the final interval; returns all bits."""
        self.pending += 1
        self._emit(0 if self.low < _QUARTER else 1)
        return self.bits


class ArithmeticDecoder:
    """Decode from a bit sequence; bits past the end read as zeros."""

    def __init__(self, bits: list[int]) -> None:
        self.bits = bits
        self.position = 0
        self.low, self.high = 0, _TOP
        self.value = 0
        for _ in range(STATE_BITS):
            self.value = 2 * self.value + self._next_bit()

    def _next_bit(self) -> int:
        bit = self.bits[self.position] if self.position < len(self.bits) else 0
        self.position += 1
        return bit

    def target(self, total: int) -> int:
        """The cumulative count the next symbol's interval must contain."""
        span = self.high - self.low + 1
        return ((self.value - self.low + 1) * total - 1) // span

    def consume(self, cum_low: int, freq: int, total: int) -> None:
        """Narrow the interval to the decoded symbol (same arithmetic as the encoder)."""
        span = self.high - self.low + 1
        self.high = self.low + span * (cum_low + freq) // total - 1
        self.low = self.low + span * cum_low // total
        while True:
            if self.high < _HALF:
                pass
            elif self.low >= _HALF:
                self.low -= _HALF
                self.high -= _HALF
                self.value -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.low -= _QUARTER
                self.high -= _QUARTER
                self.value -= _QUARTER
            else:
                break
            self.low = 2 * self.low
            self.high = 2 * self.high + 1
            self.value = 2 * self.value + self._next_bit()

    def decode(self, cdf: list[int] | tuple[int, ...]) -> int:
        """Decode one symbol given its cumulative table (length V+1, cdf[0] = 0)."""
        total = cdf[-1]
        t = self.target(total)
        lo, hi = 0, len(cdf) - 2
        while lo < hi:  # largest s with cdf[s] <= t
            mid = (lo + hi + 1) // 2
            if cdf[mid] <= t:
                lo = mid
            else:
                hi = mid - 1
        if not cdf[lo] <= t < cdf[lo + 1]:
            raise FormatError("corrupted arithmetic-coded data")
        self.consume(cdf[lo], cdf[lo + 1] - cdf[lo], total)
        return lo


def bits_to_bytes(bits: list[int]) -> bytes:
    """Pack bits MSB-first, zero-padding the last byte."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def bytes_to_bits(data: bytes, num_bits: int | None = None) -> list[int]:
    bits = [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]
    return bits if num_bits is None else bits[:num_bits]
