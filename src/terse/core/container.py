"""The terse bitstream container: self-describing, checksummed, streamable, compact.

Layout::

    MAGIC "TRSE" | container version (1 byte)
    header:  varint length | JSON object | CRC32 of the JSON (u32 LE)
    chunks:  varint length | JSON meta (holds "bytes": payload length) | CRC32 of meta
             | payload | CRC32 of payload
    The last chunk's meta has "end": 1.

The header names the format and its version, the model (name + id) and the coder
parameters, so ``decompress(blob)`` needs no other argument. Every length is checked
before use and every JSON part and payload is CRC-checked, so wrong magic, unknown
versions, truncation and bit flips become :class:`FormatError`, never a crash or a hang.
Overhead is about 100 bytes per file plus ~50 per chunk.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, BinaryIO

from terse.core.errors import FormatError

MAGIC = b"TRSE"
CONTAINER_VERSION = 1
MAX_JSON_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 34


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    data = stream.read(n) if n else b""
    if data is None or len(data) != n:
        raise FormatError(f"truncated file: expected {n} bytes of {what}, got {len(data or b'')}")
    return data


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(stream: BinaryIO, what: str) -> int:
    value = 0
    for shift in range(0, 64, 7):
        byte = _read_exact(stream, 1, what)[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise FormatError(f"corrupted file: {what} is not a valid varint")


def _write_json(stream: BinaryIO, obj: dict[str, Any]) -> None:
    raw = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    stream.write(encode_varint(len(raw)) + raw + struct.pack("<I", zlib.crc32(raw)))


def _read_json(stream: BinaryIO, what: str) -> dict[str, Any]:
    length = read_varint(stream, f"{what} length")
    if length > MAX_JSON_BYTES:
        raise FormatError(f"corrupted file: implausible {what} length {length}")
    raw = _read_exact(stream, length, what)
    (crc,) = struct.unpack("<I", _read_exact(stream, 4, f"{what} checksum"))
    if zlib.crc32(raw) != crc:
        raise FormatError(f"corrupted file: {what} checksum mismatch")
    try:
        obj = json.loads(raw)
    except ValueError:
        raise FormatError(f"corrupted file: {what} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise FormatError(f"corrupted file: {what} is not a JSON object")
    return obj


def write_header(stream: BinaryIO, header: dict[str, Any]) -> None:
    stream.write(MAGIC + bytes([CONTAINER_VERSION]))
    _write_json(stream, header)


def read_header(stream: BinaryIO, expected_format: str | None = None) -> dict[str, Any]:
    """Read and validate magic, container version and header (optionally its format)."""
    head = stream.read(5)
    if head is None or len(head) < 4 or head[:4] != MAGIC:
        raise FormatError("not a terse file (wrong magic bytes)")
    if len(head) < 5:
        raise FormatError("truncated file: header is incomplete")
    if head[4] != CONTAINER_VERSION:
        raise FormatError(f"unsupported terse container version {head[4]} (this terse reads {CONTAINER_VERSION})")
    header = _read_json(stream, "header")
    if expected_format is not None and header.get("format") != expected_format:
        raise FormatError(f"this is a {header.get('format')!r} file, expected {expected_format!r}")
    return header


def write_chunk(stream: BinaryIO, meta: dict[str, Any], payload: bytes = b"") -> None:
    _write_json(stream, {**meta, "bytes": len(payload)})
    stream.write(payload + struct.pack("<I", zlib.crc32(payload)))


def read_chunk(stream: BinaryIO, max_payload: int = MAX_PAYLOAD_BYTES) -> tuple[dict[str, Any], bytes]:
    """Next (meta, payload); raises FormatError on truncation or checksum mismatch."""
    meta = _read_json(stream, "chunk header")
    length = meta.pop("bytes", None)
    if not isinstance(length, int) or not 0 <= length <= max_payload:
        raise FormatError("corrupted file: invalid payload length")
    payload = _read_exact(stream, length, "payload")
    (crc,) = struct.unpack("<I", _read_exact(stream, 4, "payload checksum"))
    if zlib.crc32(payload) != crc:
        raise FormatError("corrupted file: payload checksum mismatch")
    return meta, payload


def expect_eof(stream: BinaryIO) -> None:
    if stream.read(1):
        raise FormatError("corrupted file: trailing data after the end marker")
