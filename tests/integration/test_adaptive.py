"""Adaptive (context-mixing) coding: exact round trips through every component, the
decoder rebuilding the adaptive state identically, levels, format versions."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import assert_bit_flips_rejected, assert_decodes_or_fails_crc, make_tiny_m1

from terse.core.errors import ConfigError, FormatError
from terse.textcomp.compressor import LEVELS, CoderParams, compress, decompress
from terse.textcomp.context_mixing import COMPONENTS, MIXER_VERSIONS

MIX = CoderParams(mixing=True, max_lanes=8, min_segment_bytes=16, frame_bytes=900, compute="integer",
                  allow_stored=False, mixer=2)
GOLDEN = Path(__file__).resolve().parents[1] / "golden"

RNG = np.random.default_rng(0)
WORDS = [b"alpha", b"beta", b"gamma", b"delta", b"Epsilon", b"zeta", b"eta", b"theta", b"\xc3\xa9t\xc3\xa9"]
TEXT = b" ".join(WORDS[i] for i in RNG.integers(0, len(WORDS), 500))  # word model, orders
BLOCK = RNG.integers(32, 127, 400, dtype=np.uint8).tobytes()
REPEATS = BLOCK + b"|" + BLOCK + b"|" + BLOCK[::-1] + BLOCK  # match model within and across lanes
CASES = [b"", b"a", b"\x00" * 300, bytes(range(256)) * 3, TEXT, REPEATS,
         RNG.integers(0, 256, 1500, dtype=np.uint8).tobytes(),
         b"windows line one\r\nline two\r\n" * 30]


@pytest.mark.parametrize("data", CASES)
@pytest.mark.parametrize("with_model", [True, False], ids=["m1+cm", "cm-only"])
@pytest.mark.parametrize("mixer", MIXER_VERSIONS)
def test_round_trip(tiny_m1, data, with_model, mixer):
    params = MIX.replace(mixer=mixer)
    blob = compress(data, tiny_m1, params) if with_model else compress(data, params=params, neural=False)
    assert decompress(blob, tiny_m1 if with_model else None) == data


def test_mixer_2_pays_off_on_structured_text():
    """Mixer 2's record, indirect and word-skip contexts and its final mixer: smaller on
    text with records and repeated phrases (context mixing alone, so no network noise)."""
    records = b"".join(b"%A " + WORDS[i % 9] + b" " + WORDS[(i * 7) % 9] + b"\n%T " + WORDS[(i * 5) % 9]
                       + b" of the " + WORDS[(i * 3) % 9] + b"\n" for i in range(300))
    one_lane = MIX.replace(frame_bytes=1 << 16)
    sizes = {m: len(compress(records, params=one_lane.replace(mixer=m), neural=False)) for m in MIXER_VERSIONS}
    assert sizes[2] < sizes[1]
    assert sizes[3] < sizes[2]  # mixer 3's warm-up: the weights reach the file sooner


def test_levels_use_mixer_4_and_level_4_keeps_mixer_2():
    from terse.textcomp.compressor import CODER_PRESETS, EXACT_MIXING, EXACT_TOKEN_LM

    assert all(LEVELS[level].params == EXACT_MIXING for level in (1, 2, 3)) and EXACT_MIXING.mixer == 4
    assert CODER_PRESETS["exact-mixing-3"].mixer == 3 and CODER_PRESETS["exact-mixing-3"].mixer_rate == 8
    assert EXACT_TOKEN_LM.mixer == 2 and CODER_PRESETS["exact-mixing-2"].mixer == 2


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_every_component_switched_off_still_round_trips(tiny_m1, component):
    params = MIX.replace(disable=component)
    data = TEXT[:1200] + REPEATS[:800]
    assert decompress(compress(data, tiny_m1, params), tiny_m1) == data


def test_adaptation_pays_off(tiny_m1):
    """The adaptive models learn what the (random) network cannot: repeats cost little,
    and each component measurably helps on data made for it."""
    one_frame = MIX.replace(frame_bytes=1 << 16)
    static = len(compress(REPEATS * 2, tiny_m1, one_frame.replace(mixing=False)))
    adaptive = len(compress(REPEATS * 2, tiny_m1, one_frame))
    without_match = len(compress(REPEATS * 2, tiny_m1, one_frame.replace(disable="match")))
    assert adaptive < 0.5 * static
    assert adaptive < without_match


def test_match_model_follows_other_lanes():
    """Lanes 4..7 repeat lanes 0..3 exactly: the match model must find the other lanes'
    bytes coded at the same step, so the second half costs almost nothing."""
    half = RNG.integers(32, 127, 2000, dtype=np.uint8).tobytes()
    params = MIX.replace(frame_bytes=1 << 16, min_segment_bytes=500)
    with_match = len(compress(half + half, params=params.replace(max_lanes=8), neural=False))
    alone = len(compress(half, params=params.replace(max_lanes=4), neural=False))
    assert with_match < alone * 1.15
    assert decompress(compress(half + half, params=params, neural=False)) == half + half


def test_decoder_in_a_fresh_process_rebuilds_the_state(tiny_m1_dir):
    data = TEXT[:1500] + REPEATS
    script = ("import sys; from terse.textcomp.compressor import decompress; "
              "sys.stdout.buffer.write(decompress(sys.stdin.buffer.read(), sys.argv[1] if len(sys.argv) > 1 else None))")
    for blob, args in ((compress(data, str(tiny_m1_dir), MIX), [str(tiny_m1_dir)]),
                       (compress(data, params=MIX, neural=False), [])):
        out = subprocess.run([sys.executable, "-c", script, *args], input=blob, capture_output=True, check=True)
        assert out.stdout == data


def test_golden_bitstream_of_context_mixing_alone():
    """Regenerate with TERSE_REGEN_GOLDEN=1 after an intended format change. Context mixing
    alone is integer arithmetic end to end, so it must match on every machine."""
    data = (GOLDEN / "textcomp_input.txt").read_bytes()
    # format 2 coder parameters (the first mixing release), in the current container
    params = MIX.replace(mixer=1, compute="fp32", threads=1, max_lanes=4, min_segment_bytes=64, frame_bytes=1024)
    blob = compress(data, params=params, neural=False)
    golden = GOLDEN / "textcomp_cm_only.trs"
    if os.environ.get("TERSE_REGEN_GOLDEN") == "1":
        golden.write_bytes(blob)
    assert blob == golden.read_bytes()
    assert decompress(golden.read_bytes()) == data
    # the same file as the first mixing release wrote it (container version 1: JSON headers)
    assert decompress((GOLDEN / "textcomp_cm_only_container1.trs").read_bytes()) == data


def test_float_mixing_files_of_format_2_decode_or_fail_clearly(tmp_path):
    """A float-network file made on another machine: decodes where the float kernels
    match, otherwise fails its CRC (never wrong output)."""
    model = make_tiny_m1(tmp_path / "golden-m1", seed=0)
    blob = (GOLDEN / "textcomp_mix_tiny_fp32.trs").read_bytes()
    assert_decodes_or_fails_crc(lambda: decompress(blob, model), (GOLDEN / "textcomp_input.txt").read_bytes())


def test_frames_the_network_hurts_fall_back_to_context_mixing_alone(tiny_m1):
    """The random tiny M1 only adds noise: with ``fallback`` every frame is coded without
    it, so the file is no larger than context mixing alone (but for the header's model
    name and id), and it decodes."""
    data = REPEATS * 3
    alone = compress(data, params=MIX, neural=False)
    mixed = compress(data, tiny_m1, MIX)
    chosen = compress(data, tiny_m1, MIX.replace(fallback=True))
    frames = -(-len(data) // MIX.frame_bytes)
    assert len(chosen) <= len(alone) + 32 + 12 * frames < len(mixed)  # + model name/id, "alone" flags
    assert decompress(chosen, tiny_m1) == data


def test_version_1_files_decode_or_fail_clearly(tmp_path):
    """A file written by the first release (float M1, format version 1) decodes where the
    float kernels match the encoder's, and elsewhere fails its CRC: never wrong output."""
    lm = make_tiny_m1(tmp_path / "golden-m1", seed=0)
    legacy = (GOLDEN / "textcomp_legacy_v1.trs").read_bytes()
    assert_decodes_or_fails_crc(lambda: decompress(legacy, lm), (GOLDEN / "textcomp_input.txt").read_bytes())


