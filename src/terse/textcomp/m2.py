"""M2: language models trained over a tokenization of text (bytes, SentencePiece, or
compressed bitstreams), evaluated in bits per *byte* (Lester et al. 2024, §3.5, §3.8).

* Text is cut into examples of ``example_chars`` characters (the paper codes 10,240-byte
  examples); every tokenizer codes each example on its own, and the token streams are
  concatenated (M2 trains on random windows of the stream).
* Every method sees the same number of training *bytes*: steps = bytes budget x the
  method's tokens/byte / tokens per step.
* bits/byte = (validation tokens / validation bytes) x mean loss / ln 2, with the
  method's own dataset-level compression ratio.
* FLOPs/byte = 2 x M2 non-embedding params / (bytes/token) + M1's 2 x params for
  methods that run M1 (the paper's accounting; gzip's cost is ignored).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terse.core.artifacts import atomic_write_bytes, load_config_artifact, model_id, save_artifact
from terse.core.config import FrozenConfig
from terse.core.errors import ArtifactError, ConfigError, DataError
from terse.nn.gpt import GPT, GPTConfig
from terse.nn.precision import bf16_is_fast
from terse.nn.train_lm import TrainConfig, evaluate_loss, train_lm
from terse.textcomp.tokenizers import Tokenizer, load_tokenizer
from terse.textcomp.training import corpus_files

logger = logging.getLogger(__name__)

M2_KIND = "terse.textcomp.m2"
TOKENIZER_SUBFOLDER = "tokenizer"

# Two sizes that train on 2 CPU cores in minutes (non-embedding parameters ~0.1M and ~0.6M).
M2_SIZES = {
    "s": dict(d_model=64, n_layers=2, n_heads=2, n_kv_heads=1, mlp_ratio=4),
    "m": dict(d_model=128, n_layers=3, n_heads=4, n_kv_heads=1, mlp_ratio=4),
}


OUTPUTS = ("flat", "two-level")


def m2_config(size: str, vocab_size: int, seq_len: int, output: str = "flat") -> GPTConfig:
    """The GPT shape of an M2 of ``size`` over ``vocab_size`` ids.

    ``output="two-level"`` factorizes a 65,536-id vocabulary (see ``GPTConfig``): about 10x
    cheaper per token on CPU, but measured clearly worse than the flat softmax (results/
    REPORT.md, Equal-Info section); smaller vocabularies are always flat.
    """
    if size not in M2_SIZES:
        raise ConfigError(f"unknown M2 size {size!r}; choose one of {sorted(M2_SIZES)}")
    if output not in OUTPUTS:
        raise ConfigError(f"unknown M2 output {output!r}; choose one of {OUTPUTS}")
    two_level = output == "two-level" and vocab_size == 65536
    return GPTConfig(vocab_size=vocab_size, window=seq_len, two_level_vocab=two_level, **M2_SIZES[size])


# --- data -------------------------------------------------------------------------

def text_examples(folder: Path, example_chars: int = 4096) -> list[str]:
    """Every text file of ``folder`` (sorted) cut into examples of ``example_chars`` characters."""
    examples = []
    for path in corpus_files(folder):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path} is not UTF-8 text") from None
        examples.extend(text[i:i + example_chars] for i in range(0, len(text), example_chars))
    return [e for e in examples if e]


def sample_examples(examples: Sequence[str], max_bytes: int, seed: int = 0) -> list[str]:
    """A seeded random subset of ``examples`` holding about ``max_bytes`` UTF-8 bytes."""
    order = np.random.default_rng(seed).permutation(len(examples))
    chosen, total = [], 0
    for i in order:
        if total >= max_bytes:
            break
        chosen.append(examples[i])
        total += len(examples[i].encode("utf-8"))
    return chosen


@dataclass
class TokenizedText:
    """A tokenized set of examples: the concatenated stream and its compression ratio."""

    tokens: np.ndarray  # (N,) int64
    num_bytes: int
    seconds: float  # tokenization wall time (as measured when the cache entry was made)

    @property
    def bytes_per_token(self) -> float:
        return self.num_bytes / max(1, len(self.tokens))


def _examples_digest(examples: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(e.encode("utf-8", errors="surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def tokenize_examples(tokenizer: Tokenizer, examples: Sequence[str], cache_dir: Path | None = None,
                      batch: int = 512) -> TokenizedText:
    """Tokenize every example (in batches) and concatenate; cached on disk when ``cache_dir``."""
    key = f"{tokenizer.name}-{tokenizer.fingerprint()[:16]}-{_examples_digest(examples)}"
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{key}.npy"
        meta_file = Path(cache_dir) / f"{key}.json"
        if cache.is_file() and meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            return TokenizedText(np.load(cache, allow_pickle=False).astype(np.int64), meta["num_bytes"],
                                 meta["seconds"])
    start = time.perf_counter()
    streams = []
    for i in range(0, len(examples), batch):
        streams.extend(tokenizer.encode_batch(examples[i:i + batch]))
    tokens = np.concatenate(streams) if streams else np.zeros(0, dtype=np.int64)
    result = TokenizedText(tokens, sum(len(e.encode("utf-8", errors="surrogatepass")) for e in examples),
                           time.perf_counter() - start)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        import io

        buffer = io.BytesIO()
        np.save(buffer, tokens.astype(np.uint16 if tokenizer.vocab_size <= 65536 else np.int64), allow_pickle=False)
        atomic_write_bytes(cache, buffer.getvalue())
        atomic_write_bytes(meta_file, json.dumps({"num_bytes": result.num_bytes, "seconds": result.seconds}).encode())
    return result


# --- training and evaluation ------------------------------------------------------

@dataclass(frozen=True)
class M2TrainConfig(FrozenConfig):
    """How an M2 is trained: same bytes for every tokenization.

    Attributes:
        size: an ``M2_SIZES`` key.
        train_bytes: text bytes M2 sees during training (repeats the data if larger).
        seq_len: tokens per training sequence (also M2's attention window).
        batch_size: sequences per step.
        learning_rate: peak AdamW learning rate (warmup, then linear decay over the last 25%).
        eval_sequences: validation windows for the final bits/byte (spread over the stream).
        seed: sampling seed.
        output: ``"flat"`` softmax (the paper) or ``"two-level"`` for 65,536-id vocabularies.
    """

    size: str = "s"
    train_bytes: int = 2_000_000
    seq_len: int = 128
    batch_size: int = 16
    learning_rate: float = 3e-3
    eval_sequences: int = 256
    seed: int = 0
    output: str = "flat"

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ConfigError(f"output must be one of {OUTPUTS}")
        if self.size not in M2_SIZES:
            raise ConfigError(f"size must be one of {sorted(M2_SIZES)}")
        if self.train_bytes < 1 or self.seq_len < 2 or self.batch_size < 1:
            raise ConfigError("train_bytes >= 1, seq_len >= 2, batch_size >= 1 are required")


def m2_flops_per_byte(model_config: GPTConfig, bytes_per_token: float, m1_flops_per_byte: float) -> float:
    """Inference FLOPs per byte of text: 2 x non-embedding params per token, plus M1."""
    return 2.0 * model_config.non_embedding_params() / bytes_per_token + m1_flops_per_byte


def train_m2(tokenizer: Tokenizer, train: TokenizedText, valid: TokenizedText, config: M2TrainConfig,
             out_dir: Path) -> dict[str, Any]:
    """Train an M2 over ``tokenizer``'s tokens and export it (with the tokenizer) to ``out_dir/model``.

    Returns the result row: bits/byte on ``valid``, compression ratio, FLOPs/byte,
    autoregressive steps per byte, steps and wall time.
    """
    out_dir = Path(out_dir)
    model_config = m2_config(config.size, tokenizer.vocab_size, config.seq_len, config.output)
    tokens_per_step = config.batch_size * config.seq_len
    steps = max(1, math.ceil(config.train_bytes / train.bytes_per_token / tokens_per_step))
    train_config = TrainConfig(seq_len=config.seq_len, batch_size=config.batch_size, max_steps=steps,
                               learning_rate=config.learning_rate, warmup_steps=max(1, steps // 20),
                               decay_fraction=0.25, eval_every=steps, eval_sequences=32,
                               checkpoint_every=max(1, steps // 4), seed=config.seed, mixed_precision="auto")
    if len(train.tokens) <= config.seq_len + 1 or len(valid.tokens) <= config.seq_len + 1:
        raise DataError(f"{tokenizer.name}: too few tokens for seq_len {config.seq_len}")
    torch.manual_seed(config.seed)
    model = GPT(model_config)
    state = train_lm(model, train.tokens, valid.tokens, train_config, out_dir)
    model.eval()
    loss = evaluate_loss(model, valid.tokens, config.seq_len, config.eval_sequences, bos=None,
                         autocast=bf16_is_fast(next(model.parameters()).device.type))
    result = {
        "method": tokenizer.name, "size": config.size, "vocab_size": tokenizer.vocab_size,
        "output": "two-level" if model_config.two_level_vocab else "flat",
        "non_embedding_params": model_config.non_embedding_params(),
        "valid_loss_nats": loss,
        "bits_per_byte": loss / math.log(2) / valid.bytes_per_token,
        "bytes_per_token": valid.bytes_per_token,
        "uniform_bits_per_byte": math.log2(tokenizer.vocab_size) / valid.bytes_per_token,
        "flops_per_byte": m2_flops_per_byte(model_config, valid.bytes_per_token, tokenizer.m1_flops_per_byte),
        "steps_per_byte": 1.0 / valid.bytes_per_token,
        "train_steps": state["step"], "train_tokens": state["tokens_seen"],
        "train_bytes": round(state["tokens_seen"] * train.bytes_per_token),
        "train_seconds": round(state["elapsed_s"], 1),
    }
    save_m2(model, tokenizer, out_dir / "model", {"train_config": config.to_dict(), "result": result})
    return result


def save_m2(model: GPT, tokenizer: Tokenizer, folder: Path, info: dict[str, Any]) -> str:
    """An M2 folder: the model artifact plus its tokenizer in ``tokenizer/``."""
    folder = Path(folder)
    tokenizer.save_pretrained(folder / TOKENIZER_SUBFOLDER)
    manifest = save_artifact(folder, M2_KIND, model.config.to_dict(), model.state_dict(),
                             info={**info, "tokenizer": tokenizer.name})
    return model_id(manifest)


def load_m2(folder: Path) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """Load an M2 folder written by :func:`save_m2` (hashes verified)."""
    folder = Path(folder)
    config, tensors, manifest = load_config_artifact(folder, M2_KIND, GPTConfig)
    tokenizer = load_tokenizer(folder / TOKENIZER_SUBFOLDER)
    if tokenizer.vocab_size != config.vocab_size:
        raise ArtifactError(f"{folder}: M2 vocabulary {config.vocab_size} != tokenizer's {tokenizer.vocab_size}")
    model = GPT(config)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ArtifactError(f"{folder}: weights do not match config ({str(exc).splitlines()[0]})") from None
    return model.eval(), tokenizer, manifest.get("info", {})


def evaluate_m2(model: GPT, tokenizer: Tokenizer, texts: Sequence[str], sequences: int = 256) -> dict[str, Any]:
    """bits/byte of ``model`` on ``texts`` (tokenized here, each text coded on its own)."""
    data = tokenize_examples(tokenizer, texts)
    seq_len = model.config.window
    if len(data.tokens) <= seq_len + 1:
        raise DataError(f"{data.num_bytes} bytes give only {len(data.tokens)} tokens; need > {seq_len + 1}")
    loss = evaluate_loss(model, data.tokens, seq_len, sequences, bos=None,
                         autocast=bf16_is_fast(next(model.parameters()).device.type))
    return {"method": tokenizer.name, "bits_per_byte": loss / math.log(2) / data.bytes_per_token,
            "bytes_per_token": data.bytes_per_token, "valid_loss_nats": loss, "num_bytes": data.num_bytes,
            "num_tokens": int(len(data.tokens))}


# --- generation -------------------------------------------------------------------

@dataclass
class Generation:
    text: str
    tokens: list[int]
    steps: int
    seconds: float
    invalid_units: int  # windows (or streams) that did not decode; shown as U+FFFD
    num_bytes: int  # bytes decoded from valid units (replacement characters not counted)


@torch.no_grad()
def generate(model: GPT, tokenizer: Tokenizer, num_tokens: int, prompt: str = "", temperature: float = 1.0,
             seed: int = 0) -> Generation:
    """Sample ``num_tokens`` tokens from M2 (after an optional prompt) and decode them.

    Compressed-token samples need not be valid: undecodable windows become U+FFFD and
    are counted in ``invalid_units`` instead of raising.
    """
    if num_tokens < 1:
        raise ConfigError("num_tokens must be >= 1")
    generator = torch.Generator().manual_seed(seed)
    context = [int(t) for t in tokenizer.encode(prompt)] if prompt else []
    produced: list[int] = []
    window = model.config.window
    start = time.perf_counter()
    for _ in range(num_tokens):
        history = (context + produced)[-(window - 1):] or [0]
        idx = torch.tensor([history], dtype=torch.int64)
        produced.append(int(model.sample_next(idx, temperature, generator)[0]))
    decoded = tokenizer.decode_lenient(produced)
    return Generation(decoded.text, produced, num_tokens, time.perf_counter() - start, decoded.invalid_units,
                      decoded.decoded_bytes)
