"""The terse bitstream container: self-describing, checksummed, streamable.

Layout (all integers little-endian)::

    MAGIC (4 bytes "TRSE") | container version (u16)
    header:  u32 length | JSON object | u32 CRC32 of the JSON
    chunks:  u32 meta length | JSON meta | u32 CRC32 of meta
             | u64 payload length | payload | u32 CRC32 of payload
    end:     a chunk whose meta has {"end": true}

The header names the format (e.g. ``terse.textcomp``), its own format version, the
model (id + name) and the coder parameters, so ``decompress(blob)`` needs no other
argument. Every read is bounds-checked and every JSON part and payload is CRC-checked,
so wrong magic, unknown versions, truncation and bit flips become :class:`FormatError`.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, BinaryIO

from terse.core.errors import FormatError

MAGIC = b"TRSE"
CONTAINER_VERSION = 1
MAX_JSON_BYTES = 1 << 24


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise FormatError(f"truncated file: expected {n} bytes of {what}, got {len(data or b'')}")
    return data


def _write_json(stream: BinaryIO, obj: dict[str, Any]) -> None:
    raw = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    stream.write(struct.pack("<I", len(raw)) + raw + struct.pack("<I", zlib.crc32(raw)))


def _read_json(stream: BinaryIO, what: str) -> dict[str, Any]:
    (length,) = struct.unpack("<I", _read_exact(stream, 4, f"{what} length"))
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
    stream.write(MAGIC + struct.pack("<H", CONTAINER_VERSION))
    _write_json(stream, header)


def read_header(stream: BinaryIO, expected_format: str | None = None) -> dict[str, Any]:
    """Read and validate magic, container version and header (optionally its format)."""
    head = stream.read(6)
    if head is None or len(head) < 4 or head[:4] != MAGIC:
        raise FormatError("not a terse file (wrong magic bytes)")
    if len(head) < 6:
        raise FormatError("truncated file: header is incomplete")
    (version,) = struct.unpack("<H", head[4:6])
    if version != CONTAINER_VERSION:
        raise FormatError(f"unsupported terse container version {version} (this terse reads {CONTAINER_VERSION})")
    header = _read_json(stream, "header")
    if expected_format is not None and header.get("format") != expected_format:
        raise FormatError(f"this is a {header.get('format')!r} file, expected {expected_format!r}")
    return header


def write_chunk(stream: BinaryIO, meta: dict[str, Any], payload: bytes = b"") -> None:
    _write_json(stream, meta)
    stream.write(struct.pack("<Q", len(payload)) + payload + struct.pack("<I", zlib.crc32(payload)))


def read_chunk(stream: BinaryIO, max_payload: int = 1 << 34) -> tuple[dict[str, Any], bytes]:
    """Next (meta, payload); raises FormatError on truncation or checksum mismatch."""
    meta = _read_json(stream, "chunk header")
    (length,) = struct.unpack("<Q", _read_exact(stream, 8, "payload length"))
    if length > max_payload:
        raise FormatError(f"corrupted file: implausible payload length {length}")
    payload = _read_exact(stream, length, "payload")
    (crc,) = struct.unpack("<I", _read_exact(stream, 4, "payload checksum"))
    if zlib.crc32(payload) != crc:
        raise FormatError("corrupted file: payload checksum mismatch")
    return meta, payload


def write_end(stream: BinaryIO, **fields: Any) -> None:
    write_chunk(stream, {"end": True, **fields})


def expect_eof(stream: BinaryIO) -> None:
    if stream.read(1):
        raise FormatError("corrupted file: trailing data after the end marker")
