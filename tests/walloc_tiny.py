"""Tiny WaLLoC codecs built from configs (random weights + PCA init), for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from terse.walloc.codec import WallocCodec, save_codec
from terse.walloc.entropy_model import fit_entropy_model, untrained_tables
from terse.walloc.model import WallocConfig, WallocNet, pca_init


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic natural-ish RGB test image (integrated noise), uint8."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.normal(size=(height, width, 3)), 0), 1)
    base = (base - base.min()) / max(1e-9, base.max() - base.min()) * 255
    return base.round().astype(np.uint8)


def stereo_tone(length: int, rate: int = 8000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate
    left = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.normal(size=length)
    right = 0.2 * np.sin(2 * np.pi * 330 * t + 1) + 0.05 * rng.normal(size=length)
    return np.stack((left, right)).astype(np.float32)


def tiny_image_net(latent_dim: int = 12, blocks: int = 1, seed: int = 0) -> WallocNet:
    torch.manual_seed(seed)
    net = WallocNet(WallocConfig(latent_dim=latent_dim, decoder_width=8, decoder_blocks=blocks))
    crops = torch.from_numpy(np.stack([smooth_image(32, 32, s) for s in range(8)])).permute(0, 3, 1, 2).float() / 255 - 0.5
    coeffs = net.analysis(crops)
    pca_init(net, coeffs.transpose(0, 1).reshape(coeffs.shape[1], -1).T)
    with torch.no_grad():  # make the non-linear path non-trivial
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.01)
    return net.eval()


def tiny_audio_net(seed: int = 0) -> WallocNet:
    torch.manual_seed(seed)
    net = WallocNet(WallocConfig(modality="audio", channels=2, levels=4, latent_dim=8, decoder_width=8,
                                 decoder_blocks=1, sample_rate=8000))
    clips = torch.from_numpy(np.stack([stereo_tone(1024, seed=s) for s in range(4)]))
    coeffs = net.analysis(clips)
    pca_init(net, coeffs.transpose(0, 1).reshape(coeffs.shape[1], -1).T)
    return net.eval()


def tiny_codec(net: WallocNet, examples: list[np.ndarray], name: str = "tiny", folder: Path | None = None) -> WallocCodec:
    """Fit the entropy model on ``examples`` (signals); save to ``folder`` when given (then load it)."""
    from terse.walloc.codec import load_codec

    probe = WallocCodec(net, untrained_tables(net.config.latent_dim), "probe", name)
    tables = fit_entropy_model([probe.encode_latent(x)[0] for x in examples], net.config, steps=60)
    if folder is None:
        return WallocCodec(net, tables, "0" * 16, name)
    save_codec(net, tables, folder, name=name, half=False)
    return load_codec(folder)
