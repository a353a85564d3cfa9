"""PSNR / MS-SSIM / SNR properties."""

import numpy as np
import pytest

from terse.walloc.metrics import ms_ssim, psnr, snr


def _image(seed=0, size=(192, 176)):
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.normal(size=size + (3,)), 0), 1)
    base = (base - base.min()) / (base.max() - base.min()) * 255
    return base.astype(np.uint8)


def test_ms_ssim_identity_symmetry_and_monotonic_in_noise():
    x = _image()
    assert ms_ssim(x, x) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    scores = []
    for sigma in (2, 8, 32):
        y = np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)
        scores.append(ms_ssim(x, y))
        assert ms_ssim(x, y) == pytest.approx(ms_ssim(y, x), abs=1e-9)
    assert 1 > scores[0] > scores[1] > scores[2] > 0


def test_ms_ssim_ignores_luminance_shift_more_than_psnr():
    # a constant offset leaves structure intact: MS-SSIM stays high while PSNR drops to ~28 dB
    x = _image()
    y = np.clip(x.astype(int) + 10, 0, 255).astype(np.uint8)
    assert ms_ssim(x, y) > 0.97
    assert psnr(x, y) < 29


def test_psnr_and_snr_known_values():
    x = np.zeros((4, 4))
    y = np.full((4, 4), 255 / 10)
    assert psnr(x, y) == pytest.approx(20.0)
    s = np.ones(100)
    assert snr(s, s * 0.9) == pytest.approx(20.0)
    assert psnr(x, x) == float("inf")