def _with_header(blob: bytes, edit) -> bytes:
    import io
    import json

    from terse.core import container

    src = io.BytesIO(blob)
    header = container.read_header(src, "textcomp")
    out = io.BytesIO()
    container.write_header(out, edit(json.loads(json.dumps(header))))
    return out.getvalue() + src.read()


def test_bad_headers_are_clear_errors():
    blob = compress(TEXT[:300], params=MIX, neural=False)
    with pytest.raises(FormatError, match="newer terse"):
        decompress(_with_header(blob, lambda h: {**h, "version": 5}))
    with pytest.raises(FormatError, match="version 1"):
        decompress(_with_header(blob, lambda h: {**h, "version": 1}))
    with pytest.raises(FormatError, match="coder parameters"):
        decompress(_with_header(blob, lambda h: {**h, "coder": {**h["coder"], "disable": "nonsense"}}))


def test_corruption_is_detected():
    blob = compress(TEXT, params=MIX, neural=False)
    assert_bit_flips_rejected(blob, decompress, count=30, seed=1)


def test_levels(tiny_m1):
    assert set(LEVELS) == {0, 1, 2, 3, 4}
    data = TEXT[:500]
    assert decompress(compress(data, level=1)) == data  # no network needed
    one_thread = LEVELS[2].params.replace(threads=1)  # the level's model overridden, and its threads
    assert decompress(compress(data, tiny_m1, one_thread, level=2), tiny_m1) == data
    with pytest.raises(ConfigError, match="unknown level"):
        compress(data, level=9)
    with pytest.raises(ConfigError, match="needs context mixing"):
        compress(data, level=0, neural=False)
    with pytest.raises(ConfigError, match="neural=False"):
        compress(data, tiny_m1, level=2, neural=False)
    with pytest.raises(ConfigError, match="unknown component"):
        CoderParams(disable="lm,bogus")


