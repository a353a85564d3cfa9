"""Fast batched range coding of categorical symbols (constriction backend).

The product's hot path: one call codes a whole (n, V) table of quantized frequency rows,
so there is no per-symbol Python. Frequencies come from
:func:`terse.entropy.quantize.quantize_probabilities`; they are passed to constriction
as exact dyadic probabilities, and constriction's own (deterministic) quantization to its
24-bit precision keeps every symbol codable.
"""

from __future__ import annotations

import numpy as np

from terse.core.errors import FormatError


def _model_family():
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


def _probabilities(freqs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(freqs, dtype=np.float64)


class RangeEncoder:
    """Accumulates symbols; ``finish()`` returns the compressed bytes."""

    def __init__(self) -> None:
        import constriction

        self._encoder = constriction.stream.queue.RangeEncoder()
        self._family = _model_family()

    def encode(self, symbols: np.ndarray, freqs: np.ndarray) -> None:
        """symbols (n,) with their frequency rows (n, V)."""
        if len(symbols):
            self._encoder.encode(np.ascontiguousarray(symbols, dtype=np.int32), self._family, _probabilities(freqs))

    def finish(self) -> bytes:
        return self._encoder.get_compressed().astype("<u4").tobytes()


class RangeDecoder:
    """Decodes symbols from bytes produced by :class:`RangeEncoder`."""

    def __init__(self, data: bytes) -> None:
        import constriction

        if len(data) % 4:
            raise FormatError("corrupted payload: range-coded data is not a whole number of 32-bit words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._decoder = constriction.stream.queue.RangeDecoder(words)
        self._family = _model_family()

    def decode(self, freqs: np.ndarray) -> np.ndarray:
        """Decode ``len(freqs)`` symbols, one per frequency row (n, V) -> (n,) int64."""
        if len(freqs) == 0:
            return np.zeros(0, dtype=np.int64)
        try:
            return np.asarray(self._decoder.decode(self._family, _probabilities(freqs)), dtype=np.int64)
        except BaseException as exc:  # constriction raises on invalid data
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise FormatError(f"corrupted payload: {exc}") from None
