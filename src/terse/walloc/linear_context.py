"""The linear-logistic context model (entropy tables v1, no ``entropy.layout``) for WaLLoC latents.

Kept because it generalises better than the MLP of :mod:`terse.walloc.entropy_model` where the
training set is small: the shipped stereo codec (about 15 music clips) uses it; the MLP overfits
those clips (measured: 0-4% fewer bytes than lossless WebP on the held-out clips, this model 7%).
Bitstreams are unchanged from terse's first WaLLoC release.

Each latent value q[c, i, j] (audio: a (C, 1, T) "image") gets a discretized logistic
distribution over the 2**b - 1 integer levels:

* mean: a linear prediction from 8 already-coded causal neighbours of the same channel
  (images: left, up, up-left, up-right and 4 at distance 2; audio: the 8 previous time
  steps) plus the median edge detector of LOCO-I / JPEG-LS;
* scale: exp of a linear function of log-magnitudes of those neighbours, of the local
  gradients and of the neighbourhood energy across *all* channels (texture / loudness is
  shared across wavelet channels).

The parameters (C x 10 for the mean, C x 13 for the scale, plus per-channel normalisers)
are fitted on training latents by minimising the exact code length (negative
log-likelihood of the discretized distribution) with Adam, and stored with the model.
Measured on Kodak: 10-12% fewer bytes than the same latents as lossless WebP (the paper's
storage); simpler variants (4 neighbours only) gained about 5%.

Coding order is a wavefront t = 2 i + j (:class:`terse.walloc.context_coding.WavefrontCoder`):
every neighbour of a wavefront's positions lies in an earlier wavefront. Encoder and decoder
compute each wavefront's tables with the same float64 numpy operations, so both sides see
identical frequency tables.
"""

from __future__ import annotations

import numpy as np
import torch

from terse.core.errors import FormatError
from terse.walloc.context_coding import (
    EPS,
    WavefrontCoder,
    all_positions,
    code_length,
    fit_latents,
    freqs_from_cdf,
    level_edges,
    logistic_mass,
    padded_grid,
    wavefront_positions,
)

NUM_NEIGHBOURS = 8
PAD_TOP, PAD_LEFT, PAD_RIGHT = 2, 8, 2
# Clamp of the log-scale at coding time (fitting has none): fixed by the files of terse's first
# WaLLoC release, which the stereo codec still writes; not the MLP model's range.
LOG_SCALE_CLAMP = (-5.0, 7.0)
FIT_STEPS = 250
FIT_POSITIONS = 16384  # positions (per channel) the fit uses at most: a random subset


def _neighbours(padded: np.ndarray, i: np.ndarray, j: np.ndarray, audio: bool) -> np.ndarray:
    """Causal neighbour values (C, n, 8). Images: left, up, up-left, up-right, then (0,-2),
    (-2,0), (-1,-2), (-2,+1) (all in earlier wavefronts 2i+j); a neighbour outside the
    latent is replaced by the nearest coded one, so borders are predicted rather than seen
    as zeros. Audio: the 8 previous time steps (the oldest coded one repeated near the start)."""
    width = padded.shape[2] - PAD_LEFT - PAD_RIGHT

    def at(di, dj):
        return padded[:, i + PAD_TOP + di, j + PAD_LEFT + dj]

    if audio:
        cols = [np.where(j > 0, np.maximum(j - k, 0), -1) for k in range(1, NUM_NEIGHBOURS + 1)]  # -1: zero pad
        return np.stack([padded[:, i + PAD_TOP, col + PAD_LEFT] for col in cols], axis=-1)
    top, first, last = i == 0, j == 0, j == width - 1
    up = np.where(top, at(0, -1), at(-1, 0))
    left = np.where(first, up, at(0, -1))
    up = np.where(top, left, up)
    up_left = np.where(top, left, np.where(first, up, at(-1, -1)))
    up_right = np.where(top, left, np.where(last, up, at(-1, 1)))
    left2 = np.where(j < 2, left, at(0, -2))
    up2 = np.where(i < 2, up, at(-2, 0))
    up_left2 = np.where((i < 1) | (j < 2), up_left, at(-1, -2))
    up2_right = np.where((i < 2) | last, up, at(-2, 1))
    return np.stack((left, up, up_left, up_right, left2, up2, up_left2, up2_right), axis=-1)


def _features(nb, inv_typical):
    """Neighbour values (C, n, 8) -> (mean features (C, n, 10), scale features (C, n, 13)), with
    bias columns. Mean: the neighbours and the median edge detector of LOCO-I / JPEG-LS.
    Scale: log-magnitudes of the neighbours, of the local gradients, and of the neighbourhood
    energy across all channels. Plain elementwise ops, so numpy (coding, float64) and torch
    (fitting) compute the same thing; only the numpy path ever feeds the coder."""
    xp = torch if isinstance(nb, torch.Tensor) else np
    left, up, up_left, up_right = nb[..., 0], nb[..., 1], nb[..., 2], nb[..., 3]
    lo, hi = xp.minimum(left, up), xp.maximum(left, up)
    med = xp.where(up_left >= hi, lo, xp.where(up_left <= lo, hi, left + up - up_left))
    ones = xp.ones(nb.shape[:-1] + (1,), dtype=nb.dtype)
    mean_feats = xp.concatenate((nb, med[..., None], ones), axis=-1)
    magnitude = xp.abs(nb)
    energy = (magnitude[..., :4] * inv_typical[:, None, None]).mean(axis=(0, 2))  # (n,): across all channels
    energy = xp.broadcast_to(energy[None, :, None], nb.shape[:-1] + (1,))
    gradients = xp.abs(xp.stack((left - up_left, up - up_left, up - up_right), axis=-1))
    scale_feats = xp.concatenate((xp.log(EPS + magnitude), xp.log(EPS + energy), xp.log(EPS + gradients), ones), axis=-1)
    return mean_feats, scale_feats