def test_x86_transform_round_trips_and_pays_off_on_machine_code():
    """Frames that look like x86 code are coded with absolute branch targets; any bytes
    come back exactly (the inverse scans the same positions), and calls to the same
    functions from many places get cheaper."""
    from terse.textcomp.x86 import decode_x86, encode_x86, looks_like_x86

    rng = np.random.default_rng(3)
    targets = rng.integers(0, 4096, 8)
    code = bytearray()
    for _ in range(2000):  # call one of 8 functions, then a few random instruction bytes
        here = len(code)
        code += bytes([0xE8]) + int((targets[rng.integers(0, 8)] - here - 5) % (1 << 32)).to_bytes(4, "little")
        code += rng.integers(0, 256, int(rng.integers(1, 6)), dtype=np.uint8).tobytes()
    code = bytes(code)
    assert looks_like_x86(code) and not looks_like_x86(TEXT) and not looks_like_x86(b"\xe8\x00\x00\x00\x00" * 3)
    for data in (code, bytes(range(256)) * 40, b"\xe8" * 9, b"\xe9\xff\xff\xff\xff\xe8", b""):
        assert decode_x86(encode_x86(data)) == data
    one_lane = MIX.replace(frame_bytes=1 << 16)
    with_transform = compress(code, params=one_lane.replace(x86_transform=True), neural=False)
    assert decompress(with_transform) == code
    assert len(with_transform) < 0.95 * len(compress(code, params=one_lane, neural=False))


def test_an_unknown_frame_transform_is_a_format_error():
    from terse.textcomp.compressor import _restore_frame

    with pytest.raises(FormatError, match="x86 transform"):
        _restore_frame(b"abc", {"x86": 2, "crc": 0})
