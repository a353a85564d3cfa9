"""Shared fixtures: tiny models built from configs (no downloads, no data folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from terse.nn.gpt import GPT, GPTConfig
from terse.textcomp.model import load_byte_lm, quantize_m1, save_byte_lm

TINY_M1 = GPTConfig(vocab_size=257, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, window=16)
# Real text shipped with terse: calibrates the integer versions of test models.
CALIBRATION_TEXT = Path(__file__).resolve().parents[1] / "src/terse/cli/demo_data/declaration_of_independence.txt"


def save_test_m1(model: GPT, folder):
    """Save a float test M1 with its integer version (what coding uses); returns the float one."""
    save_byte_lm(model, folder, info={"purpose": "tests"})
    quantize_m1(folder, [CALIBRATION_TEXT])
    return load_byte_lm(folder)


def make_tiny_m1(folder, seed: int = 0, config: GPTConfig = TINY_M1):
    torch.manual_seed(seed)
    model = GPT(config)
    # Sharpen the random model a little so coding is not trivially uniform.
    with torch.no_grad():
        model.head.weight.mul_(20)
    return save_test_m1(model, folder)


def make_peaked_m1(folder, probs: dict[int, float], seed: int = 0, config: GPTConfig = TINY_M1):
    """An M1 that predicts (almost) a fixed byte distribution whatever the context.

    The final LayerNorm is made to output ~its bias u, and each byte's head row is set
    so its logit is ~log p: cheap, confident bytes give long windows and many of the
    zero-padding collisions that make the paper's greedy rule ambiguous.
    """
    torch.manual_seed(seed)
    model = GPT(config)
    d = config.d_model
    rest = (1.0 - sum(probs.values())) / (256 - len(probs))
    logp = torch.full((config.vocab_size,), float(torch.log(torch.tensor(max(rest, 1e-9)))))
    for byte, p in probs.items():
        logp[byte] = float(torch.log(torch.tensor(p)))
    logp[256] = -30.0
    with torch.no_grad():
        model.ln_final.weight.mul_(0.01)  # small context-dependent noise
        u = torch.ones(d) / d**0.5
        model.ln_final.bias.copy_(u)
        model.head.weight.copy_(logp[:, None] * u[None, :] / u.dot(u) + 0.01 * torch.randn(config.vocab_size, d))
    return save_test_m1(model, folder)


@pytest.fixture(scope="session")
def peaked_m1(tmp_path_factory):
    """Bytes 'a' 0.6, 'b' 0.25, ' ' 0.1: windows of many cheap bytes."""
    return make_peaked_m1(tmp_path_factory.mktemp("m1") / "peaked-m1", {97: 0.6, 98: 0.25, 32: 0.1})


def assert_decodes_or_fails_crc(decode, expected: bytes) -> None:
    """A float-network file made on another machine decodes where the float kernels match
    the encoder's; elsewhere it must fail its CRC check (never give wrong output)."""
    from terse.core.errors import FormatError

    try:
        assert decode() == expected
    except FormatError as exc:
        assert "CRC32" in str(exc)


def assert_bit_flips_rejected(blob: bytes, decode, count: int, seed: int = 0) -> None:
    """Flipping one random bit anywhere in ``blob`` must make ``decode`` raise FormatError."""
    import numpy as np

    from terse.core.errors import FormatError

    rng = np.random.default_rng(seed)
    for position in rng.integers(0, len(blob), count):
        damaged = bytearray(blob)
        damaged[position] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(FormatError):
            decode(bytes(damaged))


@pytest.fixture(scope="session")
def tiny_m1_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("m1") / "tiny-m1"
    make_tiny_m1(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_m1(tiny_m1_dir):
    return load_byte_lm(tiny_m1_dir)


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(1)
