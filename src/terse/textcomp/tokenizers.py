"""Tokenizations for training LMs over (compressed) text, all with one interface.

Each tokenizer turns text into integer ids in ``[0, vocab_size)`` and back, losslessly:
``Bytes`` (UTF-8 bytes), ``SentencePiece`` (unigram, trained on a corpus), ``Gzip``
(the zlib bitstream as 8- or 16-bit tokens), ``ArithmeticCoded`` (one arithmetic code
over the whole document, driven by M1 -- "AC" -- or by a static byte unigram --
"StaticAC"), and :class:`~terse.textcomp.equal_info.EqualInfoTokenizer`. They are the
baselines of Lester et al. 2024, §3.4.

``tokenizer(texts)`` returns ``{"input_ids": [...]}``, so a tokenizer plugs into
``datasets.Dataset.map(lambda b: tokenizer(b["text"]), batched=True)``.
``save_pretrained(folder)`` / :func:`load_tokenizer` store a tokenizer as JSON (plus the
SentencePiece model or the M1 artifact it needs), with a sha256 manifest.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terse.core.artifacts import atomic_write_bytes, sha256_file
from terse.core.errors import ArtifactError, ConfigError, DataError, FormatError
from terse.entropy.arithmetic import STATE_BITS, ArithmeticDecoder, ArithmeticEncoder
from terse.entropy.quantize import cumulative, quantize_probabilities
from terse.textcomp.equal_info import EqualInfoTokenizer
from terse.textcomp.lockstep import LockstepM1
from terse.textcomp.tokenizer_base import (
    MANIFEST_FILE,
    TOKENIZER_FILE,
    TOKENIZER_KINDS,
    LenientDecoding,
    Tokenizer,
    as_bytes,
    as_compute,
    copy_m1_into,
    flops_per_byte_of,
    load_m1_from,
    to_text,
)

__all__ = ["ArithmeticTokenizer", "ByteTokenizer", "EqualInfoTokenizer", "GzipTokenizer", "LenientDecoding",
           "SentencePieceTokenizer", "Tokenizer", "load_tokenizer"]

EOS = 256  # arithmetic-coded streams end with M1's BOS symbol used as end-of-document


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """Load any tokenizer saved with ``save_pretrained`` (hashes verified)."""
    folder = Path(folder)
    config_file = folder / TOKENIZER_FILE
    if not config_file.is_file():
        raise ArtifactError(f"{folder} is not a saved tokenizer (no {TOKENIZER_FILE})")
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        for rel, digest in manifest["files"].items():
            if sha256_file(folder / rel) != digest:
                raise ArtifactError(f"{folder / rel}: sha256 does not match the tokenizer manifest")
        config = json.loads(config_file.read_text())
        kind = config.pop("kind")
        config.pop("vocab_size", None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{folder}: unreadable tokenizer ({exc})") from None
    if kind not in TOKENIZER_KINDS:
        raise ArtifactError(f"{folder}: unknown tokenizer kind {kind!r}")
    return TOKENIZER_KINDS[kind].from_folder(folder, config)


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes (ByT5-style), vocabulary 256."""

    kind = "bytes"
    vocab_size = 256

    def encode_bytes(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64)

    def decode_bytes(self, ids: np.ndarray) -> bytes:
        return ids.astype(np.uint8).tobytes()

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any]) -> ByteTokenizer:
        return cls()


def _pack_bits(stream: bytes, token_bits: int) -> np.ndarray:
    """Bytes -> 8-bit tokens, or 16-bit big-endian tokens (an odd tail padded with 0)."""
    if token_bits == 8:
        return np.frombuffer(stream, dtype=np.uint8).astype(np.int64)
    if len(stream) % 2:
        stream += b"\0"
    return np.frombuffer(stream, dtype=">u2").astype(np.int64)


def _unpack_bits(ids: np.ndarray, token_bits: int) -> bytes:
    return ids.astype(np.uint8).tobytes() if token_bits == 8 else ids.astype(">u2").tobytes()


def _check_token_bits(token_bits: int) -> int:
    if token_bits not in (8, 16):
        raise ConfigError(f"token_bits must be 8 or 16, got {token_bits}")
    return token_bits


