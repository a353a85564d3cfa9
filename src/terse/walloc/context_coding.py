"""What WaLLoC's context models share: the latent grid, the wavefront scan, the fitting
inputs, the discretized-logistic code length they are fitted on, frequency tables from a CDF,
and the wavefront encode/decode loop.

Both wavefront models (:mod:`terse.walloc.entropy_model`, the MLP; :mod:`terse.walloc.linear_context`,
the linear-logistic model of the stereo codec) code a (C, H, W) latent (audio: (C, 1, T))
one wavefront t = 2 i + j at a time: every context position lies in an earlier wavefront, so
one wavefront (all channels) is one vectorized range-coder call. A model supplies its padding
and the frequency rows of one wavefront; this base does the scan. The parallel model
(:mod:`terse.walloc.parallel_context`) has its own pass schedule and integer network, and
shares the table precision and the fitting loss.
"""

from __future__ import annotations

import numpy as np
import torch

from terse.core.errors import FormatError
from terse.entropy.quantize import quantize_probabilities

PRECISION = 16  # bits of every frequency table
EPS = 0.5  # log(EPS + |q|): integer magnitudes, so 0.5 keeps log finite and smooth


def as_grid(latent: np.ndarray) -> np.ndarray:
    """(C, H, W) or (C, T) -> (C, H, W)."""
    return latent[:, None, :] if latent.ndim == 2 else latent


def all_positions(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return ii.ravel(), jj.ravel()


def wavefront_positions(t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (i, j) of an h x w grid with 2 i + j = t (the coding order of both wavefront models)."""
    i = np.arange(max(0, -((w - 1 - t) // 2)), min(h - 1, t // 2) + 1)
    return i, t - 2 * i


def fit_latents(latents, config) -> tuple[list[np.ndarray], bool, int, int]:
    """Fitting inputs: a (B, C, H, W) / (B, C, T) tensor or a list of (C, H, W) / (C, T) arrays
    -> float64 (C, H, W) grids, whether they are audio, the channel count and max_int."""
    items = [np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64) for x in latents]
    audio = items[0].ndim == 2
    grids = [as_grid(x) for x in items]
    return grids, audio, grids[0].shape[0], config.max_int


def padded_grid(shape: tuple[int, int, int], pads: tuple[int, int, int]) -> np.ndarray:
    """Zeros of (C, H, W) ``shape`` with (rows above, columns left, columns right) of padding."""
    c, h, w = shape
    top, left, right = pads
    return np.zeros((c, h + top, w + left + right), dtype=np.float64)


def logistic_mass(q: torch.Tensor, mean: torch.Tensor, inv_scale: torch.Tensor, max_int: int) -> torch.Tensor:
    """Torch (fitting): P(q) under a discretized logistic, tails folded into +-max_int.
    ``q`` broadcasts against ``mean`` and ``inv_scale`` (e.g. a trailing mixture axis)."""
    upper = torch.where(q >= max_int, torch.ones_like(mean), torch.sigmoid((q + 0.5 - mean) * inv_scale))
    lower = torch.where(q <= -max_int, torch.zeros_like(mean), torch.sigmoid((q - 0.5 - mean) * inv_scale))
    return upper - lower


def code_length(p: torch.Tensor) -> torch.Tensor:
    """-log2 of a probability, floored at 1e-9 so a fit never sees an infinite loss."""
    return -torch.log2(p.clamp_min(1e-9))


def level_edges(max_int: int) -> np.ndarray:
    """Bin edges k + 1/2 of the levels k in [-max_int, max_int] (exact in float64)."""
    return np.arange(-max_int - 0.5, max_int + 1.0, dtype=np.float64)


def freqs_from_cdf(cdf: np.ndarray) -> np.ndarray:
    """CDF rows at :func:`level_edges` -> integer frequencies; the outer edges become 0 and 1,
    so the tails fold into the extreme levels."""
    cdf[:, 0] = 0.0
    cdf[:, -1] = 1.0
    return quantize_probabilities(np.maximum(np.diff(cdf, axis=1), 0.0), PRECISION)


class WavefrontCoder:
    """The encode/decode loop of a wavefront context model.

    A subclass sets ``channels``, ``max_int`` and ``audio``, and implements :meth:`pads`
    (rows above, columns left and right of the zero-padded grid) and :meth:`wavefront`
    (positions and frequency rows of one wavefront). ``position_major``: the symbols of a
    wavefront are ordered position by position (else channel by channel).
    """

    channels: int
    max_int: int
    audio: bool
    position_major: bool = True

    def pads(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def wavefront(self, padded: np.ndarray, t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (i, j) of wavefront t and their (n C, levels) frequency rows."""
        raise NotImplementedError

    def _check_channels(self, channels: int) -> None:
        if channels != self.channels:
            raise FormatError(f"latent has {channels} channels, the entropy model {self.channels}")

    def encode(self, latent: np.ndarray) -> bytes:
        """(C, H, W) or (C, T) integers in [-max_int, max_int] -> bytes."""
        from terse.entropy.range_coder import RangeEncoder

        q = as_grid(np.asarray(latent)).astype(np.int64)
        c, h, w = q.shape
        self._check_channels(c)
        top, left, right = self.pads()
        padded = padded_grid(q.shape, (top, left, right))
        padded[:, top:, left: left + w] = q
        encoder = RangeEncoder()
        for t in range(2 * (h - 1) + w):
            i, j, freqs = self.wavefront(padded, t, h, w)
            symbols = q[:, i, j].T if self.position_major else q[:, i, j]
            encoder.encode((symbols + self.max_int).ravel(), freqs)
        return encoder.finish()

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        from terse.entropy.range_coder import RangeDecoder

        grid = (shape[0], 1, shape[1]) if len(shape) == 2 else tuple(shape)
        c, h, w = grid
        self._check_channels(c)
        top, left, right = self.pads()
        padded = padded_grid(grid, (top, left, right))
        decoder = RangeDecoder(data)
        for t in range(2 * (h - 1) + w):
            i, j, freqs = self.wavefront(padded, t, h, w)
            symbols = decoder.decode(freqs)
            symbols = symbols.reshape(len(i), c).T if self.position_major else symbols.reshape(c, len(i))
            padded[:, i + top, j + left] = symbols - self.max_int
        return padded[:, top:, left: left + w].astype(np.int64).reshape(shape)
