"""Quality metrics: PSNR, MS-SSIM (Wang, Simoncelli & Bovik 2003) and audio SNR."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((np.asarray(reference, dtype=np.float64) - np.asarray(test, dtype=np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def snr(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio in dB: 10 log10(sum x**2 / sum (x - y)**2)."""
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((ref - np.asarray(test, dtype=np.float64)) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(ref**2)) / noise)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, peak: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean luminance term * cs and mean cs over valid windows, per (B, C)."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    g = _gaussian_window().to(x.dtype)
    channels = x.shape[1]
    wx = g.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    wy = g.view(1, 1, -1, 1).expand(channels, 1, -1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, 'valid' windows
        return F.conv2d(F.conv2d(t, wx, groups=channels), wy, groups=channels)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).mean(dim=(2, 3)), cs.mean(dim=(2, 3))


def ms_ssim(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """MS-SSIM of two (H, W, C) or (H, W) images (5 scales, 11x11 Gaussian window, sigma 1.5,
    channel mean), as in Wang et al. 2003. Needs H, W >= 161 for all 5 scales; smaller images
    use as many scales as fit (weights renormalised)."""
    x = torch.as_tensor(np.asarray(reference, dtype=np.float64))
    y = torch.as_tensor(np.asarray(test, dtype=np.float64))
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    x, y = x.permute(2, 0, 1)[None], y.permute(2, 0, 1)[None]  # (1, C, H, W)
    scales = 0
    size = min(x.shape[-2:])
    while scales < len(MS_SSIM_WEIGHTS) and size >= 11:
        scales += 1
        size //= 2
    if scales == 0:
        raise ValueError("image is smaller than the 11x11 SSIM window")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    weights = weights / weights.sum()
    values = []
    for scale in range(scales):
        ssim_val, cs = _ssim_terms(x, y, peak)
        values.append(ssim_val if scale == scales - 1 else cs)
        if scale < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stack = torch.stack(values).clamp_min(0)  # (scales, 1, C)
    per_channel = torch.prod(stack ** weights.view(-1, 1, 1), dim=0)  # (1, C)
    return float(per_channel.mean())
