"""Entropy coding shared by textcomp and walloc: CDF quantization, an exact bit-level
arithmetic coder (reference and bit-exact uses), exact short-interval codes and a fast
batched range coder."""

from terse.core.exports import lazy_exports

_EXPORTS = {
    "quantize_probabilities": "terse.entropy.quantize",
    "cumulative": "terse.entropy.quantize",
    "ArithmeticEncoder": "terse.entropy.arithmetic",
    "ArithmeticDecoder": "terse.entropy.arithmetic",
    "Interval": "terse.entropy.interval",
    "RangeEncoder": "terse.entropy.range_coder",
    "RangeDecoder": "terse.entropy.range_coder",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
