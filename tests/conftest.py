"""Shared fixtures: tiny models built from configs (no downloads, no data folder)."""

from __future__ import annotations

import pytest
import torch

from terse.nn.gpt import GPT, GPTConfig
from terse.textcomp.model import load_byte_lm, save_byte_lm

TINY_M1 = GPTConfig(vocab_size=257, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, window=16)


def make_tiny_m1(folder, seed: int = 0, config: GPTConfig = TINY_M1):
    torch.manual_seed(seed)
    model = GPT(config)
    # Sharpen the random model a little so coding is not trivially uniform.
    with torch.no_grad():
        model.head.weight.mul_(20)
    save_byte_lm(model, folder, info={"purpose": "tests"})
    return load_byte_lm(folder)


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
