"""Parallel context model for WaLLoC image latents: a fixed number of vectorized passes,
integer-exact on every CPU.

The wavefront model of :mod:`terse.walloc.entropy_model` needs 2 H + W sequential steps
and a 255-level mixture CDF per symbol, which makes whole files code at a fraction of a
MP/s. This model codes a (C, H, W) latent in ``1 + 2 LEVELS`` passes whatever the image
size (hierarchical checkerboard, in the spirit of He et al. 2021):

* pass 0: the positions on a grid of spacing ``2**LEVELS`` (no spatial context);
* then, for s = 2**(LEVELS-1) ... 1, a *diagonal* pass (centres of the coded 2s-grid's
  cells, context: the 4 corners at (+-s, +-s) and 8 more at (+-s, +-3s), (+-3s, +-s)) and
  an *axis* pass (edge midpoints, context: 4 neighbours at distance s and 8 at (+-s, +-2s),
  (+-2s, +-s)), both sides of every position already coded.

Context positions outside the latent take the floor mean of the valid ones. For each
position a small ReLU MLP over the context values and log-magnitudes of *all* channels
(plus the pass) predicts, per channel, an integer mean ``m`` and a scale bin; the residual
``q - m`` is coded with the bin's frequency table (empirical histograms of the training
residuals, stored with the model). Symbols of one pass are grouped by table, so one
range-coder call codes a whole group.

Measured on Kodak (``benchmarks/bench_walloc_parallel.py``, fitted on BSDS500 only, layout 2):
2.8% (16x) and 3.5% (4x) more bytes than the wavefront model, 28.8x and 39.5x faster to encode.

Why it is exact: the network runs on integers. Inputs are integers, weights are integers
times powers of two, activations are clamped integers, so every matrix-product partial sum
is an integer (in its column's unit) whose size the stored weights bound: below 2**24 a
float32 GEMM returns it exactly in any summation order, below 2**53 a float64 one does, and
each product runs in the narrowest type its bound allows. Layout 2 (what fits write) clamps
the hidden activations to 8 bits and picks each column's weight scale so that every product
is float32-exact; layout 1 (activations up to 2**20) needs float64 for layer 2 and the head
and is still read. Rescaling is the floor of a power-of-two division (folded into the
weights, which keeps every partial sum exact), ReLU a max, the outputs integers. No libm, no
float rounding that a kernel or thread count could change. The coder gathers its features in
its own layout (value and log-magnitude pairs, one row gather per pass from a cached plan of
the passes), with layer 1's rows permuted to match; :meth:`ParallelContextModel.predict`
takes the fitting layout of :func:`context_features`, and a test checks that the two agree.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from terse.core.errors import DataError, FormatError, TrainingError
from terse.entropy.quantize import quantize_probabilities
from terse.walloc.context_coding import PRECISION, code_length, logistic_mass

LEVELS = 4
NUM_PASSES = 1 + 2 * LEVELS
NEIGHBOURS = 12
HIDDEN = 128
SCALE_BINS = 72  # fitted tables: log-scale bins of 1/8 nat from LOG_SCALE_MIN (stored tables give their own count)
TABLES = 2 * SCALE_BINS  # x 2: the mean's fraction below or above 1/2
# Log-scale range of the fit and of the scale bins: the stored bin count is read against it
# (layout check), so it is part of this model's tables, not shared with the wavefront models'.
LOG_SCALE_MIN, LOG_SCALE_MAX = -3.0, 6.0
WEIGHT_BITS = 12  # layer-1 weights are round(w * 2**12); layout 1: every weight
WEIGHT_LIMIT = 1 << 15
EXACT_FLOAT32 = 1 << 24  # integer sums below this are exact in float32, in any order
# Activations per layout: (fractional bits, clamp as an integer). Layout 1's reach 2**20, so
# its layer 2 and head need float64; layout 2 clamps to 8 bits, which bounds every sum of
# layers 2 and the head below 2**24 with per-column weight scales (see integer_weights).
ACTIVATIONS = {1: (8, 1 << 20), 2: (4, 255)}
LAYOUT_VERSION = 2  # pctx.layout = [version, LEVELS, NEIGHBOURS, HIDDEN, SCALE_BINS]; fits write 2, 1 is read
FIT_STEPS = 8000
FIT_BATCH = 4096
FIT_POSITIONS = 1_000_000
VALUE_SCALE, LOG_SCALE = 1 / 16, 1 / 64  # input normalisation, folded into the first layer
MEAN_GAIN = 8.0  # the mean head's output is scaled by this (latent units)


def log_magnitude_table(max_int: int) -> np.ndarray:
    """min(127, round(16 log2(1 + v))) for v in [0, 2 max_int]: integers that fit int8,
    computed once and stored with the tables."""
    return np.minimum(np.round(16 * np.log2(1 + np.arange(2 * max_int + 1))), 127).astype(np.int64)


def schedule(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The coding passes of an h x w grid: (rows, cols, context offsets (k, 2)) each."""
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    top = 1 << LEVELS
    base = (ii % top == 0) & (jj % top == 0)
    passes = [(ii[base], jj[base], np.zeros((0, 2), dtype=np.int64))]
    s = top // 2
    while s >= 1:
        centre = (ii % (2 * s) == s) & (jj % (2 * s) == s)
        passes.append((ii[centre], jj[centre], np.array(_corners(s, s) + _corners(s, 3 * s) + _corners(3 * s, s))))
        edge = ((ii % (2 * s) == 0) & (jj % (2 * s) == s)) | ((ii % (2 * s) == s) & (jj % (2 * s) == 0))
        near = [(-s, 0), (s, 0), (0, -s), (0, s)]
        passes.append((ii[edge], jj[edge], np.array(near + _corners(s, 2 * s) + _corners(2 * s, s))))
        s //= 2
    return passes