class GzipTokenizer(Tokenizer):
    """The zlib stream (default level, header and checksum kept, as in the paper)."""

    kind = "gzip"

    def __init__(self, token_bits: int = 8):
        self.token_bits = _check_token_bits(token_bits)
        self.vocab_size = 1 << token_bits

    @property
    def name(self) -> str:
        return f"gzip_v{self.vocab_size}"

    def encode_bytes(self, data: bytes) -> np.ndarray:
        return _pack_bits(zlib.compress(data), self.token_bits)

    def decode_bytes(self, ids: np.ndarray) -> bytes:
        if ids.size == 0:
            return b""
        stream = zlib.decompressobj()
        try:
            data = stream.decompress(_unpack_bits(ids, self.token_bits))
        except zlib.error as exc:
            raise FormatError(f"not a valid gzip token stream ({exc})") from None
        if not stream.eof:
            raise FormatError("gzip token stream is truncated")
        return data

    def config_dict(self) -> dict[str, Any]:
        return {"token_bits": self.token_bits}

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any]) -> GzipTokenizer:
        return cls(**config)


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece unigram model, configured to be lossless (identity normalization,
    no dummy prefix, whitespace kept, byte fallback for unseen characters)."""

    kind = "sentencepiece"
    MODEL_FILE = "spm.model"

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = model_proto
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab_size = self.processor.get_piece_size()

    @property
    def name(self) -> str:
        return f"sentencepiece_v{self.vocab_size}"

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int = 8192, max_sentences: int = 300_000,
              seed: int = 0) -> SentencePieceTokenizer:
        """Train a unigram model on lines of ``texts``."""
        import io

        import sentencepiece as spm

        lines = [line for text in texts for line in text.split("\n") if line]
        if not lines:
            raise DataError("no text to train SentencePiece on")
        rng = np.random.default_rng(seed)
        if len(lines) > max_sentences:
            lines = [lines[i] for i in sorted(rng.choice(len(lines), max_sentences, replace=False))]
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buffer, model_type="unigram", vocab_size=vocab_size,
            normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
            byte_fallback=True, character_coverage=0.9995, split_digits=True, allow_whitespace_only_pieces=True,
            user_defined_symbols=["\n"], unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, minloglevel=2,
            num_threads=1, hard_vocab_limit=False)
        return cls(buffer.getvalue())

    SPACE_MARKER = "\u2581"  # SentencePiece's own whitespace symbol: input copies go as byte pieces

    def _encode_text(self, text: str) -> np.ndarray:
        parts = text.split(self.SPACE_MARKER)
        marker = [self.processor.piece_to_id(f"<0x{b:02X}>") for b in self.SPACE_MARKER.encode()]
        ids: list[int] = []
        for i, piece in enumerate(self.processor.encode(parts)):
            if i:
                ids.extend(marker)
            ids.extend(piece)
        return np.asarray(ids, dtype=np.int64)

    def encode_bytes(self, data: bytes) -> np.ndarray:
        return self._encode_text(to_text(data))

    def encode_batch(self, texts: Sequence[str | bytes]) -> list[np.ndarray]:
        return [self._encode_text(to_text(as_bytes(t))) for t in texts]

    def decode_bytes(self, ids: np.ndarray) -> bytes:
        return self.processor.decode(ids.tolist()).encode("utf-8", errors="surrogatepass")

    def _save_files(self, folder: Path) -> None:
        atomic_write_bytes(folder / self.MODEL_FILE, self.model_proto)

    def _fingerprint_extra(self) -> bytes:
        return self.model_proto

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any]) -> SentencePieceTokenizer:
        return cls((folder / cls.MODEL_FILE).read_bytes())


class ArithmeticTokenizer(Tokenizer):
    """One arithmetic code per document, ended by an end-of-document symbol.

    With ``m1`` (a byte LM) this is the paper's "AC": M1 predicts each byte from the
    document so far (its sliding window). Without, it is "StaticAC": a fixed byte
    unigram (``unigram``: 256 counts). Bits are cut into 8- or 16-bit tokens.
    """

    kind = "arithmetic"
    PRECISION = 16

    def __init__(self, token_bits: int = 8, m1=None, unigram: Sequence[float] | None = None,
                 compute: str = "integer"):
        self.token_bits = _check_token_bits(token_bits)
        self.vocab_size = 1 << token_bits
        if (m1 is None) == (unigram is None):
            raise ConfigError("give exactly one of m1 (AC) or unigram (StaticAC)")
        self.compute = compute
        self.m1 = as_compute(m1, compute) if m1 is not None else None
        if unigram is not None:
            counts = np.asarray(unigram, dtype=np.float64)
            if counts.shape != (256,) or np.any(counts < 0):
                raise ConfigError("unigram must be 256 non-negative counts")
            self.unigram = counts
            probs = np.append(counts / max(counts.sum(), 1.0), 0.0)  # EOS gets the minimum frequency
            self._static_cdf = cumulative(quantize_probabilities(probs, self.PRECISION))
        else:
            self.unigram = None
            self.m1_flops_per_byte = flops_per_byte_of(self.m1)

    @property
    def name(self) -> str:
        return f"{'ac' if self.m1 is not None else 'static_ac'}_v{self.vocab_size}"

    @classmethod
    def static_from_corpus(cls, data: bytes, token_bits: int = 8) -> ArithmeticTokenizer:
        counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256).astype(np.float64)
        return cls(token_bits, unigram=counts + 1.0)

    def _cdf_table(self, stepper, tokens: np.ndarray) -> np.ndarray:
        """(rows, 258) cumulative frequencies of the next symbol (256 bytes + end) per row."""
        if stepper is None:
            return np.broadcast_to(self._static_cdf, (len(tokens), len(self._static_cdf)))
        return cumulative(stepper.step(tokens))

    def _stepper(self, rows: int):
        if self.m1 is None:
            return None
        window = self.m1.model.gpt.window if self.m1.exact else self.m1.model.config.window
        return LockstepM1(self.m1, rows, window, self.PRECISION, symbols=257, compute=self.compute)

    @torch.no_grad()
    def encode_batch(self, texts: Sequence[str | bytes]) -> list[np.ndarray]:
        """All documents advance in lock-step, one byte per M1 step."""
        docs = [as_bytes(t) for t in texts]
        lengths = np.array([len(d) + 1 for d in docs], dtype=np.int64)  # + the end symbol
        symbols = np.full((len(docs), int(lengths.max(initial=0))), EOS, dtype=np.int64)
        for row, doc in enumerate(docs):
            symbols[row, : len(doc)] = np.frombuffer(doc, dtype=np.uint8)
        encoders = [ArithmeticEncoder() for _ in docs]
        stepper = self._stepper(len(docs))
        total = 1 << self.PRECISION
        tokens = np.full(len(docs), EOS, dtype=np.int64)  # BOS first
        for j in range(symbols.shape[1]):
            cdf = self._cdf_table(stepper, tokens)
            rows = np.flatnonzero(lengths > j)
            coded = symbols[rows, j]
            lows, highs = cdf[rows, coded].tolist(), cdf[rows, coded + 1].tolist()
            for row, low, high in zip(rows.tolist(), lows, highs, strict=True):
                encoders[row].encode(low, high - low, total)
            tokens = symbols[:, j]  # rows past their end feed EOS; their outputs are unused
        out = []
        for encoder in encoders:
            bits = encoder.finish()
            bits += [0] * (-len(bits) % self.token_bits)
            packed = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()
            out.append(_pack_bits(packed, self.token_bits))
        return out

    def encode_bytes(self, data: bytes) -> np.ndarray:
        return self.encode_batch([data])[0]

    @torch.no_grad()
    def decode_batch_bytes(self, streams: Sequence[np.ndarray], max_bytes: int) -> list[bytes | None]:
        """Decode documents in lock-step; None where no end-of-document came within ``max_bytes``."""
        decoders = []
        for ids in streams:
            bits = np.unpackbits(np.frombuffer(_unpack_bits(ids, self.token_bits), dtype=np.uint8)).tolist()
            decoders.append(ArithmeticDecoder(bits))
        stepper = self._stepper(len(streams))
        tokens = np.full(len(streams), EOS, dtype=np.int64)
        out: list[bytearray] = [bytearray() for _ in streams]
        done = [False] * len(streams)
        for _ in range(max_bytes + 1):
            if all(done):
                break
            cdf = self._cdf_table(stepper, tokens)
            for row, decoder in enumerate(decoders):
                if done[row]:
                    continue
                symbol = decoder.decode(cdf[row].tolist())
                if symbol == EOS:
                    done[row] = True
                else:
                    out[row].append(symbol)
                    tokens[row] = symbol
        return [bytes(b) if d else None for b, d in zip(out, done, strict=True)]

    def max_decodable_bytes(self, num_tokens: int) -> int:
        """Most bytes ``num_tokens`` tokens can code: every symbol has frequency at most
        2**P - 256, so it narrows the interval by >= log2(2**P / (2**P - 256)) bits; the
        decoder reads at most ``STATE_BITS`` bits past the end."""
        per_symbol = math.log2((1 << self.PRECISION) / ((1 << self.PRECISION) - 256))
        return math.ceil((num_tokens * self.token_bits + STATE_BITS + 2) / per_symbol)

    def decode_lenient(self, ids) -> LenientDecoding:
        ids = self.check_ids(ids)
        if ids.size == 0:
            return LenientDecoding("", 0, 0)
        # generated streams need not end a document: stop at a practical length
        (data,) = self.decode_batch_bytes([ids], max_bytes=4 * len(ids) * self.token_bits)
        if data is None:
            return LenientDecoding("\ufffd", 1, 0)
        return LenientDecoding(data.decode("utf-8", errors="replace"), 0, len(data))

    def decode_bytes(self, ids: np.ndarray) -> bytes:
        if ids.size == 0:
            return b""
        (data,) = self.decode_batch_bytes([ids], max_bytes=self.max_decodable_bytes(len(ids)))
        if data is None:
            raise FormatError("arithmetic-coded tokens do not end a document (truncated or foreign ids)")
        return data

    def config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"token_bits": self.token_bits}
        if self.unigram is not None:
            config["unigram"] = self.unigram.tolist()
        else:
            config["m1_id"] = self.m1.model_id
            config["compute"] = self.compute
        return config

    def _save_files(self, folder: Path) -> None:
        if self.m1 is not None:
            copy_m1_into(self.m1, folder)

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any]) -> ArithmeticTokenizer:
        if "unigram" in config:
            return cls(config["token_bits"], unigram=config["unigram"])
        compute = config.get("compute", "bf16")  # tokenizers saved before the integer M1
        return cls(config["token_bits"], m1=load_m1_from(folder, config["m1_id"], exact=compute == "integer"),
                   compute=compute)


