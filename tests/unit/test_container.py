import io
import json
import struct
import zlib

import pytest

from terse.core import container
from terse.core.errors import FormatError


def _sample() -> bytes:
    out = io.BytesIO()
    container.write_header(out, {"format": "demo", "x": 1})
    container.write_chunk(out, {"n": 3}, b"abc")
    container.write_chunk(out, {"n": 2, "end": 1}, b"de")
    return out.getvalue()


def test_round_trip():
    stream = io.BytesIO(_sample())
    assert container.read_header(stream, "demo") == {"format": "demo", "x": 1, "container": 2}
    assert container.read_chunk(stream) == ({"n": 3}, b"abc")
    assert container.read_chunk(stream) == ({"n": 2, "end": 1}, b"de")
    container.expect_eof(stream)


def test_varints():
    for value in (0, 1, 127, 128, 300, 2**35):
        assert container.read_varint(io.BytesIO(container.encode_varint(value)), "v") == value


@pytest.mark.parametrize("blob, message", [
    (b"", "wrong magic"),
    (b"NOPE" + b"\x00" * 20, "wrong magic"),
    (b"TRSE\x63" + b"\x00" * 8, "unsupported terse container version 99"),
    (b"TRSE", "truncated"),
])
def test_header_errors(blob, message):
    with pytest.raises(FormatError, match=message):
        container.read_header(io.BytesIO(blob))


def test_wrong_format_is_reported():
    with pytest.raises(FormatError, match="expected 'other'"):
        container.read_header(io.BytesIO(_sample()), "other")


def test_every_truncation_and_bit_flip_is_detected():
    blob = _sample()

    def parse(data):
        stream = io.BytesIO(data)
        container.read_header(stream, "demo")
        while not container.read_chunk(stream)[0].get("end"):
            pass
        container.expect_eof(stream)

    for cut in range(len(blob)):
        with pytest.raises(FormatError):
            parse(blob[:cut])
    for i in range(len(blob)):
        for bit in (0, 3, 7):
            flipped = bytearray(blob)
            flipped[i] ^= 1 << bit
            try:
                parse(bytes(flipped))
            except FormatError:
                continue
            raise AssertionError(f"flip of bit {bit} in byte {i} went undetected")
    with pytest.raises(FormatError, match="trailing"):
        parse(blob + b"x")


OBJECTS = [None, True, False, 0, 1, 127, 128, -1, -(2**40), 2**63, 0.5, -1e300, "", "plain", "ünï", "00ff",
           "abc", "ABCD", "textcomp", [], [1, [2, None]], {}, {"b": 1, "a": [True, "x"], "nested": {"k": "m1-default"}}]


@pytest.mark.parametrize("value", OBJECTS)
def test_compact_objects_round_trip_exactly(value):
    raw = container.encode_object(value)
    back = container.decode_object(raw)
    assert back == value and type(back) is type(value) or (isinstance(value, tuple) and back == list(value))


def test_compact_objects_are_canonical_and_small():
    assert container.encode_object({"a": 1, "b": 2}) == container.encode_object({"b": 2, "a": 1})
    header = {"coder": "exact-mixing-2", "format": "textcomp", "id": "456f3ffc1dfcd55b", "model": "m1-default",
              "version": 3}
    assert len(container.encode_object(header)) <= 22 < len(json.dumps(header)) // 4
    assert len(container.encode_object({"crc": 3092704232, "end": 1, "n": 111261, "bytes": 20560})) <= 24


@pytest.mark.parametrize("raw", [b"", b"\x0a", b"\x09\x01\x03\x01\x00", b"\x06\x05ab", b"\x03\xff", b"\x7f",
                                 b"\x09\x02\x80\x00\x80\x00", b"\x00\x00", b"\x08" + b"\x01\x08" * 40])
def test_malformed_compact_objects_are_format_errors(raw):
    with pytest.raises(FormatError):
        container.decode_object(raw)


def test_files_of_container_version_1_still_read():
    """JSON header and metas, a CRC each for meta and payload (the layout before 2026-12)."""
    def part(obj):
        raw = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        return container.encode_varint(len(raw)) + raw + struct.pack("<I", zlib.crc32(raw))

    blob = (b"TRSE\x01" + part({"format": "demo", "x": 1}) + part({"n": 3, "end": 1, "bytes": 3}) + b"abc"
            + struct.pack("<I", zlib.crc32(b"abc")))
    stream = io.BytesIO(blob)
    header = container.read_header(stream, "demo")
    assert header == {"format": "demo", "x": 1, "container": 1}
    assert container.read_chunk(stream, header["container"]) == ({"n": 3, "end": 1}, b"abc")
    container.expect_eof(stream)
