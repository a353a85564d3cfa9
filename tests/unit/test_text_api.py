"""The text compressor's one API shape: load_compressor -> TextCompressor, module verbs as
its wrappers, "no network" as an explicit argument, and the package's lazy exports."""

import io
import subprocess
import sys

import pytest

import terse.textcomp
from terse.core.errors import ConfigError, ModelMismatchError
from terse.textcomp import LEVELS, CoderParams, TextCompressor, compress, decompress, load_compressor

DATA = b"It was the best of times, it was the worst of times, it was the age of wisdom.\n" * 12
SMALL = CoderParams(compute="integer", mixing=True, max_lanes=4, min_segment_bytes=64, frame_bytes=400)


def test_level_1_has_no_network_and_matches_the_module_verbs():
    compressor = load_compressor(level=1)
    assert isinstance(compressor, TextCompressor)
    assert (compressor.level, compressor.params, compressor.lm) == (1, LEVELS[1].params, None)
    assert not compressor.neural and compressor.model_name is None and compressor.model_id is None
    blob = compressor.compress(DATA)
    assert blob == compress(DATA, level=1)  # the wrapper codes bit-identically
    assert compressor.decompress(blob) == decompress(blob) == DATA


def test_neural_false_drops_the_levels_network():
    compressor = load_compressor(level=3, params=SMALL, neural=False)
    assert compressor.lm is None and compressor.params == SMALL
    assert compressor.compress(DATA) == compress(DATA, params=SMALL, neural=False)


def test_no_network_is_an_explicit_argument_not_a_model_name(tiny_m1):
    with pytest.raises(ConfigError, match="neural=False"):
        load_compressor(level=2, model=tiny_m1, neural=False)
    with pytest.raises(ConfigError, match="needs context mixing"):
        load_compressor(level=0, neural=False)
    with pytest.raises(ConfigError, match="unknown level"):
        load_compressor(level=9)


def test_streams_report_progress(tiny_m1):
    compressor = load_compressor(level=2, model=tiny_m1, params=SMALL)
    assert compressor.neural and compressor.lm.exact and compressor.model_name == tiny_m1.name
    seen = []
    packed = io.BytesIO()
    assert compressor.compress_stream(io.BytesIO(DATA), packed, on_bytes=seen.append) == len(DATA)
    assert sum(seen) == len(DATA)
    out = io.BytesIO()
    assert compressor.decompress_stream(io.BytesIO(packed.getvalue()), out) == len(DATA)
    assert out.getvalue() == DATA == decompress(packed.getvalue(), tiny_m1)


def test_decoding_loads_the_model_the_file_names(tiny_m1, tmp_path):
    from tests.conftest import make_tiny_m1

    with_tiny = load_compressor(level=2, model=tiny_m1, params=SMALL)
    alone = load_compressor(level=1).compress(DATA)
    assert with_tiny.decompress(alone) == DATA  # the header names no model
    other = make_tiny_m1(tmp_path / "other-m1", seed=1)
    by_other = compress(DATA, other, SMALL)
    with pytest.raises(ModelMismatchError, match="model given"):
        with_tiny.decompress(by_other)  # an explicit model must be the file's
    with pytest.raises(ModelMismatchError, match="not available"):
        load_compressor(level=1).decompress(by_other)  # else the header's model: not a shipped one


def test_package_exports_resolve_lazily():
    assert {"load_compressor", "TextCompressor", "EqualInfoTokenizer", "load_tokenizer", "train_m2"} <= set(
        dir(terse.textcomp))
    assert set(terse.textcomp.__all__) <= set(dir(terse.textcomp))
    script = "import sys, terse.textcomp; assert 'terse.textcomp.compressor' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True)


def test_every_tokenizer_kind_is_registered():
    from terse.textcomp.tokenizer_base import TOKENIZER_KINDS
    from terse.textcomp.tokenizers import load_tokenizer  # noqa: F401  (registers every kind)

    assert set(TOKENIZER_KINDS) == {"bytes", "gzip", "sentencepiece", "arithmetic", "equal_info"}
