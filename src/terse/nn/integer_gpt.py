"""Integer-only inference of a :class:`~terse.nn.gpt.GPT` byte LM: identical bits everywhere.

A compressor's decoder must compute exactly the probabilities its encoder used. Float
kernels differ between CPUs (AVX2 vs AVX-512 vs AMX/bf16, MKL vs oneDNN, summation
order, thread count), so a float network in the coding path makes files that only decode
on the machine that wrote them. This network follows integer-only inference (Jacob et al.
2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference"): every number that reaches the coder is an integer computed by rules that
have one answer.

Why it is exact:

* **Matrix products** multiply int8 activations (|a| <= 127) by int7 weights (|w| <= 63,
  one scale per output channel) and sum at most 1024 terms: every partial sum, in any
  order, is an integer below 127 * 63 * 1024 < 2**23. Two interchangeable backends give
  the same int32 results: ``torch._int_mm`` (int8 GEMM; 7-bit weights keep AVX2's
  pairwise int16 ``vpmaddubsw`` from saturating: 2 * 255 * 63 < 2**15) and float32 GEMM
  (integers below 2**24 are exact in float32, and in bf16/TF32 inputs, whatever the
  kernel's blocking or accumulation order). Attention's two batched products run in
  float32 with the same bound (q.k: 64 * 127**2; weights.v: 2**16 * 127).
* **Everything else** (LayerNorm, rotary embedding, softmax, GELU, requantization) is
  int64 arithmetic in :mod:`terse.nn.integer_kernels`: integer square root, tables for
  exp and GELU, fixed-point cos/sin from a phase accumulator; the tables are computed
  once at quantization time and stored with the weights, so no libm is involved at run
  time.
* Rows never interact, so results do not depend on the batch composition, and no
  reduction is split across threads in a way that could change an integer sum.

The float network is only used to build this one (:mod:`terse.nn.quantize_gpt`); the
integer network is its own model, identified by its own artifact hash.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from terse.core.config import FrozenConfig
from terse.core.cores import default_threads
from terse.core.errors import ConfigError
from terse.nn import integer_kernels as K
from terse.nn.gpt import GPTConfig

ROPE_TABLE_BITS = 12  # one turn of the rotary phase = 4096 table steps
WEIGHT_MAX = 63  # |w| <= 63: exact int8 GEMM even with AVX2's saturating pairwise adds
BACKENDS = ("int8", "fp32")
MIN_SHARD_ROWS = 16  # smaller shards are not worth a thread


@dataclass(frozen=True)
class IntegerGPTConfig(FrozenConfig):
    """Fixed-point layout of an :class:`IntegerGPT` (per-tensor scales live in its tensors).

    Attributes:
        network: the float model's :class:`GPTConfig` as a dict (shapes).
        residual_bits: the residual stream is int64 with this many fractional bits.
        residual_limit: residual values are clamped to +-this (in residual units).
        fine_bits: extra fractional bits of q and k before the rotary embedding.
        logit_step: logits are integers in units of 1/logit_step nats.
    """

    network: dict
    residual_bits: int = 12
    residual_limit: int = 1 << 22
    fine_bits: int = 6
    logit_step: int = 64

    def __post_init__(self) -> None:
        GPTConfig.from_dict(self.network)  # validates the shapes
        if not 4 <= self.residual_bits <= 16 or not 0 <= self.fine_bits <= 12:
            raise ConfigError("residual_bits must be in [4, 16] and fine_bits in [0, 12]")
        if not 1 <= self.residual_limit <= 1 << 30:
            raise ConfigError("residual_limit must be in [1, 2**30]")
        if self.logit_step < 1:
            raise ConfigError("logit_step must be >= 1")

    @property
    def gpt(self) -> GPTConfig:
        return GPTConfig.from_dict(self.network)


def tensor_names(config: GPTConfig) -> list[str]:
    """Every tensor an integer network of this shape stores."""
    names = ["embed", "ln_scale", "attention_exp", "logit_exp", "rope_omega", "rope_sin", "head.weight",
             "head.bias", "head.multiplier"]
    for layer in range(config.n_layers):
        p = f"blocks.{layer}."
        for linear in ("qkv", "attn_out", "mlp_in", "mlp_out"):
            names += [p + linear + ".weight", p + linear + ".bias", p + linear + ".multiplier"]
        names += [p + "score_multiplier", p + "value_multiplier", p + "gelu"]
    return names


class IntegerCache:
    """Key/value ring buffers of a batch (int8, stored (hd, window): the window is contiguous).

    The rows are split into ``shards`` contiguous groups that separate threads step
    concurrently; rows never interact, so the split changes speed only.
    """

    def __init__(self, config: GPTConfig, batch_size: int, threads: int):
        self.config = config
        self.position = 0
        self.threads = threads
        self._allocate(batch_size)

    def _allocate(self, batch_size: int) -> None:
        parts = max(1, min(self.threads, batch_size // MIN_SHARD_ROWS))
        bounds = np.linspace(0, batch_size, parts + 1).astype(np.int64)
        self.shards = [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        g = self.config
        self.keys, self.values = [], []
        for shard in self.shards:
            rows = shard.stop - shard.start
            self.keys.append([np.zeros((rows, g.n_kv_heads, g.head_dim, g.window), dtype=np.int8)
                              for _ in range(g.n_layers)])
            self.values.append([np.zeros((rows, g.n_kv_heads, g.head_dim, g.window), dtype=np.int8)
                                for _ in range(g.n_layers)])

    @property
    def batch_size(self) -> int:
        return self.shards[-1].stop

    def select(self, rows: np.ndarray) -> None:
        """Keep only these batch rows (in this order)."""
        rows = np.asarray(rows, dtype=np.int64)
        keys = [np.concatenate([part[layer] for part in self.keys])[rows] for layer in range(self.config.n_layers)]
        values = [np.concatenate([part[layer] for part in self.values])[rows]
                  for layer in range(self.config.n_layers)]
        self._allocate(len(rows))
        for i, shard in enumerate(self.shards):
            self.keys[i] = [k[shard] for k in keys]
            self.values[i] = [v[shard] for v in values]


class IntegerGPT:
    """The integer network: :meth:`step` maps byte ids to integer frequency tables.

    Args:
        config: fixed-point layout.
        tensors: integer tensors named by :func:`tensor_names` (see
            :mod:`terse.nn.quantize_gpt` for how they are made).
        backend: ``"int8"`` (int8 GEMM) or ``"fp32"`` (float32 GEMM over the same
            integers); both compute identical results, the choice is speed only.
    """

    def __init__(self, config: IntegerGPTConfig, tensors: dict[str, torch.Tensor], backend: str = "int8"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.config = config
        self.gpt = config.gpt
        self.backend = backend
        missing = sorted(set(tensor_names(self.gpt)) - set(tensors))
        if missing:
            raise ValueError(f"integer network lacks tensors {missing[:4]}")
        self._check_ranges(tensors)
        self.np = {name: tensors[name].numpy().astype(np.int64) for name in tensor_names(self.gpt)
                   if not name.endswith(".weight")}
        self.weights = {}
        for name in tensor_names(self.gpt):
            if name.endswith(".weight"):
                w = tensors[name].to(torch.int8).contiguous()  # (K, N)
                self.weights[name] = w if backend == "int8" else w.float()

    def _check_ranges(self, tensors: dict[str, torch.Tensor]) -> None:
        """The exactness argument needs these bounds; a file that breaks them is refused."""
        for name in tensor_names(self.gpt):
            t = tensors[name]
            if t.is_floating_point():
                raise ValueError(f"integer network tensor {name} is floating point")
            if name.endswith(".weight") and int(t.abs().max()) > WEIGHT_MAX:
                raise ValueError(f"{name}: weights must be within +-{WEIGHT_MAX}")
            if name.endswith("multiplier") and int(t.abs().max()) >= 1 << 38:
                raise ValueError(f"{name}: multiplier too large (>= 2**38)")
            if name.endswith(".bias") and int(t.abs().max()) >= 1 << 23:
                raise ValueError(f"{name}: bias too large (>= 2**23)")
        if int(tensors["embed"].abs().max()) > self.config.residual_limit:
            raise ValueError("embed: values beyond residual_limit")
        if int(tensors["attention_exp"].max()) > 1 << 16 or int(tensors["attention_exp"].min()) < 0:
            raise ValueError("attention_exp must hold values in [0, 2**16]")
        if int(tensors["attention_exp"][0]) < 1 or int(tensors["logit_exp"][0]) < 1:
            raise ValueError("exp tables must start positive")
        if int(tensors["logit_exp"].max()) > 1 << 20 or int(tensors["logit_exp"].min()) < 0:
            raise ValueError("logit_exp must hold values in [0, 2**20]")
        if int(tensors["ln_scale"].min()) < 1 or int(tensors["ln_scale"].max()) > 1 << 10:
            raise ValueError("ln_scale must be in [1, 1024]")

    def new_cache(self, batch_size: int, threads: int | None = None) -> IntegerCache:
        """Empty caches for ``batch_size`` rows stepped on up to ``threads`` threads
        (default: :func:`default_threads`)."""
        return IntegerCache(self.gpt, batch_size, threads or default_threads())

    def _matmul(self, a: np.ndarray, name: str) -> np.ndarray:
        """(B, K) int8 @ (K, N) int7 weights -> (B, N) exact integer sums."""
        w = self.weights[name]
        if self.backend == "int8":
            return torch._int_mm(torch.from_numpy(a), w).numpy()
        return (torch.from_numpy(a).float() @ w).numpy()

    def _rotary(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """cos, sin (hd/2,) with 14 fractional bits at ``position``, from an exact phase."""
        # phase in units of 2**-32 turn; uint64 products wrap mod 2**64, which keeps them
        # exact mod 2**32
        phase = (np.uint64(position % (1 << 32)) * self.np["rope_omega"].astype(np.uint64)) & np.uint64(0xFFFFFFFF)
        steps = 1 << ROPE_TABLE_BITS
        index = ((phase.astype(np.int64) + (1 << (31 - ROPE_TABLE_BITS))) >> (32 - ROPE_TABLE_BITS)) % steps
        table = self.np["rope_sin"]
        return table[(index + steps // 4) % steps], table[index]

    def step(self, tokens: np.ndarray, cache: IntegerCache, precision: int = 16, symbols: int = 256) -> np.ndarray:
        """One incremental step: tokens (B,) at position ``cache.position`` -> frequencies
        (B, symbols) int64 of the first ``symbols`` outputs (256 bytes; 257 adds BOS, which
        tokenizers use as end of document), each >= 1, rows summing to ``2**precision``.

        Each shard of rows runs on its own thread, the first on the calling one (torch ops
        with one intra-op thread, numba kernels without the GIL), which keeps both cores
        busy without OpenMP spinning.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        if not 2 <= symbols <= self.gpt.vocab_size or (1 << precision) < 2 * symbols:
            raise ValueError(f"cannot code {symbols} symbols with {precision}-bit frequencies")
        if len(tokens) != cache.batch_size:
            raise ValueError(f"step got {len(tokens)} tokens for a cache of {cache.batch_size} rows")
        cos, sin = self._rotary(cache.position)
        jobs = [(tokens[shard], cache.keys[i], cache.values[i]) for i, shard in enumerate(cache.shards)]
        run = lambda job: self._step_rows(*job, cache.position, cos, sin, precision, symbols)  # noqa: E731
        with torch_threads(1):
            # the calling thread steps the first shard itself: one thread fewer to wake per step
            others = [_pool(len(jobs) - 1).submit(run, job) for job in jobs[1:]] if len(jobs) > 1 else []
            parts = [run(jobs[0])] + [job.result() for job in others]
        cache.position += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @torch.no_grad()
    def _step_rows(self, tokens: np.ndarray, keys_by_layer: list, values_by_layer: list, position: int,
                   cos: np.ndarray, sin: np.ndarray, precision: int, symbols: int) -> np.ndarray:
        g, c = self.gpt, self.config
        B, d, hd = len(tokens), g.d_model, g.head_dim
        slot = position % g.window
        filled = min(position + 1, g.window)
        x = self.np["embed"][tokens]  # (B, d) int64 residual
        a = np.empty((B, d), dtype=np.int8)
        hidden = np.empty((B, g.mlp_ratio * d), dtype=np.int8)
        qkv = np.empty((B, d + 2 * g.n_kv_heads * hd), dtype=np.int64)
        q = np.empty((B, g.n_heads, hd), dtype=np.int16)
        ln = self.np["ln_scale"]
        lim = c.residual_limit
        for layer in range(g.n_layers):
            p = f"blocks.{layer}."
            K.layer_norm(x, ln[2 * layer], a)
            K.requantize(self._matmul(a, p + "qkv.weight"), self.np[p + "qkv.bias"], self.np[p + "qkv.multiplier"],
                         -(1 << 40), 1 << 40, qkv)
            keys, values = keys_by_layer[layer], values_by_layer[layer]
            K.rotate_and_store(qkv, g.n_heads, g.n_kv_heads, hd, cos, sin, c.fine_bits, q, keys, values, slot)
            K.attention(q, keys, values, filled, self.np[p + "score_multiplier"][0], self.np["attention_exp"],
                        self.np[p + "value_multiplier"][0], a)
            K.add_to_residual(self._matmul(a, p + "attn_out.weight"), self.np[p + "attn_out.bias"],
                              self.np[p + "attn_out.multiplier"], lim, x)
            K.layer_norm(x, ln[2 * layer + 1], a)
            K.gelu_lookup(self._matmul(a, p + "mlp_in.weight"), self.np[p + "mlp_in.bias"],
                          self.np[p + "mlp_in.multiplier"], self.np[p + "gelu"], hidden)
            K.add_to_residual(self._matmul(hidden, p + "mlp_out.weight"), self.np[p + "mlp_out.bias"],
                              self.np[p + "mlp_out.multiplier"], lim, x)
        K.layer_norm(x, ln[2 * g.n_layers], a)
        freqs = np.empty((B, symbols), dtype=np.int64)
        K.logits_to_frequencies(self._matmul(a, "head.weight")[:, :symbols], self.np["head.bias"][:symbols],
                                self.np["head.multiplier"][:symbols], self.np["logit_exp"], precision, freqs)
        return freqs


@lru_cache(maxsize=1)
def default_backend() -> str:
    """``"int8"`` where ``torch._int_mm`` runs on this machine's CPU, else ``"fp32"``."""
    try:
        a = torch.ones((32, 64), dtype=torch.int8)
        if int(torch._int_mm(a, a.T.contiguous())[0, 0]) == 64:
            return "int8"
    except (RuntimeError, AttributeError):
        pass
    return "fp32"


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="terse-int-gpt")


@contextmanager
def torch_threads(threads: int):
    """Run torch ops with this many intra-op threads, restoring the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
