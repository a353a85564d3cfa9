"""A small decoder-only transformer over a byte (or token) vocabulary.

One network, nanoGPT style: pre-LayerNorm blocks, rotary position embeddings and
sliding-window causal attention. The window is used both in training and in
incremental inference, so a model trained on short sequences codes arbitrarily long
inputs: every position sees at most ``window`` tokens (itself included), exactly what
the KV ring buffer of :class:`KVCache` holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from terse.core.config import FrozenConfig
from terse.core.errors import ConfigError


@dataclass(frozen=True)
class GPTConfig(FrozenConfig):
    """Shape of a :class:`GPT`.

    Attributes:
        vocab_size: number of input/output symbols (257 = 256 bytes + BOS for M1).
        d_model: residual width.
        n_layers: number of transformer blocks.
        n_heads: attention (query) heads (``d_model`` must be divisible by it).
        n_kv_heads: key/value heads shared by groups of query heads (1 = multi-query
            attention). Fewer KV heads shrink the KV cache, whose memory traffic, not
            the matmuls, bounds incremental decoding speed on CPU.
        mlp_ratio: hidden width of the MLP as a multiple of ``d_model``.
        window: attention window in tokens (including the current one).
        rope_base: rotary embedding base.
        two_level_vocab: factorize a vocabulary of ``base**2`` ids (e.g. 65,536 16-bit
            tokens) into (high, low) halves: the input embedding is the sum of a high and
            a low embedding, and the output is p(high) * p(low | high), still an exact
            normalized distribution over all ids, at ~2 * base instead of base**2
            output units per position (a flat 65,536-way softmax would cost far more
            than the rest of a small model).
    """

    vocab_size: int = 257
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 1
    mlp_ratio: int = 4
    window: int = 256
    rope_base: float = 10000.0
    two_level_vocab: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "mlp_ratio", "window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"GPTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"GPTConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads:
            raise ConfigError(f"GPTConfig.n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if (self.d_model // self.n_heads) % 2:
            raise ConfigError("GPTConfig head size (d_model / n_heads) must be even for rotary embeddings")
        if self.two_level_vocab and math.isqrt(self.vocab_size) ** 2 != self.vocab_size:
            raise ConfigError(f"two_level_vocab needs a square vocab_size, got {self.vocab_size}")

    def to_dict(self) -> dict:
        # Byte LMs keep the config (and so the model ids) they had before two_level_vocab.
        data = super().to_dict()
        if not data["two_level_vocab"]:
            del data["two_level_vocab"]
        return data

    @property
    def vocab_base(self) -> int:
        """Ids per level of a two-level vocabulary."""
        return math.isqrt(self.vocab_size)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def non_embedding_params(self) -> int:
        """Parameters outside the token embedding and output head (LayerNorms included)."""
        d, h = self.d_model, self.d_model * self.mlp_ratio
        qkv = d + 2 * self.n_kv_heads * self.head_dim
        per_layer = d * qkv + qkv + d * d + d + 2 * d * h + h + d + 4 * d
        return self.n_layers * per_layer + 2 * d


def rotary_tables(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for ``positions`` (T,) -> two (T, head_dim/2) float32 tensors.

    Angles are computed in float64 so that large absolute positions (long segments)
    keep full precision; only relative offsets matter to attention.
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :h/2], x[..., h/2:]) of x (..., T, head_dim)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class KVCache:
    """Per-layer key/value ring buffers for lock-step incremental decoding of a batch.

    All rows of the batch advance together, so one position counter serves all.
    Slot ``pos % window`` holds the token at absolute position ``pos``.
    """

    def __init__(self, config: GPTConfig, batch_size: int, dtype: torch.dtype = torch.float32):
        shape = (batch_size, config.n_kv_heads, config.window, config.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in range(config.n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in range(config.n_layers)]
        self.window = config.window
        self.position = 0

    def valid_mask(self) -> torch.Tensor:
        """(window,) bool: which ring slots hold a token at the current step."""
        filled = min(self.position + 1, self.window)
        mask = torch.zeros(self.window, dtype=torch.bool)
        mask[:filled] = True
        return mask


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        d = config.d_model
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.ln_attn = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, d + 2 * config.n_kv_heads * config.head_dim)
        self.attn_out = nn.Linear(d, d)
        self.ln_mlp = nn.LayerNorm(d)
        self.mlp_in = nn.Linear(d, config.mlp_ratio * d)
        self.mlp_out = nn.Linear(config.mlp_ratio * d, d)

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split([C, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim], dim=-1)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return q, k, v

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp_out(F.gelu(self.mlp_in(self.ln_mlp(x)), approximate="tanh"))

    def forward(self, x: torch.Tensor, cos, sin, mask: torch.Tensor) -> torch.Tensor:
        # x (B, T, C); mask (T, T) bool, True = may attend
        B, T, C = x.shape
        q, k, v = self._split_heads(self.ln_attn(x))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        group = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, hd)
        x = x + self.attn_out(y.transpose(1, 2).reshape(B, T, C))
        return self._mlp(x)

    def step(self, x: torch.Tensor, cos, sin, cache: KVCache, layer: int, mask) -> torch.Tensor:
        # x (B, 1, C): one new token per row; writes its key/value into the ring buffer
        B, _, C = x.shape
        q, k, v = self._split_heads(self.ln_attn(x))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        slot = cache.position % cache.window
        cache.keys[layer][:, :, slot] = k[:, :, 0]
        cache.values[layer][:, :, slot] = v[:, :, 0]
        # Query heads of one group share a KV head: fold them into the query length so
        # each cached key is read once per group, (B, Hkv, group, hd) @ (B, Hkv, hd, W).
        group = self.n_heads // self.n_kv_heads
        q = q.reshape(B, self.n_kv_heads, group, self.head_dim)
        scores = (q @ cache.keys[layer].transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))  # (B, Hkv, g, W)
        scores = scores.masked_fill(~mask, float("-inf"))
        y = scores.softmax(dim=-1) @ cache.values[layer]  # (B, Hkv, g, hd)
        x = x + self.attn_out(y.reshape(B, 1, C))
        return self._mlp(x)


class GPT(nn.Module):
    """Decoder-only transformer LM. ``forward`` for training, ``step`` for coding."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        # (creation order fixes the seeded initialization, which golden files depend on)
        if config.two_level_vocab:
            self.embed_high = nn.Embedding(config.vocab_base, d)
            self.embed_low = nn.Embedding(config.vocab_base, d)
        else:
            self.embed = nn.Embedding(config.vocab_size, d)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_final = nn.LayerNorm(d)
        if config.two_level_vocab:
            self.head = nn.Linear(d, config.vocab_base, bias=False)  # p(high | context)
            self.embed_given_high = nn.Embedding(config.vocab_base, d)  # conditions p(low | context, high)
            self.head_low = nn.Linear(d, config.vocab_base, bias=False)
        else:
            self.head = nn.Linear(d, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        for block in self.blocks:  # scaled init of residual projections (GPT-2)
            std = 0.02 / math.sqrt(2 * config.n_layers)
            nn.init.normal_(block.attn_out.weight, std=std)
            nn.init.normal_(block.mlp_out.weight, std=std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def window_mask(self, T: int, device: torch.device | None = None) -> torch.Tensor:
        """(T, T) bool causal mask limited to the last ``window`` positions."""
        i = torch.arange(T, device=device)
        offset = i[:, None] - i[None, :]
        return (offset >= 0) & (offset < self.config.window)

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        if self.config.two_level_vocab:
            base = self.config.vocab_base
            return self.embed_high(idx // base) + self.embed_low(idx % base)
        return self.embed(idx)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) int64 -> final hidden states (B, T, C), after the last LayerNorm."""
        B, T = idx.shape
        cos, sin = rotary_tables(torch.arange(T, device=idx.device), self.config.head_dim, self.config.rope_base)
        mask = self.window_mask(T, idx.device)
        x = self._embed(idx)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.ln_final(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """idx (B, T) int64 -> logits (B, T, vocab_size); with targets (B, T), the mean
        next-token cross-entropy in nats instead (the only output of a two-level vocab)."""
        h = self.hidden(idx)
        if not self.config.two_level_vocab:
            logits = self.head(h)
            if targets is None:
                return logits
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        if targets is None:
            raise ValueError("a two-level vocabulary model returns losses (give targets) or samples (sample_next)")
        base = self.config.vocab_base
        high, low = targets // base, targets % base
        logits_high = self.head(h).float()
        logits_low = self.head_low(h + self.embed_given_high(high)).float()
        return (F.cross_entropy(logits_high.reshape(-1, base), high.reshape(-1))
                + F.cross_entropy(logits_low.reshape(-1, base), low.reshape(-1)))

    @torch.no_grad()
    def sample_next(self, idx: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
        """Sample one next id per row after idx (B, T) -> (B,) (full forward; for short samples)."""
        h = self.hidden(idx)[:, -1]  # (B, C)

        def draw(logits: torch.Tensor) -> torch.Tensor:
            probs = torch.softmax(logits.float() / max(temperature, 1e-6), dim=-1)
            return torch.multinomial(probs, 1, generator=generator)[:, 0]

        if not self.config.two_level_vocab:
            return draw(self.head(h))
        high = draw(self.head(h))
        low = draw(self.head_low(h + self.embed_given_high(high)))
        return high * self.config.vocab_base + low

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> KVCache:
        return KVCache(self.config, batch_size, dtype=dtype or self.ln_final.weight.dtype)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One incremental step: tokens (B,) at position ``cache.position`` -> logits (B, V).

        CPU only (the cache lives on the CPU); training (``forward``) runs on any device.

        The encoder and decoder of the compressor both call exactly this, with the same
        batch shape, so they compute bit-identical logits.
        """
        cos, sin = rotary_tables(torch.tensor([cache.position]), self.config.head_dim, self.config.rope_base)
        cos, sin = cos.to(cache.keys[0].dtype), sin.to(cache.keys[0].dtype)
        mask = cache.valid_mask()
        if self.config.two_level_vocab:
            raise ValueError("incremental step() serves byte LMs; two-level vocab models use sample_next")
        x = self.embed(tokens)[:, None, :]  # (B, 1, C)
        for layer, block in enumerate(self.blocks):
            x = block.step(x, cos, sin, cache, layer, mask)
        cache.position += 1
        return self.head(self.ln_final(x))[:, 0]
