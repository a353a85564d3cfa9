"""Learned context model for WaLLoC's 8-bit latents, coded with the range coder.

Each latent value q[c, i, j] (audio: a (C, 1, T) "image") gets a mixture of
``MIXTURE`` discretized logistics over the 2**b - 1 integer levels, predicted by a small
MLP from the causal neighbourhood of *all* channels:

* context: the values of every channel at ``NUM_OFFSETS`` = 12 already-coded positions
  (images: the causal half of a 5x6 window, see ``IMAGE_OFFSETS``; audio: the 12 previous
  time steps), as values normalised by each channel's typical magnitude and as
  log-magnitudes, plus one "inside the latent" flag per position (borders are zero-padded);
* network: a shared trunk (2 C 12 + 12 -> 128 -> 64, SiLU) computed once per position and a
  linear head per channel giving the means, log-scales and weights of the mixture; a linear
  term over the raw context is added to each mean (the classic linear predictor);
* fitted on training latents (never the evaluation set) by minimising the exact code length
  (negative log-likelihood of the discretized distribution) with Adam; stored with the model
  as ``entropy.*`` tensors.

Why this model: the latent channels are a PCA of wavelet packet coefficients, so they are
decorrelated at one position, but their *magnitudes* (texture, edges) are strongly shared
across channels and space. Measured on the 24 Kodak images (real range-coded payloads,
fitted on BSDS500 only): 18.2% (16x) and 15.6% (4x) fewer bytes than the same latents as
lossless WebP, where the per-channel linear-logistic model of
:mod:`terse.walloc.linear_context` (8 own-channel neighbours) gives 11.6% and 10.4%. On audio
(about 15 training clips) this MLP overfits: 0-4% on the held-out clips against 7.1% for the
linear model, so the shipped stereo codec keeps the linear model
(:func:`terse.walloc.context_models.context_model` picks the coder from the tables). Coding
the channels of one position in groups, each group conditioned on the earlier groups at the
same position, gained < 1% for several times the coder calls, so one wavefront stays one call.

Coding order is a wavefront t = 2 i + j (:class:`terse.walloc.context_coding.WavefrontCoder`):
every context position (di, dj) has 2 di + dj < 0, so it lies in an earlier wavefront.
Encoder and decoder compute each wavefront's tables with the same float64 numpy operations on
arrays of the same shapes; the network outputs are further snapped to a fine grid (``_snap``),
so a last-bit difference in a dot product (another BLAS, another CPU) changes a table only if
an output lies within that last bit of a grid midpoint: unlikely, not impossible. Files decode
across torch thread counts (tested); across machines, as for :mod:`terse.textcomp`'s LM coder,
a mismatch is caught by the latents' CRC32 (an error, never silently wrong output); a guarantee
would need fixed-point arithmetic.
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

# (di, dj) with 2 di + dj < 0: all in earlier wavefronts of the t = 2 i + j scan
IMAGE_OFFSETS = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-1, -2), (-2, 1), (-2, -1), (-2, 2),
                 (-2, -2), (-2, 3))
AUDIO_OFFSETS = tuple((0, -k) for k in range(1, 13))
NUM_OFFSETS = len(IMAGE_OFFSETS)
PAD_TOP, PAD_LEFT, PAD_RIGHT = 2, 2, 3
PAD_LEFT_AUDIO = 12
HIDDEN = (128, 64)
MIXTURE = 2
# Clamp of the log-scales, in fitting and in coding: part of this model's tables (a file's
# frequency tables depend on it), so it is not shared with the linear model's.
LOG_SCALE_RANGE = (-4.0, 6.0)
TABLES_VERSION = 2  # entropy.layout = [version, NUM_OFFSETS, *HIDDEN, MIXTURE]
FIT_STEPS = 3000
FIT_BATCH = 2048
FIT_POSITIONS = 500_000  # positions the fit uses at most: a random subset


def _layout(hidden: tuple[int, int] = HIDDEN) -> torch.Tensor:
    return torch.tensor([TABLES_VERSION, NUM_OFFSETS, *hidden, MIXTURE], dtype=torch.int64)


def _pads(audio: bool) -> tuple[int, int, int]:
    return (0, PAD_LEFT_AUDIO, 0) if audio else (PAD_TOP, PAD_LEFT, PAD_RIGHT)


def _context(padded: np.ndarray, i: np.ndarray, j: np.ndarray, audio: bool) -> tuple[np.ndarray, np.ndarray]:
    """Causal context of positions (i, j): values (n, C * 12) (channel-major) and inside flags (n, 12).
    Outside the latent the padding is zero and the flag 0."""
    top, left, right = _pads(audio)
    height, width = padded.shape[1] - top, padded.shape[2] - left - right
    offsets = np.array(AUDIO_OFFSETS if audio else IMAGE_OFFSETS)
    rows = i[:, None] + offsets[None, :, 0]  # (n, 12)
    cols = j[:, None] + offsets[None, :, 1]
    inside = ((rows >= 0) & (cols >= 0) & (cols < width) & (rows < height)).astype(np.float64)
    values = padded[:, rows + top, cols + left]  # (C, n, 12)
    return np.ascontiguousarray(values.transpose(1, 0, 2).reshape(len(i), -1)), inside


def _silu(x):
    return x * 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for any x


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 matrix product through torch: numpy's OpenBLAS spins up threads even for these
    small products and is 50-100x slower on a busy 2-core machine."""
    return (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()


def _snap(x: np.ndarray, step: float) -> np.ndarray:
    return np.round(x / step) * step


def _network(values, inside, weights: dict, channels: int):
    """Context (n, C 12), (n, 12) -> means, log-scales, mixture logits, each (n, C, MIXTURE).
    The same ops in numpy (coding, float64) and torch (fitting)."""
    xp = torch if isinstance(values, torch.Tensor) else np
    act = torch.nn.functional.silu if xp is torch else _silu
    mm = torch.matmul if xp is torch else _matmul
    raw = values * weights["inv_typical"]  # (n, C 12)
    magnitude = xp.log(EPS + xp.abs(values))
    h = act(mm(xp.concatenate((raw, magnitude, inside), -1), weights["trunk1"]) + weights["trunk1_bias"])  # (n, H1)
    h = act(mm(h, weights["trunk2"]) + weights["trunk2_bias"])  # (n, H2)
    out = (mm(h, weights["head"]) + weights["head_bias"]).reshape(len(values), channels, 3, MIXTURE)
    linear = mm(raw, weights["linear"]) * weights["typical"]  # (n, C): linear predictor, integer units
    return out[:, :, 0] + linear[:, :, None], out[:, :, 1], out[:, :, 2]


def _mixture_bits(q, means, log_scales, logits, max_int: int):
    """Torch: -log2 P(q) under the mixture. q (n, C); others (n, C, K)."""
    inv = torch.exp(-log_scales.clamp(*LOG_SCALE_RANGE))
    return code_length((logistic_mass(q[..., None], means, inv, max_int) * torch.softmax(logits, -1)).sum(-1))


def fit_entropy_model(latents, config, steps: int = FIT_STEPS, seed: int = 0,
                      hidden: tuple[int, int] = HIDDEN) -> dict[str, torch.Tensor]:
    """Fit the context model on integer latents: a (B, C, H, W) / (B, C, T) tensor or a list of
    (C, H, W) / (C, T) arrays of any sizes (whole images fit better than small crops: fewer
    borders) -> tensors to store with the model. ``hidden``: the trunk widths (stored in
    ``entropy.layout``)."""
    lat, audio, channels, max_int = fit_latents(latents, config)
    typical = np.maximum(np.concatenate([x.reshape(channels, -1) for x in lat], axis=1).std(axis=1), 0.5)  # (C,)
    contexts, flags, targets = [], [], []
    for x in lat:
        top, left, right = _pads(audio)
        padded = padded_grid(x.shape, (top, left, right))
        padded[:, top:, left: padded.shape[2] - right] = x
        i, j = all_positions(*x.shape[1:])
        values, inside = _context(padded, i, j, audio)
        contexts.append(values.astype(np.float32))
        flags.append(inside.astype(np.float32))
        targets.append(x.reshape(channels, -1).T.astype(np.float32))
    values, inside, q = (torch.from_numpy(np.concatenate(a)) for a in (contexts, flags, targets))
    rng = torch.Generator().manual_seed(seed)
    if len(q) > FIT_POSITIONS:
        keep = torch.randperm(len(q), generator=rng)[:FIT_POSITIONS]
        values, inside, q = values[keep], inside[keep], q[keep]
    tables = untrained_tables(channels, hidden)
    width = channels * NUM_OFFSETS
    with torch.no_grad():
        tables["entropy.typical"] = torch.tensor(typical, dtype=torch.float32)
        tables["entropy.inv_typical"] = (1.0 / tables["entropy.typical"]).repeat_interleave(NUM_OFFSETS)
        tables["entropy.trunk1"].normal_(0.0, (2 * width + NUM_OFFSETS) ** -0.5, generator=rng)
        tables["entropy.trunk2"].normal_(0.0, hidden[0] ** -0.5, generator=rng)
        bias = tables["entropy.head_bias"].view(channels, 3, MIXTURE)
        bias[:, 1] = torch.log(tables["entropy.typical"] * 0.5)[:, None] + torch.linspace(-0.5, 0.5, MIXTURE)
    trained = {k: v.clone().requires_grad_(v.is_floating_point() and k not in ("entropy.typical", "entropy.inv_typical"))
               for k, v in tables.items()}
    params = [v for v in trained.values() if v.requires_grad]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    weights = {k.removeprefix("entropy."): v for k, v in trained.items()}
    for step in range(steps):
        if step == int(0.7 * steps):
            for group in optimizer.param_groups:
                group["lr"] = 1e-3
        batch = torch.randint(len(q), (min(FIT_BATCH, len(q)),), generator=rng)
        means, log_scales, logits = _network(values[batch], inside[batch], weights, channels)
        loss = _mixture_bits(q[batch], means, log_scales, logits, max_int).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in trained.items()}


