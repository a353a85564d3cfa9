"""What every tokenizer shares: the :class:`Tokenizer` interface, the registry of saved
kinds, id checks, and the M1 helpers of the tokenizers that code with a byte LM.

The tokenizers themselves are in :mod:`terse.textcomp.tokenizers` (baselines and
:func:`~terse.textcomp.tokenizers.load_tokenizer`) and :mod:`terse.textcomp.equal_info`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from terse.core.artifacts import atomic_write_bytes, sha256_file
from terse.core.errors import ArtifactError, ConfigError, FormatError
from terse.textcomp.model import ByteLM, load_byte_lm, load_integer_lm

TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "tokenizer_manifest.json"
M1_FOLDER = "m1"


def as_bytes(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("utf-8", errors="surrogatepass")
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def to_text(data: bytes, errors: str = "strict") -> str:
    try:
        return data.decode("utf-8", errors="surrogatepass" if errors == "strict" else errors)
    except UnicodeDecodeError as exc:
        raise FormatError(f"decoded bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def check_token_ids(ids, vocab_size: int, name: str) -> np.ndarray:
    """Token ids as a flat int64 array, or a clear :class:`FormatError`."""
    array = np.asarray(ids)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise FormatError("token ids must be a flat sequence of integers")
    bad = np.flatnonzero((array < 0) | (array >= vocab_size))
    if bad.size:
        raise FormatError(f"token id {int(array[bad[0]])} at position {int(bad[0])} is out of range for "
                          f"{name} (vocabulary {vocab_size})")
    return array.astype(np.int64)


@dataclass
class LenientDecoding:
    text: str  # undecodable units shown as U+FFFD
    invalid_units: int
    decoded_bytes: int  # bytes that did decode (replacement characters not counted)


TOKENIZER_KINDS: dict[str, type[Tokenizer]] = {}  # kind -> class, filled as subclasses are defined


class Tokenizer:
    """Base class: subclasses implement ``encode_bytes``/``decode_bytes`` and config I/O.

    A subclass with a ``kind`` registers itself in :data:`TOKENIZER_KINDS`, which
    ``load_tokenizer`` reads saved folders with (``from_folder``).
    """

    kind: ClassVar[str]
    vocab_size: int

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:
            return
        taken = TOKENIZER_KINDS.get(kind)
        if taken is not None and taken.__qualname__ != cls.__qualname__:  # the same class reloaded is fine
            raise TypeError(f"tokenizer kind {kind!r} is already taken by {taken.__qualname__}")
        TOKENIZER_KINDS[kind] = cls

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any]) -> Tokenizer:
        """The tokenizer saved in ``folder``, given its tokenizer.json (``kind`` removed)."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.kind

    # Cost of producing the tokens, counted in M2's FLOPs/byte (M1's forward: 2 x params).
    m1_flops_per_byte: float = 0.0

    def encode_bytes(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def decode_bytes(self, ids: np.ndarray) -> bytes:
        raise NotImplementedError

    def encode(self, text: str | bytes) -> np.ndarray:
        """Text (or raw bytes) -> int64 token ids."""
        return self.encode_bytes(as_bytes(text))

    def encode_batch(self, texts: Sequence[str | bytes]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        """Token ids -> text; a clear :class:`FormatError` for ids this tokenizer cannot have made."""
        return to_text(self.decode_bytes(self.check_ids(ids)))

    def check_ids(self, ids) -> np.ndarray:
        return check_token_ids(ids, self.vocab_size, self.name)

    def decode_lenient(self, ids) -> LenientDecoding:
        """Best-effort decoding of generated ids (which need not be valid).

        Undecodable parts become U+FFFD; subclasses refine what a "unit" is (a window for
        Equal-Info, the whole stream otherwise).
        """
        try:
            data = self.decode_bytes(self.check_ids(ids))
        except FormatError:
            return LenientDecoding("\ufffd", 1, 0)
        return LenientDecoding(data.decode("utf-8", errors="replace"), 0, len(data))

    def __call__(self, texts: str | Sequence[str]) -> dict[str, Any]:
        if isinstance(texts, (str, bytes)):
            return {"input_ids": self.encode(texts).tolist()}
        return {"input_ids": [ids.tolist() for ids in self.encode_batch(texts)]}

    # --- persistence -----------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {}

    def fingerprint(self) -> str:
        """sha256 of everything that decides the token ids (kind and config, M1 id included)."""
        payload = json.dumps({"kind": self.kind, **self.config_dict()}, sort_keys=True).encode()
        return hashlib.sha256(payload + self._fingerprint_extra()).hexdigest()

    def _fingerprint_extra(self) -> bytes:
        return b""

    def _save_files(self, folder: Path) -> None:
        """Extra files next to tokenizer.json (SentencePiece model, M1 artifact)."""

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_files(folder)
        payload = {"kind": self.kind, "vocab_size": self.vocab_size, **self.config_dict()}
        atomic_write_bytes(folder / TOKENIZER_FILE, json.dumps(payload, indent=2).encode())
        files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.name != MANIFEST_FILE and not p.name.startswith(".")}
        atomic_write_bytes(folder / MANIFEST_FILE, json.dumps({"files": files}, indent=2).encode())


def as_compute(m1: ByteLM, compute: str) -> ByteLM:
    """The M1 a tokenizer computes with: its integer version for ``compute="integer"``."""
    if compute == "integer":
        return m1 if m1.exact else load_integer_lm(m1.path)
    if m1.exact:
        raise ConfigError(f"compute={compute!r} needs the float M1, got its integer version")
    return m1


def flops_per_byte_of(m1: ByteLM) -> float:
    """FLOPs per byte of M1's network (2 x non-embedding parameters)."""
    config = m1.model.gpt if m1.exact else m1.model.config
    return 2.0 * config.non_embedding_params()


def copy_m1_into(m1: ByteLM, folder: Path) -> None:
    """Store the M1 artifact (the float model with its integer version inside) in a
    tokenizer folder, so the folder is self-contained."""
    if not m1.path:
        raise ArtifactError("this M1 was not loaded from a folder, so it cannot be saved with the tokenizer")
    source = Path(m1.path)
    if m1.exact and (source.parent / "manifest.json").is_file():
        source = source.parent  # <float model>/integer
    target = folder / M1_FOLDER
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


def load_m1_from(folder: Path, expected_id: str, exact: bool = False) -> ByteLM:
    m1 = load_integer_lm(folder / M1_FOLDER) if exact else load_byte_lm(folder / M1_FOLDER)
    if m1.model_id != expected_id:
        raise ArtifactError(f"{folder}: its M1 is {m1.model_id}, but the tokenizer was made with {expected_id}")
    return m1
