import io
import os
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import assert_bit_flips_rejected, assert_decodes_or_fails_crc, make_tiny_m1

from terse.core.errors import FormatError, ModelMismatchError
from terse.textcomp.compressor import (
    CoderParams,
    compress,
    compress_stream,
    decompress,
    decompress_stream,
    segment_lengths,
)

# Small frames and segments so short inputs exercise many lanes and several frames.
# allow_stored=False: the tiny random model must not fall back to stored frames here.
PARAMS = CoderParams(max_lanes=8, min_segment_bytes=16, frame_bytes=700, compute="integer", allow_stored=False)
GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@pytest.mark.parametrize("data", [
    b"",
    b"a",
    "Unicode: naïve café, 日本語, emoji 🎉, Ελληνικά.\n".encode() * 7,
    bytes(range(256)) * 3,
    np.random.default_rng(0).integers(0, 256, 2500, dtype=np.uint8).tobytes(),
    b"windows line one\r\nline two\r\n" * 30,  # CRLF text: coded as LF, restored
    b"mixed\r\nendings\nand a lone\r here\r\n" * 20,  # not invertible: coded as is
    b"\r\n", b"\r", b"\n\r",
])
def test_round_trip(tiny_m1, data):
    blob = compress(data, tiny_m1, PARAMS)
    assert decompress(blob, tiny_m1) == data


def test_crlf_text_is_coded_as_lf(tiny_m1):
    from terse.textcomp.compressor import is_crlf_text

    assert is_crlf_text(b"a\r\nb\r\n") and not is_crlf_text(b"a\r\nb\n") and not is_crlf_text(b"a\rb\r\n")
    lf = b"a line of text\n" * 100
    crlf = lf.replace(b"\n", b"\r\n")
    one_frame = PARAMS.replace(frame_bytes=1 << 20)
    # identical payloads; only the frame header's "eol" entry differs
    assert 0 < len(compress(crlf, tiny_m1, one_frame)) - len(compress(lf, tiny_m1, one_frame)) < 20


def test_incompressible_frames_are_stored(tiny_m1):
    data = os.urandom(3000) + b"\r\n"
    blob = compress(data, tiny_m1, PARAMS.replace(allow_stored=True))
    # payload bytes == input bytes; the rest is the header (full coder dict) + 5 chunk headers
    assert len(blob) - len(data) < 600 and len(blob) < len(compress(data, tiny_m1, PARAMS))
    assert decompress(blob, tiny_m1) == data
    damaged = bytearray(blob)
    damaged[-10] ^= 4
    with pytest.raises(FormatError):
        decompress(bytes(damaged), tiny_m1)


def test_compressing_twice_gives_identical_bytes(tiny_m1):
    data = b"the quick brown fox jumps over the lazy dog " * 40
    assert compress(data, tiny_m1, PARAMS) == compress(data, tiny_m1, PARAMS)


def test_default_params_and_model_lookup_by_path(tiny_m1_dir):
    data = b"hello world, " * 300
    blob = compress(data, tiny_m1_dir, CoderParams(threads=1, compute="fp32"))
    assert decompress(blob, tiny_m1_dir) == data


def test_streaming_matches_in_memory(tiny_m1):
    data = os.urandom(1800)
    out = io.BytesIO()
    assert compress_stream(io.BytesIO(data), out, tiny_m1, PARAMS) == len(data)
    assert out.getvalue() == compress(data, tiny_m1, PARAMS)
    restored = io.BytesIO()
    assert decompress_stream(io.BytesIO(out.getvalue()), restored, tiny_m1) == len(data)
    assert restored.getvalue() == data


def test_segments_cover_input():
    for length in (1, 7, 100, 4097):
        for lanes in (1, 3, 8):
            if lanes <= length:
                lengths = segment_lengths(length, lanes)
                assert lengths.sum() == length and lengths.max() - lengths.min() <= 1


def test_corruption_is_detected(tiny_m1):
    data = b"Some text to protect against corruption. " * 30
    blob = compress(data, tiny_m1, PARAMS)
    assert_bit_flips_rejected(blob, lambda b: decompress(b, tiny_m1), count=40, seed=0)
    for cut in (0, 3, 10, len(blob) // 2, len(blob) - 1):
        with pytest.raises(FormatError):
            decompress(blob[:cut], tiny_m1)
    with pytest.raises(FormatError, match="wrong magic"):
        decompress(os.urandom(200), tiny_m1)


def test_file_from_a_different_model_is_refused(tiny_m1, tmp_path):
    other = make_tiny_m1(tmp_path / "other", seed=1)
    blob = compress(b"abc" * 50, tiny_m1, PARAMS)
    with pytest.raises(ModelMismatchError, match="pass the original model"):
        decompress(blob, other)
    with pytest.raises(ModelMismatchError, match="not available"):
        decompress(blob)  # the tiny model is not a shipped one


def test_float_files_of_format_1_decode_or_fail_clearly(tmp_path):
    """A float-network file (format 1, made on another machine) decodes where the float
    kernels match the encoder's; elsewhere it fails the CRC check: never wrong output."""
    lm = make_tiny_m1(tmp_path / "golden-m1", seed=0)
    blob = (GOLDEN / "textcomp_tiny_fp32.trs").read_bytes()
    assert_decodes_or_fails_crc(lambda: decompress(blob, lm), (GOLDEN / "textcomp_input.txt").read_bytes())


def test_fresh_process_produces_identical_bytes(tiny_m1, tiny_m1_dir):
    """Determinism across processes: a new interpreter (fresh allocator and thread pool)
    must produce the same bitstream."""
    import subprocess
    import sys

    data = "Cross-process determinism: ünïcode and bytes \x00\x01.\n".encode() * 60
    script = ("import sys; from terse.textcomp.compressor import CoderParams, compress; "
              "sys.stdout.buffer.write(compress(sys.stdin.buffer.read(), sys.argv[1], CoderParams(compute='integer')))")
    other = subprocess.run([sys.executable, "-c", script, str(tiny_m1_dir)], input=data,
                           capture_output=True, check=True).stdout
    assert other == compress(data, tiny_m1, CoderParams(compute="integer"))
    assert decompress(other, tiny_m1) == data