def _corners(di: int, dj: int) -> list[tuple[int, int]]:
    """The 4 offsets (+-di, +-dj)."""
    return [(a * di, b * dj) for a in (-1, 1) for b in (-1, 1)]


def channels_last(latent: np.ndarray) -> np.ndarray:
    """(C, H, W) integers -> (H, W, C) int16, the layout :func:`context_features` gathers from."""
    return np.ascontiguousarray(np.asarray(latent).transpose(1, 2, 0), dtype=np.int16)


def context_features(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray, offsets: np.ndarray,
                     log_table: np.ndarray) -> np.ndarray:
    """(n, 2 C NEIGHBOURS) int16 from an (H, W, C) grid: context values (channel-major) then
    their log-magnitudes. Offsets outside the latent take the floor mean of the valid ones
    (0 without context)."""
    h, w, c = grid.shape
    n = len(rows)
    if len(offsets) == 0:
        return np.zeros((n, 2 * c * NEIGHBOURS), dtype=np.int16)
    r = rows[:, None] + offsets[None, :, 0]
    k = cols[:, None] + offsets[None, :, 1]
    valid = (r >= 0) & (r < h) & (k >= 0) & (k < w)
    values = grid[np.clip(r, 0, h - 1), np.clip(k, 0, w - 1)]  # (n, NEIGHBOURS, C): C contiguous
    border = np.flatnonzero(~valid.all(1))  # only rows near the border need the fill
    if len(border):
        values[border] = fill_outside(values[border], valid[border])
    out = np.empty((n, 2, c, len(offsets)), dtype=np.int16)
    out[:, 0] = values.transpose(0, 2, 1)
    out[:, 1] = log_table[np.abs(out[:, 0])]
    return out.reshape(n, 2 * c * len(offsets))


