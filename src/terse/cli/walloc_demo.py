"""The WaLLoC part of ``terse demo``: a generated image and a generated stereo clip (no data
folder needed) through the shipped codecs, with JPEG / Vorbis at a similar size for scale."""

from __future__ import annotations

import io
import time

import numpy as np


def demo_image(height: int = 256, width: int = 384, seed: int = 0) -> np.ndarray:
    """A synthetic landscape: sky gradient, sun, two textured hills (deterministic)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    img = np.zeros((height, width, 3))
    img[:] = np.stack((0.35 + 0.3 * y, 0.55 + 0.25 * y, 0.95 - 0.2 * y), axis=-1)
    sun = (x - 0.75) ** 2 * (width / height) ** 2 + (y - 0.25) ** 2 < 0.012
    img[sun] = (1.0, 0.9, 0.5)
    texture = np.cumsum(rng.normal(0, 0.02, (height, width)), axis=1)
    texture -= texture.mean(axis=1, keepdims=True)
    for base, amp, freq, colour in ((0.6, 0.08, 5, (0.25, 0.5, 0.2)), (0.75, 0.06, 9, (0.35, 0.3, 0.15))):
        hill = y > base + amp * np.sin(2 * np.pi * freq * x / 3 + base * 10)
        img[hill] = np.array(colour) + texture[hill, None] * 0.8 + 0.05 * rng.normal(size=(hill.sum(), 1))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def demo_audio(seconds: float = 3.0, rate: int = 44100) -> np.ndarray:
    """A stereo chord with a plucked envelope and a little noise (deterministic)."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.exp(-3 * (t % 0.75))
    chord = sum(np.sin(2 * np.pi * f * t + k) / (k + 1) for k, f in enumerate((220.0, 277.2, 329.6, 440.0)))
    noise = np.random.default_rng(0).normal(0, 0.01, (2, t.size))
    return (0.25 * envelope * np.stack((chord, np.roll(chord, 200))) + noise).astype(np.float32)


def walloc_demo() -> None:
    from PIL import Image

    from terse.walloc.codec import decompress, load_codec
    from terse.walloc.metrics import ms_ssim, psnr, snr

    img = demo_image()
    h, w = img.shape[:2]
    print(f"\nWaLLoC lossy codecs: a generated {w}x{h} landscape (24-bit RGB = {h * w * 3:,} bytes)")
    sizes = []
    for name in ("walloc-rgb-16x", "walloc-rgb-4x-step6", "walloc-rgb-4x"):
        codec = load_codec(name)
        start = time.perf_counter()
        blob = codec.compress(img)
        t_enc = time.perf_counter() - start
        start = time.perf_counter()
        out = decompress(blob).data  # the file names its model: no other argument
        t_dec = time.perf_counter() - start
        webp = len(codec.compress(img, storage="webp"))
        sizes.append(len(blob))
        print(f"  {name:<19} {len(blob):6,} bytes ({8 * len(blob) / (h * w):.2f} bpp; latent as lossless WebP: {webp:,})  "
              f"PSNR {psnr(img, out):.2f} dB  MS-SSIM {ms_ssim(img, out):.4f}  encode {t_enc:.2f}s decode {t_dec:.2f}s")
    for quality in (10, 50, 90):
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=quality)
        size = len(buffer.getvalue())
        out = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        print(f"  {'JPEG q' + str(quality):<15} {size:6,} bytes ({8 * size / (h * w):.2f} bpp)  "
              f"PSNR {psnr(img, out):.2f} dB  MS-SSIM {ms_ssim(img, out):.4f}")
    codec = load_codec("walloc-stereo-5x")
    clip = demo_audio(rate=codec.config.sample_rate)
    seconds = clip.shape[1] / codec.config.sample_rate
    blob = codec.compress(clip, sample_rate=codec.config.sample_rate)
    out = decompress(blob).data
    print(f"  walloc-stereo-5x on a generated {seconds:.0f} s stereo chord: {len(blob):,} bytes "
          f"({8 * len(blob) / seconds / 1e3:.1f} kbps vs 1411 kbps CD audio), SNR {snr(clip, out):.1f} dB")
