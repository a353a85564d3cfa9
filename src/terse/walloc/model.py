"""The WaLLoC network: WPT -> 1x1 linear encoder -> companding 8-bit bottleneck -> small
convolutional decoder in the wavelet domain -> inverse WPT.

Jacobellis & Yadwadkar, "Learned Compression for Compressed Learning" (WaLLoC, DCC 2025).
The encoder is exactly the paper's (one linear projection of the full wavelet packet
channels). The decoder is a CPU-sized replacement for the paper's 57M-parameter diffusers
decoder with global attention: a 1x1 linear path (the paper's ``LinearCodec`` decoder)
plus a residual stack of 3x3 (2-D) / 3-tap (1-D) convolutions, no attention. With
``decoder_blocks=0`` the codec is purely linear (used for the PCA baseline).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from terse.core.config import FrozenConfig
from terse.core.errors import ConfigError
from terse.nn.wavelets import (
    MAX_BLOCK_LEVELS,
    iwpt1d,
    iwpt2d,
    iwpt2d_pixels,
    tensor_product_index,
    wpt1d,
    wpt2d,
    wpt2d_project,
)

MODALITIES = ("image", "audio")


@dataclasses.dataclass(frozen=True)
class WallocConfig(FrozenConfig):
    """Constructor config of a WaLLoC codec.

    Attributes:
        modality: ``"image"`` (2-D WPT, RGB) or ``"audio"`` (1-D WPT, stereo).
        channels: signal channels C (3 for RGB, 2 for stereo).
        levels: WPT levels J; the wavelet domain has C * 4**J (2-D) or C * 2**J (1-D) channels.
        latent_dim: latent channels; dimensionality reduction = wavelet channels / latent_dim.
        latent_bits: b, bits per latent value (8 in the paper).
        latent_step: quantization step in the companded domain (1 in the paper). A coarser step
            keeps every latent channel but codes fewer levels (round(y / step)): at low rates
            that trades better than dropping channels, since weak channels then round to zero
            and cost almost nothing. Latent integers are in [-max_int, max_int], max_int =
            round((2**(b-1) - 1) / step).
        decoder_width: channels of the residual decoder (Nd).
        decoder_blocks: residual blocks (two convolutions each); 0 = linear decoder.
        sample_rate: audio only: the rate the codec was trained at (0 for images).
    """

    modality: str = "image"
    channels: int = 3
    levels: int = 3
    latent_dim: int = 12
    latent_bits: int = 8
    latent_step: float = 1.0
    decoder_width: int = 96
    decoder_blocks: int = 3
    sample_rate: int = 0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ConfigError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.channels < 1 or self.levels < 1 or self.levels > 10:
            raise ConfigError("channels must be >= 1 and levels in 1..10")
        if not 1 <= self.latent_dim <= self.wavelet_channels:
            raise ConfigError(f"latent_dim must be in 1..{self.wavelet_channels} (the wavelet channels)")
        if not 2 <= self.latent_bits <= 8:
            raise ConfigError("latent_bits must be in 2..8 (latents are stored as bytes)")
        if not 1.0 <= self.latent_step <= 2 ** (self.latent_bits - 2):
            raise ConfigError(f"latent_step must be in 1..{2 ** (self.latent_bits - 2)} (at least 2 levels each side)")
        if self.decoder_width < 1 or self.decoder_blocks < 0:
            raise ConfigError("decoder_width must be >= 1 and decoder_blocks >= 0")
        if self.modality == "audio" and self.sample_rate <= 0:
            raise ConfigError("an audio codec needs its sample_rate (e.g. 44100)")

    @property
    def wavelet_channels(self) -> int:
        return self.channels * (4 if self.modality == "image" else 2) ** self.levels

    @property
    def block(self) -> int:
        """Input samples per latent position along each axis (2**J)."""
        return 2**self.levels

    @property
    def dimensionality_reduction(self) -> float:
        return self.wavelet_channels / self.latent_dim

    @property
    def max_int(self) -> int:
        """The largest latent magnitude a file holds (latents are in [-max_int, max_int])."""
        return max_latent_int(self.latent_bits, self.latent_step)


def max_latent_int(bits: int, step: float) -> int:
    """round((2**(bits-1) - 1) / step): the companded range in units of the quantization step."""
    return round((2 ** (bits - 1) - 1) / step)


class Companding(nn.Module):
    """The paper's bottleneck: z -> uniform in (-latent_max, latent_max) via the normal CDF,
    then (``step`` > 1, terse's rate knob) divided by the quantization step.

    ``to_uniform``: y = 2 m (Phi(z / s) - 1/2) / step, m = 2**(b-1) - 1 + 0.5 - 1e-3,
    s = (2**(b-1) - 1) / 1.85: latents in units of the step, so rounding gives the integers a
    file holds in [-max_int, max_int]; training adds U(-1/2, 1/2) noise (clamped to the integer
    range, a deviation from the paper that matters for heavy-tailed audio). ``to_normal``
    inverts it with the argument clipped to [1e-4, 1 - 1e-4].
    """

    def __init__(self, bits: int, step: float = 1.0) -> None:
        super().__init__()
        self.bits = bits
        self.step = float(step)
        levels = 2 ** (bits - 1) - 1
        self.max_int = max_latent_int(bits, self.step)
        self.latent_max = levels + 0.5 - 1e-3
        self.scale = levels / 1.85

    def to_uniform(self, z: torch.Tensor) -> torch.Tensor:
        y = 2 * self.latent_max * (torch.special.ndtr(z / self.scale) - 0.5)
        return y if self.step == 1 else y / self.step

    def to_normal(self, y: torch.Tensor) -> torch.Tensor:
        y = y if self.step == 1 else y * self.step
        p = (y / (2 * self.latent_max) + 0.5).clamp(1e-4, 1 - 1e-4)
        return self.scale * torch.special.ndtri(p)

    def quantize(self, y: torch.Tensor) -> torch.Tensor:
        return y.round().clamp(-self.max_int, self.max_int)

    def noisy(self, y: torch.Tensor) -> torch.Tensor:
        # Clamped to the integer range that rounding can produce: without the clamp, noise on a
        # saturated latent (|y| near latent_max) reaches where the inverse normal CDF is steepest
        # and the training signal there is far noisier than the rounding error at inference.
        return (y + torch.rand_like(y) - 0.5).clamp(-self.max_int, self.max_int)


class ResidualBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))); the second conv starts at zero so a fresh block is the identity."""

    def __init__(self, width: int, conv: type[nn.Module]) -> None:
        super().__init__()
        self.conv1 = conv(width, width, 3, padding=1)
        self.conv2 = conv(width, width, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(nn.functional.silu(self.conv1(nn.functional.silu(x))))


class WallocNet(nn.Module):
    """WaLLoC codec network (paper: Jacobellis & Yadwadkar 2024, arXiv 2412.09405).

    Shapes for images (B, C, H, W) with H, W multiples of 2**J; audio (B, C, L), L a multiple
    of 2**J. ``latent`` tensors are (B, latent_dim, H/2**J, W/2**J) or (B, latent_dim, L/2**J).
    """

    def __init__(self, config: WallocConfig) -> None:
        super().__init__()
        self.config = config
        conv = nn.Conv2d if config.modality == "image" else nn.Conv1d
        wc, d = config.wavelet_channels, config.latent_dim
        self.encoder = conv(wc, d, 1)  # the paper's linear 1x1 encoder
        self.bottleneck = Companding(config.latent_bits, config.latent_step)
        self.linear_decoder = conv(d, wc, 1)  # linear path (LinearCodec-style)
        if config.decoder_blocks:
            self.decoder_in = conv(d, config.decoder_width, 1)
            self.blocks = nn.ModuleList(ResidualBlock(config.decoder_width, conv) for _ in range(config.decoder_blocks))
            self.decoder_out = conv(config.decoder_width, wc, 1)
            nn.init.zeros_(self.decoder_out.weight)
            nn.init.zeros_(self.decoder_out.bias)

    # --- transforms -------------------------------------------------------------------
    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        return wpt2d(x, self.config.levels) if self.config.modality == "image" else wpt1d(x, self.config.levels)

    def synthesis(self, coeffs: torch.Tensor) -> torch.Tensor:
        return iwpt2d(coeffs, self.config.levels) if self.config.modality == "image" else iwpt1d(coeffs, self.config.levels)

    # --- codec halves -----------------------------------------------------------------
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The linear encoder: 1x1 projection of the packet channels (images: fused with the WPT
        into two convolutions, without materialising the C * 4**J packet channels)."""
        if self.config.modality == "image":
            # oneDNN's convolutions run ~1.5x as fast on a channels-last input
            x = x.contiguous(memory_format=torch.channels_last)
            return wpt2d_project(x, self.encoder.weight, self.encoder.bias, self.config.levels)
        return self.encoder(self.analysis(x))

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """Companded latent before noise/rounding (the paper's input to downstream models)."""
        return self.bottleneck.to_uniform(self.project(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Integer latent in [-(2**(b-1) - 1), 2**(b-1) - 1] (float tensor holding integers)."""
        return self.bottleneck.quantize(self.encode_continuous(x))

    def decode_coefficients(self, latent: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        """Packet coefficients of a latent; ``order``: emit output channels ``order`` (a permutation
        of the packet channels), by reordering the last layers' weights instead of the output."""
        def output(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return layer(x) if order is None else layer._conv_forward(x, layer.weight[order], layer.bias[order])

        z = self.bottleneck.to_normal(latent)
        out = output(self.linear_decoder, z)
        if self.config.decoder_blocks:
            if self.config.modality == "image":  # the 3x3 convolutions are faster channels-last
                z = z.contiguous(memory_format=torch.channels_last)
            h = self.decoder_in(z)
            for block in self.blocks:
                h = block(h)
            # out stays in the linear path's (contiguous) layout, which the synthesis needs
            out = out + output(self.decoder_out, nn.functional.silu(h))
        return out

    def decode_pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """Images: the reconstruction as (B, H, W, C) uint8 pixels (``decode`` mapped to [0, 255] and
        rounded), the decoder emitting its coefficients in the block synthesis' channel order."""
        levels = self.config.levels
        order = tensor_product_index(self.config.wavelet_channels, levels) if levels <= MAX_BLOCK_LEVELS else None
        return iwpt2d_pixels(self.decode_coefficients(latent, order), levels, tensor_product=order is not None)

    def decode(self, latent: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        x = self.synthesis(self.decode_coefficients(latent))
        return x.clamp(-0.5, 0.5) if clamp and self.config.modality == "image" else x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Differentiable pass: noise in training mode, rounding in eval mode.

        Returns ``x_hat`` (unclamped), ``mse`` (signal domain), ``latent`` (noisy/rounded) and
        ``rate_bits``: an estimate of bits per latent value (entropy of a Gaussian fit to the
        integer-scale latent, the differential-entropy rate of a uniform-quantized variable).
        """
        y = self.encode_continuous(x)
        latent = self.bottleneck.noisy(y) if self.training else self.bottleneck.quantize(y)
        x_hat = self.synthesis(self.decode_coefficients(latent))
        std = y.detach().flatten(2).std(dim=-1).clamp_min(1e-3)  # (B, latent_dim)
        rate = (0.5 * torch.log2(2 * math.pi * math.e * (std**2 + 1 / 12))).clamp_min(0).mean()
        return {"x_hat": x_hat, "mse": torch.mean((x_hat - x) ** 2), "latent": latent, "rate_bits": rate}


def pca_init(net: WallocNet, coeffs: torch.Tensor, spread: float = 0.5) -> dict[str, float]:
    """Closed-form PCA (KLT) of wavelet coefficients -> encoder and linear decoder.

    ``coeffs``: (N, wavelet_channels) samples. The top ``latent_dim`` principal directions
    become the encoder rows, all with one common gain chosen so that the strongest latent has
    std ``spread * scale`` before companding. A common gain means one quantization step for
    every direction (the high-rate optimum for a uniform quantizer: weak directions get few
    bits instead of being whitened up to the full 8-bit range). The linear decoder is the
    exact inverse map in the noise-free limit. Returns the kept energy fraction.
    """
    cfg = net.config
    mean = coeffs.mean(0)
    centred = coeffs - mean
    cov = centred.T @ centred / len(coeffs)
    eigval, eigvec = torch.linalg.eigh(cov.double())
    order = torch.argsort(eigval, descending=True)[: cfg.latent_dim]
    vals, vecs = eigval[order].clamp_min(1e-12).float(), eigvec[:, order].float()  # (wc,), (wc, d)
    gain = (spread * net.bottleneck.scale / vals[0].sqrt()).expand_as(vals)  # (d,) one step size for all
    w_enc = (vecs * gain).T  # (d, wc)
    shape = (cfg.latent_dim, cfg.wavelet_channels) + (1,) * (net.encoder.weight.dim() - 2)
    with torch.no_grad():
        net.encoder.weight.copy_(w_enc.reshape(shape))
        net.encoder.bias.copy_(-(w_enc @ mean))
        w_dec = vecs / gain  # (wc, d)
        net.linear_decoder.weight.copy_(w_dec.reshape((cfg.wavelet_channels, cfg.latent_dim) + shape[2:]))
        net.linear_decoder.bias.copy_(mean)
    return {"energy_kept": float(eigval[order].sum() / eigval.sum())}
