"""Full wavelet packet transform (WPT), CDF 9/7 (``bior4.4``), periodization mode.

Critically sampled and exactly invertible (float32 round trip ~1e-6 of the signal scale):
analysis is a circular stride-2 correlation with the decomposition filters, synthesis the
matching circular transpose with the reconstruction filters. The coefficients agree with
PyWavelets' ``dwt(x, 'bior4.4', mode='periodization')`` (tested against it as an oracle).

*Full packet*: at every level every sub-band, detail bands included, is split again, so

* 1-D, J levels: ``(B, C, L) -> (B, C * 2**J, L / 2**J)``; channel index ``c * 2**J + path``
  where ``path`` is the binary low(0)/high(1) choice of each level, first level most significant;
* 2-D, J levels: ``(B, C, H, W) -> (B, C * 4**J, H / 2**J, W / 2**J)``; each level splits a
  band into 4 children ``f = 2 * b + a`` (``b``: filter along W, ``a``: along H; 0 = low),
  so channels ``c * 4**J`` hold the all-lowpass bands.

Each level needs an even length; lengths must be multiples of ``2**J`` (use :func:`pad_to_multiple`
and crop after synthesis).

Two implementations of the same transform:

* *levels*: J levels of 2-band polyphase filtering (any J; used for 1-D and deep 2-D transforms);
* *blocks* (2-D, J <= ``MAX_BLOCK_LEVELS``): the J-level 1-D packet transform is a linear map that
  commutes with shifts by B = 2**J, so along each axis it is one strided convolution (analysis:
  B band filters of ~8 B taps, stride B) or one block convolution followed by a pixel shuffle
  (synthesis). The full 2-D packet transform is the tensor product of the 1-D transform along W
  and along H, so an image needs two convolution calls instead of 2 J levels of small tensor ops.
  :func:`wpt2d_project` also folds a following 1x1 projection (WaLLoC's encoder) into the second
  convolution. The filters are the exact impulse responses of the level form (float64).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# bior4.4 (CDF 9/7) decomposition filters, in PyWavelets' convention (10 taps, zero-padded).
_DEC_LO = (0.0, 0.03782845550726404, -0.023849465019556843, -0.11062440441843718, 0.37740285561283066,
           0.8526986790088938, 0.37740285561283066, -0.11062440441843718, -0.023849465019556843, 0.03782845550726404)
_DEC_HI = (-0.0, -0.06453888262869706, 0.04068941760916406, 0.41809227322161724, -0.7884856164055829,
           0.41809227322161724, 0.04068941760916406, -0.06453888262869706, -0.0, 0.0)
_REC_LO = (0.0, -0.06453888262869706, -0.04068941760916406, 0.41809227322161724, 0.7884856164055829,
           0.41809227322161724, -0.04068941760916406, -0.06453888262869706, 0.0, 0.0)
_REC_HI = (0.0, -0.03782845550726404, -0.023849465019556843, 0.11062440441843718, 0.37740285561283066,
           -0.8526986790088938, 0.37740285561283066, 0.11062440441843718, -0.023849465019556843, -0.03782845550726404)
_TAPS = len(_DEC_LO)
# Alignment that reproduces PyWavelets' periodization: cA[k] = sum_n dec_lo[n] * x[(2k + 5 - n) mod N].
_ANALYSIS_SHIFT = 5


_PAD = _TAPS - 1 - _ANALYSIS_SHIFT  # circular samples needed before/after a row for analysis
_SYNTH_PAD = 2  # coefficients needed before/after a row for synthesis: taps 10 cover k in [n/2 - 2, n/2 + 2]


def _circular_pad(x: torch.Tensor, left: int, right: int, dim: int = -1) -> torch.Tensor:
    """Periodic extension of one axis (works for pads longer than the axis)."""
    n = x.shape[dim]
    if left <= n and right <= n:
        return torch.cat((x.narrow(dim, n - left, left), x, x.narrow(dim, 0, right)), dim=dim)
    index = torch.arange(-left, n + right, device=x.device) % n
    return x.index_select(dim, index)


def _taps(name: tuple[float, ...]) -> list[tuple[int, float]]:
    return [(i, float(v)) for i, v in enumerate(name) if v != 0.0]


def _analysis_last(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One periodized DWT level along the last axis -> (low, high), each half as long.

    cA[k] = sum_n dec_lo[n] * x[(2k + 5 - n) mod L], as PyWavelets' periodization mode.
    Polyphase form: no conv call (PyTorch's CPU conv is slow for 1-channel, 10-tap filters),
    just one multiply-add per non-zero tap on strided views.
    """
    length = x.shape[-1]
    if length % 2:
        raise ValueError(f"WPT level needs an even length, got {length}")
    half = length // 2
    xp = _circular_pad(x, _PAD, _PAD)  # xp[i] = x[i - _PAD]
    phases = (xp[..., 0::2], xp[..., 1::2])
    outs = []
    for filt in (_DEC_LO, _DEC_HI):
        acc = None
        for n, value in _taps(filt):
            m = _TAPS - 1 - n  # x[2k + 5 - n] = xp[2k + m] with m = 9 - n
            term = phases[m % 2][..., m // 2: m // 2 + half]
            acc = term * value if acc is None else acc.add_(term, alpha=value)
        outs.append(acc)
    return outs[0], outs[1]


def _synthesis_last(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_analysis_last`: x[n] = sum_k cA[k] rec_lo[n + 4 - 2k] + cD[k] rec_hi[n + 4 - 2k]."""
    half = low.shape[-1]
    padded = (_circular_pad(low, _SYNTH_PAD, _SYNTH_PAD), _circular_pad(high, _SYNTH_PAD, _SYNTH_PAD))
    phases = []
    for parity in (0, 1):  # x[2i + parity] = sum_t rec[2t + parity] * c[i + 2 - t]
        acc = None
        for coeffs, filt in zip(padded, (_REC_LO, _REC_HI), strict=True):
            for t in range(_TAPS // 2):
                value = float(filt[2 * t + parity])
                if value == 0.0:
                    continue
                term = coeffs[..., 2 * _SYNTH_PAD - t: 2 * _SYNTH_PAD - t + half]
                acc = term * value if acc is None else acc.add_(term, alpha=value)
        phases.append(acc)
    return torch.stack(phases, dim=-1).flatten(-2)


def _analysis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """One level along ``dim`` of (N, 1, ...) -> (N, 2, ...) with that axis halved (0 = low, 1 = high)."""
    low, high = _analysis_last(x.movedim(dim, -1))
    return torch.cat((low, high), dim=1).movedim(-1, dim)


def _synthesis(bands: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`_analysis`: (N, 2, ...) -> (N, 1, ...) with that axis doubled."""
    b = bands.movedim(dim, -1)
    return _synthesis_last(b[:, 0:1], b[:, 1:2]).movedim(-1, dim)


def wpt1d(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Full 1-D packet analysis: (B, C, L) -> (B, C * 2**levels, L / 2**levels)."""
    b, c, length = x.shape
    _check_divisible(length, levels, "length")
    y = x.reshape(b * c, 1, length)
    for _ in range(levels):
        y = _analysis(y, 2).reshape(-1, 1, y.shape[-1] // 2)  # (rows * bands, 1, L')
    return y.reshape(b, c * 2**levels, length >> levels)


def iwpt1d(y: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse of :func:`wpt1d`: (B, C * 2**levels, L') -> (B, C, L' * 2**levels)."""
    b, channels, n = y.shape
    if channels % 2**levels:
        raise ValueError(f"{channels} channels is not a multiple of 2**{levels}")
    x = y
    for _ in range(levels):
        x = _synthesis(x.reshape(-1, 2, x.shape[-1]), 2)  # (rows / 2, 1, 2 L')
    return x.reshape(b, channels // 2**levels, n << levels)


def _split_2d(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 4, H/2, W/2), children f = 2*b + a (b: filter along W, a: along H)."""
    n, _, h, w = x.shape
    yw = _analysis(x, 3)  # (N, 2[b], H, W/2)
    yh = _analysis(yw.reshape(n * 2, 1, h, w // 2), 2)  # (N*2, 2[a], H/2, W/2)
    return yh.reshape(n, 4, h // 2, w // 2)


def _merge_2d(bands: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_split_2d`: (N, 4, H', W') -> (N, 1, 2H', 2W')."""
    n, _, h, w = bands.shape
    xh = _synthesis(bands.reshape(n * 2, 2, h, w), 2)  # (N*2, 1, 2H', W')
    return _synthesis(xh.reshape(n, 2, 2 * h, w), 3)  # (N, 1, 2H', 2W')


def wpt2d(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Full 2-D packet analysis: (B, C, H, W) -> (B, C * 4**levels, H / 2**levels, W / 2**levels)."""
    b, c, h, w = x.shape
    _check_divisible(h, levels, "height")
    _check_divisible(w, levels, "width")
    return _wpt2d_blocks(x, levels) if levels <= MAX_BLOCK_LEVELS else _wpt2d_levels(x, levels)


def _wpt2d_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    for _ in range(levels):
        y = _split_2d(y)
        y = y.reshape(-1, 1, y.shape[2], y.shape[3])
    return y.reshape(b, c * 4**levels, h >> levels, w >> levels)


def iwpt2d(y: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse of :func:`wpt2d`: (B, C * 4**levels, H', W') -> (B, C, H' * 2**levels, W' * 2**levels)."""
    b, channels, h, w = y.shape
    if channels % 4**levels:
        raise ValueError(f"{channels} channels is not a multiple of 4**{levels}")
    return _iwpt2d_blocks(y, levels) if levels <= MAX_BLOCK_LEVELS else _iwpt2d_levels(y, levels)


def _iwpt2d_levels(y: torch.Tensor, levels: int) -> torch.Tensor:
    b, channels, h, w = y.shape
    x = y
    for _ in range(levels):
        x = _merge_2d(x.reshape(-1, 4, x.shape[-2], x.shape[-1]))  # (rows / 4, 1, 2 H', 2 W')
    return x.reshape(b, channels // 4**levels, h << levels, w << levels)


# --- block form (2-D, small J) --------------------------------------------------------------

MAX_BLOCK_LEVELS = 4  # filters span ~8 * 2**J samples: beyond J = 4 the level form needs fewer operations


@functools.cache
def _block_filters(levels: int) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Impulse responses of the J-level 1-D packet transform, in float64.

    Returns ``(analysis, left, synthesis)``:

    * ``analysis`` (B, S): coefficient of band p at block k = sum_i analysis[p, i] * x[B k - left + i]
      (indices mod the length), so analysis is a stride-B correlation after ``left`` samples of
      circular padding;
    * ``synthesis`` (B, B, 2 M + 1): x[B k + r] = sum_{p, m} synthesis[r, p, m] * c[p, k + m - M],
      a correlation over the sequence of coefficient blocks followed by interleaving the B phases.
    """
    block = 2**levels
    blocks = 32  # the probe signal must be longer than the filters (~8 blocks)
    n = block * blocks
    k0 = blocks // 2
    impulses = torch.eye(n, dtype=torch.float64)
    response = wpt1d(impulses.reshape(n, 1, n), levels)[:, :, k0]  # (sample n, band p) for block k0
    support = response.abs().amax(dim=1).nonzero().flatten()
    first, last = int(support.min()), int(support.max())
    left = block * k0 - first
    analysis = response[first: last + 1].T.contiguous()  # (B, S)
    coeff_impulses = impulses.reshape(n, block, blocks)  # impulse on every (band, block)
    recon = iwpt1d(coeff_impulses, levels)[:, 0].reshape(block, blocks, n)  # (band, block, sample)
    phases = recon[:, :, block * k0: block * (k0 + 1)]  # (p, coefficient block, r) for output block k0
    used = phases.abs().amax(dim=(0, 2)).nonzero().flatten()
    reach = max(k0 - int(used.min()), int(used.max()) - k0)
    synthesis = phases[:, k0 - reach: k0 + reach + 1].permute(2, 0, 1).contiguous()  # (r, p, 2M+1)
    return analysis, left, synthesis


@functools.cache
def _block_channel_order(levels: int) -> torch.Tensor:
    """Index ``order`` with ``packet[:, ch] = tensor_product[:, order[ch]]``, where the tensor product
    of the 1-D transforms has channel ``pw * B + ph`` (pw: band along W, ph: along H) and the packet
    channel is sum_l (2 b_l + a_l) 4**(J-1-l), b_l / a_l the l-th (first = most significant) bits."""
    block = 2**levels
    order = torch.empty(block * block, dtype=torch.long)
    for pw in range(block):
        for ph in range(block):
            shifts = range(levels - 1, -1, -1)  # level 0 (first split) is the most significant bit
            channel = sum((2 * ((pw >> s) & 1) + ((ph >> s) & 1)) * 4**s for s in shifts)
            order[channel] = pw * block + ph
    return order


def _analysis_kernels(levels: int, dtype: torch.dtype) -> tuple[torch.Tensor, int, int]:
    analysis, left, _ = _block_filters(levels)
    taps = analysis.shape[1]
    return analysis.to(dtype), left, taps - 2**levels - left


def _analysis_w(x: torch.Tensor, levels: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C * B, H, W / B): the 1-D packet transform along W, channel c * B + pw."""
    analysis, left, right = _analysis_kernels(levels, x.dtype)
    channels = x.shape[1]
    kernel = analysis[:, None, None, :].repeat(channels, 1, 1, 1)  # (C * B, 1, 1, S)
    return F.conv2d(_circular_pad(x, left, right), kernel, stride=(1, 2**levels), groups=channels)


def _wpt2d_blocks(x: torch.Tensor, levels: int) -> torch.Tensor:
    b, c, h, w = x.shape
    block = 2**levels
    analysis, left, right = _analysis_kernels(levels, x.dtype)
    y = _analysis_w(x, levels)  # (b, c * B, H, W / B)
    kernel = analysis[:, None, :, None].repeat(c * block, 1, 1, 1)  # (c * B * B, 1, S, 1)
    y = F.conv2d(_circular_pad(y, left, right, dim=-2), kernel,
                 stride=(block, 1), groups=c * block)  # (b, c * B * B, H / B, W / B), channel (c, pw, ph)
    y = y.reshape(b, c, block * block, h // block, w // block)
    return y[:, :, _block_channel_order(levels)].reshape(b, c * block * block, h // block, w // block)


def wpt2d_project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, levels: int) -> torch.Tensor:
    """``conv1x1(wpt2d(x, levels), weight, bias)`` without materialising the packet channels.

    ``weight``: (D, C * 4**levels) or a 1x1 conv weight (D, C * 4**levels, 1, 1). The projection
    is folded into the H-axis filters, so this is two convolution calls (differentiable in
    ``weight`` and ``bias``). Falls back to the two-step form for J > ``MAX_BLOCK_LEVELS``.
    """
    b, c, h, w = x.shape
    weight = weight.reshape(weight.shape[0], -1)
    block = 2**levels
    if weight.shape[1] != c * block * block:
        raise ValueError(f"projection expects {weight.shape[1]} packet channels, the input has {c * block * block}")
    if levels > MAX_BLOCK_LEVELS:
        return F.conv2d(wpt2d(x, levels), weight[:, :, None, None], bias)
    _check_divisible(h, levels, "height")
    _check_divisible(w, levels, "width")
    analysis, left, right = _analysis_kernels(levels, x.dtype)
    per_band = torch.empty_like(weight).reshape(-1, c, block * block)
    per_band[:, :, _block_channel_order(levels)] = weight.reshape(-1, c, block * block)  # (D, c, pw * B + ph)
    per_band = per_band.reshape(-1, c, block, block)  # (D, c, pw, ph)
    kernel = torch.einsum("dcwp,pi->dcwi", per_band, analysis).reshape(-1, c * block, analysis.shape[1], 1)
    y = _analysis_w(x, levels)  # (b, c * B, H, W / B)
    return F.conv2d(_circular_pad(y, left, right, dim=-2), kernel, bias, stride=(block, 1))


def _phases(coeffs: torch.Tensor, levels: int, dim: int, gain: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """The B phases of the inverse 1-D packet transform along W (``dim=-1``) or H (``dim=-2``) of
    (N, G * B, H', W') with G groups of B bands, times ``gain`` plus ``offset`` (folded into the
    filter): (N, G * B[r], H', W'). Along H the contiguous layout is convolved in place of a
    transposed view (which cost the convolution a strided copy: ~25% of the whole synthesis)."""
    _, _, synthesis = _block_filters(levels)
    groups = coeffs.shape[1] // 2**levels
    reach = synthesis.shape[-1] // 2
    taps = (synthesis * gain).to(coeffs.dtype)
    kernel = (taps[:, :, None, :] if dim == -1 else taps[:, :, :, None]).repeat(groups, 1, 1, 1)  # (G * B, B, ., .)
    bias = torch.full((kernel.shape[0],), offset, dtype=coeffs.dtype) if offset else None
    return F.conv2d(_circular_pad(coeffs, reach, reach, dim=dim), kernel, bias, groups=groups)


def _synthesis_rows(coeffs: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse 1-D packet transform along the last axis of (N, G * B, H', W') with G groups of B
    bands -> (N, G, H', W' * B)."""
    block = 2**levels
    n, channels, h, w = coeffs.shape
    phases = _phases(coeffs, levels, dim=-1)
    return phases.reshape(n, channels // block, block, h, w).permute(0, 1, 3, 4, 2).reshape(n, -1, h, w * block)


def _synthesis_cols(coeffs: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse 1-D packet transform along H of (N, G * B, H', W') with G groups of B bands ->
    (N, G, H' * B, W')."""
    block = 2**levels
    n, channels, h, w = coeffs.shape
    phases = _phases(coeffs, levels, dim=-2)
    return phases.reshape(n, channels // block, block, h, w).transpose(2, 3).reshape(n, -1, h * block, w)


@functools.cache
def tensor_product_index(channels: int, levels: int) -> torch.Tensor:
    """Index with ``tensor_product = packets[:, index]`` for (B, channels, h, w) packet coefficients:
    the channel order (c, pw, ph) the block synthesis works in. A decoder can emit that order
    directly by reordering its last layer's output channels (:func:`iwpt2d_pixels`)."""
    block_channels = 4**levels
    inverse = torch.argsort(_block_channel_order(levels))
    return (torch.arange(channels // block_channels)[:, None] * block_channels + inverse[None]).reshape(-1)


def _iwpt2d_blocks(y: torch.Tensor, levels: int) -> torch.Tensor:
    tensor_product = y.index_select(1, tensor_product_index(y.shape[1], levels))  # (b, c * pw * ph, h, w)
    return _synthesis_rows(_synthesis_cols(tensor_product, levels), levels)  # (b, c, H, W)


def iwpt2d_pixels(y: torch.Tensor, levels: int, tensor_product: bool = False) -> torch.Tensor:
    """8-bit pixels of a signal in [-0.5, 0.5]: ``round(255 (iwpt2d(y) + 0.5))`` clamped to
    [0, 255], as a (B, H, W, C) uint8 tensor. ``tensor_product``: y's channels are already in
    :func:`tensor_product_index` order. The affine map is folded into the last synthesis filter,
    and both phase interleaves are left to one permute of the 8-bit result (the float image is
    never copied)."""
    if levels > MAX_BLOCK_LEVELS:
        x = iwpt2d(y, levels).mul_(255).add_(127.5)
        return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    n, channels, h, w = y.shape
    if channels % 4**levels:
        raise ValueError(f"{channels} channels is not a multiple of 4**{levels}")
    if not tensor_product:
        y = y.index_select(1, tensor_product_index(channels, levels))
    block, c = 2**levels, channels // 4**levels
    # (n, (c, pw, r), h, w) viewed as (n, (c, pw), (r, h), w): rows in phase-major order, which
    # the row synthesis (along w) does not mind
    cols = _phases(y.contiguous(), levels, dim=-2).view(n, c * block, block * h, w)
    phases = _phases(cols, levels, dim=-1, gain=255.0, offset=127.5).round_().clamp_(0, 255).to(torch.uint8)
    # (n, c, r_w, r_h, h, w) -> (n, h, r_h, w, r_w, c): pixel (h * B + r_h, w * B + r_w) of channel c
    pixels = phases.view(n, c, block, block, h, w).permute(0, 4, 3, 5, 2, 1)
    return pixels.reshape(n, h * block, w * block, c)


def _check_divisible(size: int, levels: int, what: str) -> None:
    if size % 2**levels or size == 0:
        raise ValueError(f"{what} {size} is not a positive multiple of 2**{levels}; pad with pad_to_multiple first")


def pad_to_multiple(x: torch.Tensor, multiple: int, dims: tuple[int, ...]) -> tuple[torch.Tensor, list[int]]:
    """Reflect-pad the given dims at the end up to a multiple; returns (padded, original sizes).

    Falls back to replicate padding where a dim is too short to reflect.
    """
    sizes = [x.shape[d] for d in dims]
    out = x
    for d, size in zip(dims, sizes, strict=True):
        extra = (-size) % multiple
        if not extra:
            continue
        out = out.movedim(d, -1)
        shape = out.shape
        flat = out.reshape(-1, 1, shape[-1])
        mode = "reflect" if extra < shape[-1] else "replicate"
        flat = F.pad(flat, (0, extra), mode=mode)
        out = flat.reshape(*shape[:-1], shape[-1] + extra).movedim(-1, d)
    return out, sizes


def crop_to(x: torch.Tensor, sizes: list[int], dims: tuple[int, ...]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    for d, size in zip(dims, sizes, strict=True):
        x = x.narrow(d, 0, size)
    return x
