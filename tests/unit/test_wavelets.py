"""Wavelet packet transform: perfect reconstruction, shapes, PyWavelets agreement."""

import numpy as np
import pytest
import torch

from terse.nn.wavelets import (
    _iwpt2d_levels,
    _wpt2d_levels,
    crop_to,
    iwpt1d,
    iwpt2d,
    iwpt2d_pixels,
    pad_to_multiple,
    tensor_product_index,
    wpt1d,
    wpt2d,
    wpt2d_project,
)


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_2d_perfect_reconstruction_and_shape(levels):
    x = torch.rand(2, 3, 64, 48) - 0.5
    y = wpt2d(x, levels)
    assert y.shape == (2, 3 * 4**levels, 64 >> levels, 48 >> levels)
    assert (iwpt2d(y, levels) - x).abs().max() < 1e-5


@pytest.mark.parametrize("levels", [1, 4, 8])
def test_1d_perfect_reconstruction_and_shape(levels):
    x = torch.randn(2, 2, 1024) * 0.3
    y = wpt1d(x, levels)
    assert y.shape == (2, 2 * 2**levels, 1024 >> levels)
    assert (iwpt1d(y, levels) - x).abs().max() < 1e-5


def test_float64_reconstruction_down_to_single_samples():
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    assert (iwpt2d(wpt2d(x, 3), 3) - x).abs().max() < 1e-10  # 1x1 sub-bands at J=3


def test_smooth_image_energy_sits_in_lowpass_channels():
    # smooth periodic image (periodization wraps around): nearly all energy in the C
    # all-lowpass channels (index c * 4**J)
    h = 2 * torch.pi * torch.arange(64) / 64
    x = (1 + torch.sin(h)[:, None] * torch.cos(h)[None, :]).expand(1, 3, 64, 64).contiguous()
    y = wpt2d(x, 3)
    low = (y[:, ::64] ** 2).sum() / (y**2).sum()
    assert low > 0.99


def test_matches_pywavelets_packets():
    pywt = pytest.importorskip("pywt")
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64)
    y = wpt2d(x, 1)[0]
    ca, (ch, cv, cd) = pywt.dwt2(x[0, 0].numpy(), "bior4.4", mode="periodization")
    # child f = 2 * b + a, b: filter along W, a: along H
    for f, ref in enumerate((ca, ch, cv, cd)):
        np.testing.assert_allclose(y[f].numpy(), ref, atol=1e-12)
    s = torch.randn(1, 1, 64, dtype=torch.float64)
    packet = pywt.WaveletPacket(s[0, 0].numpy(), "bior4.4", mode="periodization", maxlevel=2)
    y1 = wpt1d(s, 2)[0]
    for index, path in enumerate(("aa", "ad", "da", "dd")):
        np.testing.assert_allclose(y1[index].numpy(), packet[path].data, atol=1e-12)


def test_odd_lengths_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match="pad_to_multiple"):
        wpt2d(torch.zeros(1, 3, 30, 32), 3)


@pytest.mark.parametrize("size", [(5, 7), (1, 1), (17, 9)])
def test_pad_and_crop_round_trip(size):
    x = torch.rand(1, 3, *size)
    padded, sizes = pad_to_multiple(x, 8, (2, 3))
    assert padded.shape[2] % 8 == 0 and padded.shape[3] % 8 == 0
    restored = crop_to(iwpt2d(wpt2d(padded, 3), 3), sizes, (2, 3))
    assert restored.shape == x.shape and (restored - x).abs().max() < 1e-5


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_block_form_equals_level_form(levels):
    # the fast 2-D path (two strided convolutions per direction) is the same linear map
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    y = wpt2d(x, levels)
    assert (y - _wpt2d_levels(x, levels)).abs().max() < 1e-12
    assert (iwpt2d(y, levels) - _iwpt2d_levels(y, levels)).abs().max() < 1e-12


def test_block_form_handles_blocks_smaller_than_the_filters():
    x = torch.randn(1, 2, 8, 16, dtype=torch.float64)  # one 8x8 block high: filters wrap around many times
    assert (wpt2d(x, 3) - _wpt2d_levels(x, 3)).abs().max() < 1e-12
    assert (iwpt2d(wpt2d(x, 3), 3) - x).abs().max() < 1e-10


@pytest.mark.parametrize("levels", [1, 3, 5])
def test_pixels_equal_the_rounded_reconstruction(levels):
    # images decode straight to (B, H, W, C) uint8: the affine map inside the filter, one 8-bit
    # permute for both phase interleaves; the same pixels as mapping the float image
    torch.manual_seed(levels)
    y = wpt2d(torch.rand(2, 3, 32 * 2**levels // 4, 64, dtype=torch.float64) * 1.2 - 0.6, levels)
    reference = _iwpt2d_levels(y, levels).add(0.5).mul(255).round().clamp(0, 255).to(torch.uint8)
    pixels = iwpt2d_pixels(y, levels)
    assert pixels.dtype == torch.uint8 and pixels.shape == (2, y.shape[2] << levels, y.shape[3] << levels, 3)
    assert torch.equal(pixels, reference.permute(0, 2, 3, 1))
    assert (reference == 0).any() and (reference == 255).any()  # the clamp was exercised
    if levels <= 4:  # channels already in the block synthesis' order (a decoder can emit them so)
        reordered = y[:, tensor_product_index(y.shape[1], levels)]
        assert torch.equal(iwpt2d_pixels(reordered, levels, tensor_product=True), pixels)


@pytest.mark.parametrize("levels", [2, 3, 5])
def test_fused_projection_equals_transform_then_1x1(levels):
    x = torch.randn(1, 3, 64, 32, dtype=torch.float64)
    weight = torch.randn(5, 3 * 4**levels, 1, 1, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64)
    fused = wpt2d_project(x, weight, bias, levels)
    reference = torch.nn.functional.conv2d(_wpt2d_levels(x, levels), weight, bias)
    assert (fused - reference).abs().max() < 1e-10
    fused.square().sum().backward()  # differentiable in the projection (WaLLoC trains through it)
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="packet channels"):
        wpt2d_project(x, weight[:, :7], bias, levels)