def _mixture_freqs(means: np.ndarray, log_scales: np.ndarray, logits: np.ndarray, max_int: int) -> np.ndarray:
    """Mixture of discretized logistics over k in [-max_int, max_int]: (n, K) parameters ->
    (n, 2 max_int + 1) integer frequencies. The CDF is evaluated once per bin edge k + 1/2
    (edges are exact in float64); the outer edges are -inf / +inf, so the tails fold into the
    extreme levels."""
    edges = level_edges(max_int)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    # logistic CDF = (1 + tanh(z / 2)) / 2: no overflow; in-place ops on one (n, K, edges) array
    z = np.subtract(edges[None, None, :], means[:, :, None])
    z *= (0.5 * np.exp(-log_scales))[:, :, None]
    np.tanh(z, out=z)
    z *= (0.5 * weights)[:, :, None]
    cdf = z.sum(axis=1)
    cdf += 0.5
    return freqs_from_cdf(cdf)


class ContextModel(WavefrontCoder):
    """Codes integer latents with the fitted tables (float64 copies of the stored float32)."""

    def __init__(self, tables: dict[str, torch.Tensor], max_int: int, modality: str) -> None:
        layout = tables.get("entropy.layout")
        if layout is None:
            raise FormatError("the model has no entropy tables of the MLP context model (entropy.layout missing); "
                              "fit them with terse.walloc.entropy_model.fit_entropy_model")
        layout = [int(v) for v in layout.tolist()]
        if len(layout) != 5 or layout[:2] != [TABLES_VERSION, NUM_OFFSETS] or layout[4] != MIXTURE or min(layout) < 1:
            raise FormatError(f"the model's entropy tables have layout {layout}, this terse reads "
                              f"[{TABLES_VERSION}, {NUM_OFFSETS}, hidden, hidden, {MIXTURE}]")
        try:
            self.weights = {k.removeprefix("entropy."): tables[k].double().numpy()
                            for k in untrained_tables(1) if k != "entropy.layout"}
            expected = untrained_tables(len(self.weights["typical"]), (layout[2], layout[3]))
            for key, value in expected.items():
                if tables[key].shape != value.shape:
                    raise FormatError(f"entropy table {key} has shape {tuple(tables[key].shape)}, "
                                      f"its layout says {tuple(value.shape)}")
        except KeyError as exc:
            raise FormatError(f"the model has no entropy tables ({exc})") from None
        self.channels = len(self.weights["typical"])
        self.max_int = max_int
        self.audio = modality == "audio"

    def pads(self) -> tuple[int, int, int]:
        return _pads(self.audio)

    def wavefront(self, padded: np.ndarray, t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i, j = wavefront_positions(t, h, w)
        values, inside = _context(padded, i, j, self.audio)
        means, log_scales, logits = _network(values, inside, self.weights, self.channels)
        means = _snap(means, 1 / 256).reshape(-1, MIXTURE)
        log_scales = _snap(np.clip(log_scales, *LOG_SCALE_RANGE), 1 / 256).reshape(-1, MIXTURE)
        logits = _snap(np.clip(logits, -30, 30), 1 / 256).reshape(-1, MIXTURE)
        return i, j, _mixture_freqs(means, log_scales, logits, self.max_int)


def untrained_tables(channels: int, hidden: tuple[int, int] = HIDDEN) -> dict[str, torch.Tensor]:
    """Tables of an unfitted model (mean 0, scale 1): valid for coding, just not compact."""
    width = channels * NUM_OFFSETS
    return {"entropy.layout": _layout(hidden),
            "entropy.typical": torch.ones(channels),
            "entropy.inv_typical": torch.ones(width),
            "entropy.trunk1": torch.zeros(2 * width + NUM_OFFSETS, hidden[0]),
            "entropy.trunk1_bias": torch.zeros(hidden[0]),
            "entropy.trunk2": torch.zeros(hidden[0], hidden[1]),
            "entropy.trunk2_bias": torch.zeros(hidden[1]),
            "entropy.head": torch.zeros(hidden[1], channels * 3 * MIXTURE),
            "entropy.head_bias": torch.zeros(channels * 3 * MIXTURE),
            "entropy.linear": torch.zeros(width, channels)}
