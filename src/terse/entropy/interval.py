"""Exact arithmetic-coding intervals for short, self-contained codes.

Equal-Info windows code a few bytes into at most ``b`` (<= a few hundred) bits and then
reset, so they need exact bit counts rather than streaming. An interval is kept as
exact integers ``[low, low + width) / 2**depth`` (Python ints, no carries, no
renormalization); narrowing by a symbol with integer frequencies over ``2**precision``
is ``low <- low * 2**P + width * cum_low``, ``width <- width * freq``, ``depth += P``.

The *code* of an interval is the shortest dyadic interval ``[m / 2**n, (m+1) / 2**n)``
inside it, with the smallest such ``m`` (canonical); padded with zeros to ``b`` bits it
is the integer ``m << (b - n)``. Because narrowing only shrinks the interval, code
lengths never decrease as symbols are added, and a fresh interval narrowed by one
symbol of frequency >= 1 always has a code of at most ``precision + 1`` bits.
"""

from __future__ import annotations


class Interval:
    """One exact coding interval; starts as [0, 1)."""

    __slots__ = ("low", "width", "depth", "code_bits", "code")

    def __init__(self) -> None:
        self.low, self.width, self.depth = 0, 1, 0
        self.code_bits, self.code = 0, 0  # shortest code of the current interval: n and m

    def narrow(self, cum_low: int, freq: int, precision: int) -> None:
        """Restrict to the symbol occupying [cum_low, cum_low + freq) of 2**precision."""
        self.low = (self.low << precision) + self.width * cum_low
        self.width *= freq
        self.depth += precision

    def shorten(self, max_bits: int) -> bool:
        """Update the shortest code; False (code unchanged) if it needs more than ``max_bits``.

        Starts from the previous code length, which is a lower bound (monotonicity), so a
        window's lengths are found in O(max_bits) total steps.
        """
        low, high = self.low, self.low + self.width
        n = self.code_bits
        while n <= max_bits:
            shift = self.depth - n
            if shift < 0:  # cannot happen: at n = depth the code is low itself
                break
            m = -((-low) >> shift)  # ceil(low / 2**shift)
            if (m + 1) << shift <= high:
                self.code_bits, self.code = n, m
                return True
            n += 1
        return False

    def padded_code(self, total_bits: int) -> int:
        """The code as a ``total_bits``-bit integer (zero padding after the code bits)."""
        return self.code << (total_bits - self.code_bits)

    def target(self, value: int, total_bits: int, precision: int) -> int:
        """The cumulative count in [0, 2**precision) that the point ``value / 2**total_bits``
        falls into when this interval is split by the next symbol's frequencies."""
        numerator = (value << (self.depth + precision)) - (self.low << (precision + total_bits))
        return numerator // (self.width << total_bits)