def fit_linear_context_model(latents, config, steps: int = FIT_STEPS) -> dict[str, torch.Tensor]:
    """Fit the context model on integer latents: a (B, C, H, W) / (B, C, T) tensor or a list of
    (C, H, W) / (C, T) arrays of any sizes (whole images fit better than small crops: fewer
    borders) -> tensors to store with the model."""
    lat, audio, channels, max_int = fit_latents(latents, config)
    typical = np.concatenate([x.reshape(channels, -1) for x in lat], axis=1)
    inv_typical = 1.0 / np.maximum(np.abs(typical).mean(axis=1), 0.5)  # (C,)
    nbs, targets = [], []
    for x in lat:
        padded = padded_grid(x.shape, (PAD_TOP, PAD_LEFT, PAD_RIGHT))
        padded[:, PAD_TOP:, PAD_LEFT:-PAD_RIGHT] = x
        i, j = all_positions(*x.shape[1:])
        nbs.append(_neighbours(padded, i, j, audio))
        targets.append(x.reshape(channels, -1))
    nb = np.concatenate(nbs, axis=1)  # (C, N, 8)
    q = np.concatenate(targets, axis=1)  # (C, N)
    if q.shape[1] > FIT_POSITIONS:
        keep = np.sort(np.random.default_rng(0).choice(q.shape[1], FIT_POSITIONS, replace=False))
        nb, q = nb[:, keep], q[:, keep]
    nb, q = torch.tensor(nb, dtype=torch.float32), torch.tensor(q, dtype=torch.float32)
    mean_feats, scale_feats = _features(nb, torch.tensor(inv_typical, dtype=torch.float32))
    # start: least-squares mean, constant scale from the residual spread
    mean_w = torch.stack([torch.linalg.lstsq(mean_feats[c], q[c, :, None]).solution[:, 0] for c in range(channels)])
    residual = q - (mean_feats * mean_w[:, None]).sum(-1)
    scale_w = torch.zeros(channels, scale_feats.shape[-1])
    scale_w[:, -1] = torch.log(residual.abs().mean(1).clamp_min(0.05) * 0.6)  # logistic scale ~ 0.6 mean |r|
    mean_w.requires_grad_(True)
    scale_w.requires_grad_(True)
    optimizer = torch.optim.Adam([mean_w, scale_w], lr=0.03)
    for _ in range(steps):
        mean = (mean_feats * mean_w[:, None]).sum(-1)
        log_scale = (scale_feats * scale_w[:, None]).sum(-1)
        loss = code_length(logistic_mass(q, mean, torch.exp(-log_scale), max_int)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"entropy.mean_weights": mean_w.detach().float(), "entropy.scale_weights": scale_w.detach().float(),
            "entropy.inv_typical": torch.tensor(inv_typical, dtype=torch.float32)}


def _logistic_freqs(mean: np.ndarray, scale: np.ndarray, max_int: int) -> np.ndarray:
    """Discretized logistic over k in [-max_int, max_int] -> (n, 2 max_int + 1) integer frequencies.

    The CDF is evaluated once per bin edge k + 1/2 (edges are exact in float64); the outer
    edges are -inf / +inf, so the tails fold into the extreme levels.
    """
    edges = level_edges(max_int)
    cdf = 0.5 * (1 + np.tanh(0.5 * (edges - mean[:, None]) / scale[:, None]))  # logistic CDF via tanh: no overflow
    return freqs_from_cdf(cdf)


class LinearContextModel(WavefrontCoder):
    """Codes integer latents with the fitted tables (float64 copies of the stored float32)."""

    position_major = False  # a wavefront's symbols channel by channel, as in the first release

    def __init__(self, tables: dict[str, torch.Tensor], max_int: int, modality: str) -> None:
        try:
            self.mean_w = tables["entropy.mean_weights"].double().numpy()  # (C, 10)
            self.scale_w = tables["entropy.scale_weights"].double().numpy()  # (C, 13)
            self.inv_typical = tables["entropy.inv_typical"].double().numpy()  # (C,)
        except KeyError as exc:
            raise FormatError(f"the model has no entropy tables ({exc})") from None
        self.channels = self.mean_w.shape[0]
        self.max_int = max_int
        self.audio = modality == "audio"

    def pads(self) -> tuple[int, int, int]:
        return PAD_TOP, PAD_LEFT, PAD_RIGHT

    def wavefront(self, padded: np.ndarray, t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i, j = wavefront_positions(t, h, w)
        mean_feats, scale_feats = _features(_neighbours(padded, i, j, self.audio), self.inv_typical)
        mean = (mean_feats * self.mean_w[:, None]).sum(-1)  # (C, n)
        scale = np.exp(np.clip((scale_feats * self.scale_w[:, None]).sum(-1), *LOG_SCALE_CLAMP))
        return i, j, _logistic_freqs(mean.ravel(), scale.ravel(), self.max_int)


def untrained_linear_tables(channels: int) -> dict[str, torch.Tensor]:
    """Tables of an unfitted model (mean 0, scale 1): valid for coding, just not compact."""
    return {"entropy.mean_weights": torch.zeros(channels, NUM_NEIGHBOURS + 2),
            "entropy.scale_weights": torch.zeros(channels, NUM_NEIGHBOURS + 5),
            "entropy.inv_typical": torch.ones(channels)}
