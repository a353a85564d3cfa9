"""Files decode on every machine: the integer M1 computes the same bits on any CPU
family, thread count and batch split.

The golden files were made with the *shipped* models; `make test` decodes them (and
re-encodes the input, which must give the very same bytes) on whatever machine runs it.
A subprocess repeats that with torch and numba restricted to other kernels (SSE4.1-level
ATen, oneDNN and MKL; numba compiled for a generic x86-64), as on another CPU, and with
1 or 2 coding threads. Regenerate the goldens with TERSE_REGEN_GOLDEN=1 only after an
intended format or model change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import CALIBRATION_TEXT, TINY_M1
from tests.elsewhere import OTHER_KERNELS, assert_script_prints_ok

from terse.nn.gpt import GPT
from terse.nn.integer_gpt import IntegerGPT
from terse.nn.quantize_gpt import quantize_gpt
from terse.textcomp.compressor import compress, decompress
from terse.textcomp.model import calibration_sample

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
INPUT = GOLDEN / "textcomp_portable_input.txt"
LEVELS = (0, 1, 2, 3)


def golden(level: int) -> Path:
    return GOLDEN / f"textcomp_shipped_level{level}.trs"


@pytest.mark.parametrize("level", LEVELS)
def test_golden_files_of_shipped_models_decode_and_reencode(level):
    data = INPUT.read_bytes()
    blob = compress(data, level=level)
    if os.environ.get("TERSE_REGEN_GOLDEN") == "1":
        golden(level).write_bytes(blob)
    assert decompress(golden(level).read_bytes()) == data
    assert blob == golden(level).read_bytes()  # the encoder is exact too


@pytest.mark.parametrize("level", LEVELS)
def test_files_of_container_version_1_still_decode(level):
    """The same files as written before the compact container (JSON headers)."""
    blob = (GOLDEN / f"textcomp_shipped_level{level}_container1.trs").read_bytes()
    assert blob[4] == 1 and len(blob) > len(golden(level).read_bytes()) + 90
    assert decompress(blob) == INPUT.read_bytes()


@pytest.mark.parametrize("level", (1, 2, 3))
def test_files_of_the_first_mixer_still_decode(level):
    """Levels 1-3 as written before mixer 2 (coder preset "exact-mixing")."""
    blob = (GOLDEN / f"textcomp_shipped_level{level}_mixer1.trs").read_bytes()
    assert b"exact-mixing" in blob[:400] and b"exact-mixing-2" not in blob[:400]
    assert decompress(blob) == INPUT.read_bytes()


@pytest.mark.parametrize("level", (1, 2, 3))
def test_files_of_mixer_3_still_decode(level):
    """Levels 1-3 as written before mixer 4 (coder preset "exact-mixing-3")."""
    blob = (GOLDEN / f"textcomp_shipped_level{level}_mixer3.trs").read_bytes()
    assert blob != golden(level).read_bytes()
    assert decompress(blob) == INPUT.read_bytes()


SCRIPT = """
import json, sys
from pathlib import Path
from terse.textcomp.compressor import compress, decompress
data, levels = Path(sys.argv[1]).read_bytes(), json.loads(sys.argv[2])
for level in levels:
    golden = Path(sys.argv[3]) / f"textcomp_shipped_level{level}.trs"
    assert decompress(golden.read_bytes()) == data, f"level {level} decodes differently"
    assert compress(data, level=level) == golden.read_bytes(), f"level {level} encodes differently"
print("ok")
"""


@pytest.mark.parametrize("threads,env", [("1", OTHER_KERNELS), ("2", {})], ids=["other-kernels-1-thread", "2-threads"])
def test_golden_files_decode_with_other_kernels_and_threads(threads, env):
    assert_script_prints_ok(SCRIPT, str(INPUT), json.dumps(list(LEVELS)), str(GOLDEN), env={**env, "TERSE_THREADS": threads},
                            timeout=900)


@pytest.fixture(scope="module")
def tiny_integer():
    torch.manual_seed(0)
    model = GPT(TINY_M1)
    config, tensors = quantize_gpt(model, calibration_sample([CALIBRATION_TEXT], sequences=8, length=64))
    return config, tensors


def _run(network: IntegerGPT, ids: np.ndarray, threads: int = 1) -> np.ndarray:
    """Frequencies of every step of ids (B, T) -> (B, T, 256)."""
    cache = network.new_cache(len(ids), threads=threads)
    return np.stack([network.step(ids[:, t], cache) for t in range(ids.shape[1])], axis=1)


def test_int8_and_fp32_backends_and_any_batch_split_agree(tiny_integer):
    config, tensors = tiny_integer
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, (40, 40))  # longer than the window of 16: the ring wraps
    reference = _run(IntegerGPT(config, tensors, "fp32"), ids)
    assert np.array_equal(_run(IntegerGPT(config, tensors, "int8"), ids), reference)
    assert np.array_equal(_run(IntegerGPT(config, tensors, "int8"), ids, threads=3), reference)
    alone = _run(IntegerGPT(config, tensors, "int8"), ids[7:8])
    assert np.array_equal(alone[0], reference[7])
    assert (reference >= 1).all() and (reference.sum(-1) == 1 << 16).all()


def test_integer_network_follows_the_float_one(tiny_integer):
    """Quantization changes the probabilities a little, not the model."""
    config, tensors = tiny_integer
    torch.manual_seed(0)
    model = GPT(TINY_M1).eval()
    ids = calibration_sample([CALIBRATION_TEXT], sequences=4, length=48, seed=1)
    with torch.no_grad():
        float_probs = torch.softmax(model(ids[:, :-1])[..., :256].double(), -1).numpy()
    freqs = _run(IntegerGPT(config, tensors), ids[:, :-1].numpy()) / 2.0**16
    assert np.abs(freqs - float_probs).max() < 0.02


def test_out_of_range_tensors_are_refused(tiny_integer):
    config, tensors = tiny_integer
    bad = dict(tensors)
    bad["blocks.0.qkv.weight"] = tensors["blocks.0.qkv.weight"].clone()
    bad["blocks.0.qkv.weight"][0, 0] = 100  # breaks the |w| <= 63 bound that makes int8 GEMM exact
    with pytest.raises(ValueError, match="within"):
        IntegerGPT(config, bad)
    with pytest.raises(ValueError, match="lacks"):
        IntegerGPT(config, {k: v for k, v in tensors.items() if k != "logit_exp"})