def fill_means(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(n, k, C) context values, ``valid`` (n, k) -> (n, C): the floor mean of the valid ones of
    each row and channel (0 where none is valid), the value outside positions take."""
    ok = valid[:, :, None]
    return np.where(ok, values, 0).sum(1, dtype=np.int64) // np.maximum(ok.sum(1), 1)


def fill_outside(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(n, k, C) context values whose invalid positions take :func:`fill_means`."""
    return np.where(valid[:, :, None], values, fill_means(values, valid)[:, None, :])


@lru_cache(maxsize=16)
def coding_plan(h: int, w: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]:
    """:func:`schedule` as flat indices into an (H * W, ...) grid, per pass: the positions (n,),
    their context positions (n, k) clipped into the grid, and the rows with a context position
    outside it (border) with their validity mask (n_border, k)."""
    plan = []
    for rows, cols, offsets in schedule(h, w):
        r = rows[:, None] + offsets[None, :, 0]
        k = cols[:, None] + offsets[None, :, 1]
        valid = (r >= 0) & (r < h) & (k >= 0) & (k < w)
        border = np.flatnonzero(~valid.all(1))
        context = np.clip(r, 0, h - 1) * w + np.clip(k, 0, w - 1)
        plan.append((rows * w + cols, context, border, valid[border]))
    return tuple(plan)


class _FloatNet(torch.nn.Module):
    """The network as it is trained; :func:`integer_weights` turns it into the coding one. Its
    hidden activations are clamped and floored to layout 2's fixed point (straight-through
    gradients), so the integer network computes what was trained."""

    def __init__(self, channels: int, hidden: int = HIDDEN):
        super().__init__()
        width = 2 * channels * NEIGHBOURS
        self.channels = channels
        self.scale = torch.cat([torch.full((width // 2,), VALUE_SCALE), torch.full((width // 2,), LOG_SCALE),
                                torch.ones(NUM_PASSES)])
        self.layer1 = torch.nn.Linear(width + NUM_PASSES, hidden)
        self.layer2 = torch.nn.Linear(hidden, hidden)
        self.head = torch.nn.Linear(hidden, 2 * channels)
        self.linear = torch.nn.Linear(width // 2, channels, bias=False)  # classic linear predictor of the mean
        torch.nn.init.zeros_(self.linear.weight)

    @staticmethod
    def activation(a: torch.Tensor) -> torch.Tensor:
        frac, limit = ACTIVATIONS[LAYOUT_VERSION]
        a = a.clamp(0, limit / (1 << frac))
        return a + (torch.floor(a * (1 << frac)) / (1 << frac) - a).detach()

    def forward(self, features: torch.Tensor, passes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([features, torch.nn.functional.one_hot(passes, NUM_PASSES).float()], 1) * self.scale
        h = self.activation(self.layer2(self.activation(self.layer1(x))))
        out = self.head(h).view(-1, self.channels, 2)
        mean = out[..., 0] * MEAN_GAIN + self.linear(features[:, : features.shape[1] // 2])
        return mean, out[..., 1]


def _column_bits(weight: torch.Tensor, bias: torch.Tensor | None, input_bound: int, bias_unit_bits: int,
                 most: int) -> torch.Tensor:
    """Per output column, the most fractional bits b <= ``most`` for which input_bound x
    sum |round(w 2**b)| + |round(bias 2**(bias_unit_bits + b))| stays below 2**24 (0 at least)."""
    bits = torch.zeros(weight.shape[1], dtype=torch.int64)
    for b in range(most, -1, -1):
        size = input_bound * torch.round(weight * (1 << b)).abs().sum(0)
        if bias is not None:
            size = size + torch.round(bias * (1 << (bias_unit_bits + b))).abs()
        bits = torch.where((bits == 0) & (size < EXACT_FLOAT32), torch.full_like(bits, b), bits)
    return bits


def integer_weights(net: _FloatNet, max_int: int) -> dict[str, torch.Tensor]:
    """Fold the input scaling and layout 2's fixed point into integer weights: layer 1 in
    units of 2**-12; layer 2, the head and the linear predictor with per-column power-of-two
    scales (``*_bits``), each as fine as keeps the column's sums provably below 2**24."""
    frac, limit = ACTIVATIONS[LAYOUT_VERSION]
    w1 = net.layer1.weight.detach().double() * net.scale.double()[None, :]

    def q(t, bits):  # bits: an int or one per column
        return torch.round(t.detach().double() * torch.pow(2.0, torch.as_tensor(bits, dtype=torch.float64))).to(torch.int64)

    w2, b2 = net.layer2.weight.detach().double().T, net.layer2.bias.detach().double()
    wh, bh = net.head.weight.detach().double().T, net.head.bias.detach().double()
    lin = net.linear.weight.detach().double().T
    bits2 = _column_bits(w2, b2, limit, frac, WEIGHT_BITS)
    bits_head = _column_bits(wh, bh, limit, frac, WEIGHT_BITS)
    bits_lin = _column_bits(lin, None, max_int, 0, WEIGHT_BITS + 8)
    return {"pctx.layer1": q(w1.T, WEIGHT_BITS), "pctx.layer1_bias": q(net.layer1.bias, WEIGHT_BITS),
            "pctx.layer2": q(w2, bits2), "pctx.layer2_bias": q(b2, bits2 + frac), "pctx.layer2_bits": bits2,
            "pctx.head": q(wh, bits_head), "pctx.head_bias": q(bh, bits_head + frac), "pctx.head_bits": bits_head,
            "pctx.linear": q(lin, bits_lin), "pctx.linear_bits": bits_lin}


def _exact_float32(weight: np.ndarray, bias: np.ndarray, input_bound: int) -> bool:
    """Whether input_bound x sum |weight| + |bias| < 2**24 in every column (float32 is exact)."""
    size = np.abs(weight).astype(np.float64).sum(0) * input_bound + np.abs(bias)
    return bool(size.max(initial=0) < EXACT_FLOAT32)


class ParallelContextModel:
    """Codes (C, H, W) integer latents in :data:`NUM_PASSES` vectorized passes."""

    def __init__(self, tables: dict[str, torch.Tensor], max_int: int) -> None:
        layout = tables.get("pctx.layout")
        if layout is None:
            raise FormatError("the model has no parallel context tables (pctx.layout missing)")
        layout = [int(v) for v in layout.tolist()]
        if layout[0] not in ACTIVATIONS or layout[1:3] != [LEVELS, NEIGHBOURS] or len(layout) != 5:
            raise FormatError(f"parallel context tables have layout {layout}; this terse reads "
                              f"[{' or '.join(map(str, ACTIVATIONS))}, {LEVELS}, {NEIGHBOURS}, hidden, bins]")
        self.version, self.hidden = layout[0], layout[3]
        span = int(LOG_SCALE_MAX - LOG_SCALE_MIN)
        if layout[4] < span or layout[4] % span:
            raise FormatError(f"parallel context tables have {layout[4]} scale bins, not a multiple of {span}")
        self.scale_bins, self.bins_per_nat = layout[4], layout[4] // span
        keys = ["layer1", "layer1_bias", "layer2", "layer2_bias", "head", "head_bias", "linear", "log_table", "freqs"]
        if self.version > 1:
            keys += ["layer2_bits", "head_bits", "linear_bits"]
        try:
            self.w = {k: tables["pctx." + k].to(torch.int64).numpy() for k in keys}
        except KeyError as exc:
            raise FormatError(f"the model's parallel context tables lack {exc}") from None
        self.channels = self.w["head"].shape[1] // 2
        self.max_int = max_int
        width = 2 * self.channels * NEIGHBOURS
        shapes = {"layer1": (width + NUM_PASSES, self.hidden), "layer2": (self.hidden, self.hidden),
                  "head": (self.hidden, 2 * self.channels), "linear": (width // 2, self.channels),
                  "log_table": (2 * max_int + 1,), "freqs": (2 * self.scale_bins, 4 * max_int + 1),
                  "layer2_bits": (self.hidden,), "head_bits": (2 * self.channels,), "linear_bits": (self.channels,)}
        for key in shapes.keys() & self.w.keys():
            if self.w[key].shape != shapes[key]:
                raise FormatError(f"parallel context table {key} has shape {self.w[key].shape}, expected {shapes[key]}")
        for key in ("layer1", "layer2", "head", "linear"):
            if np.abs(self.w[key]).max(initial=0) >= WEIGHT_LIMIT * (1 << 8 if key == "linear" else 1):
                raise FormatError(f"parallel context weights {key} are out of range")
        if self.w["freqs"].min() < 1 or (self.w["freqs"].sum(1) != 1 << PRECISION).any():
            raise FormatError("parallel context frequency tables are not normalised")
        self.frac, self.act_limit = ACTIVATIONS[self.version]
        if self.version == 1:  # one scale per layer: 2**-12 weights (2**-20 for the linear predictor)
            bits = {"layer2": WEIGHT_BITS, "head": WEIGHT_BITS, "linear": WEIGHT_BITS + 8}
        else:
            bits = {k: self.w[k + "_bits"] for k in ("layer2", "head", "linear")}
            if any(((b < 0) | (b > WEIGHT_BITS + 8)).any() for b in bits.values()):
                raise FormatError("parallel context weight scales are out of range")
        self._prepare(width, bits)
        values = np.arange(-max_int, max_int + 1)
        self.pair_table = np.stack([values, self.w["log_table"][np.abs(values)]], 1).astype(np.float32)
        self._models: dict[int, object] = {}

    def _prepare(self, width: int, bits: dict) -> None:
        """The coding weights: integers times powers of two, in float32 for every product whose
        sums the stored weights bound below 2**24 and in float64 (bound 2**53) otherwise. The
        power-of-two scales fold the right shifts into the weights (the same significant bits,
        so every partial sum stays exact) and leave the head and linear outputs in latent units."""
        w = self.w

        def scaled(table: np.ndarray, exponent, dtype) -> torch.Tensor:
            return torch.from_numpy(np.ldexp(table.astype(np.float64), -np.asarray(exponent))).to(dtype)

        # The coding layout of the features: per context position k and channel c the pair
        # (value, log-magnitude), so one row gather from a (H * W, C, 2) feature grid builds them.
        # Layer 1's and the linear predictor's rows are permuted to it (exact integer sums, so
        # the order of the terms cannot change a result).
        k, c = np.meshgrid(np.arange(NEIGHBOURS), np.arange(self.channels), indexing="ij")
        value_rows = (c * NEIGHBOURS + k).ravel()  # channel-major index of (k, c), k-major order
        self.coding_order = np.stack([value_rows, value_rows + width // 2], 1).ravel()  # (width,)
        # layer 1's bias plus the row of each pass's one-hot input: one (NUM_PASSES, hidden) table
        offsets = w["layer1_bias"][None] + w["layer1"][width:]
        input_bound = max(self.max_int, int(w["log_table"].max()))
        self.layer1_float32 = _exact_float32(w["layer1"][:width], np.abs(offsets).max(0), input_bound)
        self.layer2_float32 = _exact_float32(w["layer2"], w["layer2_bias"], self.act_limit)
        self.head_float32 = _exact_float32(w["head"], w["head_bias"], self.act_limit)
        linear_float32 = _exact_float32(w["linear"], np.zeros(self.channels), self.max_int)
        f32, f64 = torch.float32, torch.float64
        shift = WEIGHT_BITS - self.frac  # layer 1: 2**-12 units -> the activations' 2**-frac
        dtype = f32 if self.layer1_float32 else f64
        layer1 = scaled(w["layer1"][:width][self.coding_order], shift, dtype)
        self.layer1_offsets = scaled(offsets, shift, dtype)
        # Where layer 1 and the linear predictor are both float32-exact, the predictor's columns
        # join layer 1's product (zero on the log-magnitude rows): one GEMM for both.
        linear = np.zeros((width, self.channels), dtype=np.int64)
        linear[0::2] = w["linear"][value_rows]
        self.linear_in_layer1 = self.layer1_float32 and linear_float32
        if self.linear_in_layer1:
            # zero columns up to a multiple of 16: MKL's GEMM ran 128 + 12 = 140 columns 1.1-1.6x
            # slower than 144 in dev timings (the extra outputs are exact zeros, never read)
            extra = self.channels + (-(self.hidden + self.channels)) % 16
            columns = np.zeros((width, extra), dtype=np.int64)
            columns[:, : self.channels] = linear
            exponents = np.zeros(extra, dtype=np.int64)
            exponents[: self.channels] = np.broadcast_to(bits["linear"], (self.channels,))
            layer1 = torch.cat([layer1, scaled(columns, exponents, f32)], 1)
            self.layer1_offsets = torch.cat([self.layer1_offsets, torch.zeros(NUM_PASSES, extra)], 1)
        else:
            self.linear = scaled(linear[0::2], bits["linear"], f64)
        self.layer1 = layer1
        dtype = f32 if self.layer2_float32 else f64
        self.layer2 = scaled(w["layer2"], bits["layer2"], dtype)
        self.layer2_bias = scaled(w["layer2_bias"], bits["layer2"], dtype)
        dtype = f32 if self.head_float32 else f64
        self.head = scaled(w["head"], np.asarray(bits["head"]) + self.frac, dtype)
        self.head_bias = scaled(w["head_bias"], np.asarray(bits["head"]) + self.frac, dtype)

    def predict(self, features: np.ndarray, pass_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer features (n, 2 C NEIGHBOURS) int16 of one pass (:func:`context_features`'
        layout) -> integer means (floor) and frequency-table indices (n, C)."""
        coded = np.ascontiguousarray(np.asarray(features)[:, self.coding_order], dtype=np.float32)
        return self._predict(coded, pass_index)

    def _predict(self, x: np.ndarray, pass_index: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` on float32 features in the coding layout (see ``coding_order``)."""
        n = len(x)
        # Every product and partial sum below is an integer times a power of two, below 2**24
        # where it runs in float32 and below 2**53 in float64 (see _prepare), so any kernel and
        # summation order gives it exactly; flooring after a power-of-two scale is a right shift.
        # In-place ops: the (n, hidden) passes over memory cost more than the products.
        x = torch.from_numpy(x)
        out1 = torch.addmm(self.layer1_offsets[pass_index], x.to(self.layer1.dtype), self.layer1)
        h = out1[:, : self.hidden].floor_().clamp_(0, self.act_limit).to(self.layer2.dtype)
        h = torch.addmm(self.layer2_bias, h, self.layer2).floor_().clamp_(0, self.act_limit)
        out = torch.addmm(self.head_bias, h.to(self.head.dtype), self.head).view(n, self.channels, 2).double()
        linear = (out1[:, self.hidden: self.hidden + self.channels] if self.linear_in_layer1
                  else x[:, 0::2].double() @ self.linear)
        # latent units from here on, in float64: sums of two exact terms of 24 significant bits
        limit = float(self.max_int)
        mean = (out[..., 0] * MEAN_GAIN + linear.double()).clamp_(-limit, limit)
        upper_half = torch.floor(mean * 2).remainder_(2)  # the mean's fraction >= 1/2: its own table
        scale_bin = torch.floor((out[..., 1] - LOG_SCALE_MIN) * self.bins_per_nat)
        table = 2 * scale_bin.clamp_(0, self.scale_bins - 1) + upper_half
        return torch.floor(mean).to(torch.int64).numpy(), table.to(torch.int64).numpy()

    def _features(self, values: np.ndarray, pairs: np.ndarray, plan_pass) -> np.ndarray:
        """Float32 features (n, 2 C NEIGHBOURS) in the coding layout from the (H * W, C) int16
        values and their (H * W, C, 2) pairs; a border position's outside context takes the floor
        mean of its valid context values (0 without context)."""
        _, context, border, valid = plan_pass
        n = len(context)
        width = 2 * self.channels * NEIGHBOURS
        if context.shape[1] == 0:
            return np.zeros((n, width), dtype=np.float32)
        x = np.take(pairs, context, axis=0)  # (n, k, C, 2) rows of the feature grid
        if len(border):
            fill = fill_means(values[context[border]], valid)  # (n_border, C)
            rows, slots = np.nonzero(~valid)  # only the outside context positions are rewritten
            x[border[rows], slots] = np.take(self.pair_table, fill[rows] + self.max_int, axis=0)
        return x.reshape(n, width)

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or shape[0] != self.channels:
            raise FormatError(f"latent of shape {tuple(shape)}; the context model codes ({self.channels} channels, H, W)")

    def encode(self, latent: np.ndarray) -> bytes:
        import constriction

        shape = np.shape(latent)
        self._check_shape(shape)
        if np.size(latent) and np.abs(np.asarray(latent)).max() > self.max_int:
            raise DataError(f"latent values must be integers in [-{self.max_int}, {self.max_int}]")
        values = channels_last(latent).reshape(-1, shape[0])  # (H * W, C) int16
        pairs = self.pair_table[values + self.max_int]  # (H * W, C, 2) float32
        encoder = constriction.stream.queue.RangeEncoder()
        for p, plan_pass in enumerate(coding_plan(shape[1], shape[2])):
            mean, bins = self._predict(self._features(values, pairs, plan_pass), p)
            symbols = (values[plan_pass[0]] - mean + 2 * self.max_int).ravel().astype(np.int32)
            order, runs = _table_runs(bins.ravel())
            by_table = symbols[order]
            for table, start, end in runs:
                encoder.encode(by_table[start:end], self._model(table))
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        import constriction

        if len(data) % 4:
            raise FormatError("corrupted payload: range-coded data is not a whole number of 32-bit words")
        self._check_shape(shape)
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        channels, h, w = shape
        values = np.zeros((h * w, channels), dtype=np.int16)
        pairs = np.zeros((h * w, channels, 2), dtype=np.float32)
        for p, plan_pass in enumerate(coding_plan(h, w)):
            mean, bins = self._predict(self._features(values, pairs, plan_pass), p)
            order, runs = _table_runs(bins.ravel())
            symbols = np.empty(bins.size, dtype=np.int32)
            if runs:  # one scatter of the table-ordered symbols back to their positions
                symbols[order] = np.concatenate([decoder.decode(self._model(table), end - start)
                                                 for table, start, end in runs])
            decoded = symbols.reshape(mean.shape) + mean
            decoded -= 2 * self.max_int
            np.clip(decoded, -self.max_int, self.max_int, out=decoded)  # a corrupted stream stays in range
            values[plan_pass[0]] = decoded
            pairs[plan_pass[0]] = self.pair_table[decoded + self.max_int]
        return values.reshape(h, w, channels).transpose(2, 0, 1).astype(np.int64)

    def _model(self, table: int):
        """constriction's fixed categorical model of one scale bin (built on first use)."""
        if table not in self._models:
            import constriction

            self._models[table] = constriction.stream.model.Categorical(self.w["freqs"][table].astype(np.float64),
                                                                       perfect=False)
        return self._models[table]


def _table_runs(table_ids: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The positions ordered by table (stable) and the (table, start, end) runs of that order:
    one range-coder call codes each run."""
    order = np.argsort(table_ids.astype(np.int16), kind="stable")  # radix sort on small integers
    counts = np.bincount(table_ids, minlength=1)
    used = np.flatnonzero(counts)
    ends = np.cumsum(counts[used])
    return order, list(zip(used.tolist(), (ends - counts[used]).tolist(), ends.tolist(), strict=True))


def _training_set(latents: list[np.ndarray], log_table: np.ndarray, positions: int, seed: int):
    """A random subset of ``positions`` (features int16, targets, pass) over all latents."""
    features, targets, passes = [], [], []
    for lat in latents:
        grid = channels_last(lat)
        for p, (rows, cols, offsets) in enumerate(schedule(*lat.shape[1:])):
            features.append(context_features(grid, rows, cols, offsets, log_table))
            targets.append(lat[:, rows, cols].T.astype(np.int16))
            passes.append(np.full(len(rows), p))
    features, targets, passes = np.concatenate(features), np.concatenate(targets), np.concatenate(passes)
    keep = np.random.default_rng(seed).permutation(len(passes))[:positions]
    return features[keep], targets[keep], passes[keep]


def fit_parallel_context(latents, max_int: int, steps: int = FIT_STEPS, hidden: int = HIDDEN, seed: int = 0,
                         positions: int = FIT_POSITIONS, log=None) -> dict[str, torch.Tensor]:
    """Fit the model on (C, H, W) integer latents (training images only) -> ``pctx.*`` tensors.

    The network is trained in float on the discretized-logistic code length of a random
    subset of positions; the frequency tables are then the histograms, over every position,
    of the *integer* network's residuals per scale bin."""
    lats = [np.asarray(x, dtype=np.int64) for x in latents]
    channels = lats[0].shape[0]
    log_table = log_magnitude_table(max_int)
    features, targets, passes = _training_set(lats, log_table, positions, seed)
    torch.manual_seed(seed)
    net = _FloatNet(channels, hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    x, q, p = torch.from_numpy(features).float(), torch.from_numpy(targets).float(), torch.from_numpy(passes)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        if step == int(0.7 * steps):
            for group in optimizer.param_groups:
                group["lr"] = 5e-4
        batch = torch.randint(len(x), (min(FIT_BATCH, len(x)),), generator=generator)
        mean, log_scale = net(x[batch], p[batch])
        inv = torch.exp(-log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX))
        loss = code_length(logistic_mass(q[batch], mean, inv, max_int)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log is not None and step % 1000 == 0:
            log(f"step {step}: {loss.item():.4f} bits/symbol")
    layout = torch.tensor([LAYOUT_VERSION, LEVELS, NEIGHBOURS, hidden, SCALE_BINS])
    tables = {**integer_weights(net, max_int), "pctx.layout": layout, "pctx.log_table": torch.from_numpy(log_table)}
    model = ParallelContextModel({**tables, "pctx.freqs": _uniform_freqs(max_int)}, max_int)
    counts = np.zeros((TABLES, 4 * max_int + 1))
    for lat in lats:
        grid = channels_last(lat)
        for p, (rows, cols, offsets) in enumerate(schedule(*lat.shape[1:])):
            mean, bins = model.predict(context_features(grid, rows, cols, offsets, log_table), p)
            np.add.at(counts, (bins.ravel(), (lat[:, rows, cols].T - mean + 2 * max_int).ravel()), 1)
    probabilities = (counts + 0.02) / (counts + 0.02).sum(1, keepdims=True)
    tables["pctx.freqs"] = torch.from_numpy(quantize_probabilities(probabilities, PRECISION))
    too_large = [k for k, v in tables.items() if int(v.abs().max()) >= 1 << 31]
    if too_large:
        raise TrainingError(f"fitted parallel context tables {too_large} do not fit 32 bits")
    return {k: v.to(_narrowest(v)) for k, v in tables.items()}


def _narrowest(t: torch.Tensor) -> torch.dtype:
    """The smallest integer type that holds ``t`` (the tables are stored as they are returned)."""
    lo, hi = int(t.min()), int(t.max())
    if -(1 << 15) <= lo and hi < 1 << 15:
        return torch.int16
    return torch.uint16 if 0 <= lo and hi < 1 << 16 else torch.int32


def _uniform_freqs(max_int: int) -> torch.Tensor:
    size = 4 * max_int + 1
    freqs = np.full((TABLES, size), (1 << PRECISION) // size, dtype=np.int64)
    freqs[:, 0] += (1 << PRECISION) - freqs[0].sum()
    return torch.from_numpy(freqs)
