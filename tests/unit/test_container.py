import io

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
    assert container.read_header(stream, "demo") == {"format": "demo", "x": 1}
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
