"""Exact inference of a pretrained Llama-family causal LM (e.g. SmolLM2): the same
probabilities on every machine, so its predictions can drive an arithmetic coder.

The network is a Hugging Face ``LlamaForCausalLM`` (RMSNorm, rotary embedding, grouped-
query attention, SwiGLU), converted once at load time. Its numbers are a pure function of
the inputs because every operation is one of two kinds:

* **Matrix products on integers in float64 BLAS.** Activations are quantized per row to
  integers ``|a| <= 2**15`` with a power-of-two scale, weights per output channel to
  ``|w| <= 2047`` (RMSNorm gains folded in first). Every partial sum of a product with
  ``K <= 2**16`` terms is an integer below ``2**15 * 2047 * 2**16 < 2**53``, which float64
  holds exactly, so any blocking, summation order, FMA use or thread count gives the same
  result (MKL, oneDNN or OpenBLAS; AVX-512, AVX2 or SSE). With few lanes a numba kernel
  over int16 weights computes the same integers (4x less weight traffic).
* **Everything else in IEEE-754 float64 basic operations in a fixed order**: numpy
  element-wise ufuncs, and numba loops compiled *without* fastmath (no reassociation, no
  FMA contraction; vectorized only across independent elements). ``+ - * / sqrt`` are
  correctly rounded on every IEEE machine. Floating sums run in a fixed sequential order
  (never ``np.sum``, whose pairwise blocking follows the SIMD width); maxima are exact.
  No libm: ``exp`` (softmax, SiLU) and ``cos``/``sin`` (rotary embedding) come from tables
  computed with Python's :mod:`decimal` (software arithmetic) with linear interpolation.

Quantizing to 12-bit weights and 16-bit activations costs no measurable ratio (one-off
fake-quantization of SmolLM2-135M on 30 kB of alice29: 1.1483 float, 1.1482 W12/A16).
The model's identity (:attr:`ExactLlama.model_id`) hashes the converted integers, so a
file never decodes with a different conversion.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from decimal import Decimal, getcontext
from functools import lru_cache

import numba
import numpy as np
import torch
from numba import njit, prange

from terse.core.errors import ConfigError

ACTIVATION_BITS = 15  # |a| <= 2**15
WEIGHT_MAX = 2047  # |w| <= 2**11 - 1
EXP_STEPS = 1024  # 2**f on [0, 1] in 1024 intervals (linear interpolation error < 2e-7)
TURN_STEPS = 4096  # cos/sin on one turn in 4096 intervals (error < 3e-7)
EXP_FLOOR = -60.0  # exp(x) below e**-60 counts as 0 (softmax and SiLU)
POW2_RANGE = 128  # exact powers 2**-128 .. 2**128
LOG2E = 1.4426950408889634  # float64 nearest to log2(e), a literal: no libm involved


@dataclass(frozen=True)
class LlamaShape:
    """The shapes and constants of a Llama-family network (read from its HF config)."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    rope_theta: float
    rms_eps: float

    @classmethod
    def from_hf_config(cls, config) -> LlamaShape:
        if getattr(config, "model_type", "") not in ("llama", "mistral", "qwen2") and not hasattr(config, "rms_norm_eps"):
            raise ConfigError(f"not a Llama-family model (model_type {getattr(config, 'model_type', '?')!r})")
        rope = getattr(config, "rope_parameters", None) or {}
        scaling = getattr(config, "rope_scaling", None) or {}
        kind = rope.get("rope_type", scaling.get("rope_type", "default")) if isinstance(rope, dict) else "default"
        if kind not in ("default", None):
            raise ConfigError(f"rotary scaling {kind!r} is not supported by the exact network")
        theta = rope.get("rope_theta") if isinstance(rope, dict) and "rope_theta" in rope else config.rope_theta
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(vocab_size=config.vocab_size, hidden=config.hidden_size, layers=config.num_hidden_layers,
                   heads=heads, kv_heads=config.num_key_value_heads, head_dim=head_dim,
                   intermediate=config.intermediate_size, rope_theta=float(theta), rms_eps=float(config.rms_norm_eps))


# ----------------------------------------------------------------------------- tables

def _decimal_exp(x: Decimal) -> Decimal:
    return x.exp()


def _decimal_cos_sin(angle: Decimal) -> tuple[Decimal, Decimal]:
    """Taylor series (|angle| <= pi/4 after reduction by the caller)."""
    term, cos, sin = Decimal(1), Decimal(0), Decimal(0)
    for n in range(60):
        if n % 4 == 0:
            cos += term
        elif n % 4 == 1:
            sin += term
        elif n % 4 == 2:
            cos -= term
        else:
            sin -= term
        term = term * angle / (n + 1)
    return cos, sin


@lru_cache(maxsize=1)
def tables() -> dict[str, np.ndarray]:
    """Interpolation tables, computed in decimal arithmetic (identical everywhere)."""
    getcontext().prec = 40
    ln2 = Decimal(2).ln()
    exp2 = np.array([float(_decimal_exp(ln2 * i / EXP_STEPS)) for i in range(EXP_STEPS + 1)])
    pow2 = np.array([math.ldexp(1.0, k) for k in range(-POW2_RANGE, POW2_RANGE + 1)])
    # cos/sin of i/TURN_STEPS turns: octant symmetry keeps every series argument small
    pi = _decimal_pi()
    cos = np.empty(TURN_STEPS + 1)
    sin = np.empty(TURN_STEPS + 1)
    eighth = TURN_STEPS // 8
    base = {}
    for i in range(eighth + 1):
        base[i] = _decimal_cos_sin(2 * pi * i / TURN_STEPS)
    for i in range(TURN_STEPS + 1):
        quadrant, r = divmod(i, TURN_STEPS // 4)
        if r <= eighth:
            c, s = base[r]
        else:
            s, c = base[TURN_STEPS // 4 - r]
        for _ in range(quadrant % 4):
            c, s = -s, c
        cos[i], sin[i] = float(c), float(s)
    return {"exp2": exp2, "pow2": pow2, "cos": cos, "sin": sin}


def _decimal_pi() -> Decimal:
    """pi by Machin's formula (decimal arithmetic)."""
    def arctan_inv(n: int) -> Decimal:
        x = Decimal(1) / n
        total, term, k, sign = Decimal(0), x, 1, 1
        while term > Decimal(10) ** -45:
            total += sign * term / k
            term = term / (n * n)
            k += 2
            sign = -sign
        return total
    return 4 * (4 * arctan_inv(5) - arctan_inv(239))


def inverse_frequencies(theta: float, head_dim: int) -> np.ndarray:
    """theta**(-2i/head_dim) in turns per position, i < head_dim/2 (decimal arithmetic)."""
    getcontext().prec = 40
    pi2 = 2 * _decimal_pi()
    t = Decimal(repr(theta))
    return np.array([float((-(Decimal(2 * i) / head_dim) * t.ln()).exp() / pi2) for i in range(head_dim // 2)])


# ----------------------------------------------------------------------------- kernels
# No fastmath anywhere below: each float operation is rounded exactly as written.

@njit(cache=True, inline="always")
def _exp(x, exp2, pow2):
    """e**x for x <= 0 from the 2**f table; 0 below EXP_FLOOR."""
    if x < EXP_FLOOR:
        return 0.0
    y = x * LOG2E
    k = math.floor(y)
    f = (y - k) * EXP_STEPS
    j = int(f)
    if j >= EXP_STEPS:
        j = EXP_STEPS - 1
    r = f - j
    return (exp2[j] + r * (exp2[j + 1] - exp2[j])) * pow2[int(k) + POW2_RANGE]


@njit(cache=True, parallel=True)
def quantize_rows(x, out, exponents, squares):
    """Per row: out = rint(x * 2**e) with max |out| in [2**14, 2**15]; squares = sum out**2.

    The sum is of integers below 2**30 * 2**16: exact in float64 in any order.
    """
    rows, n = x.shape
    for b in prange(rows):
        top = 0.0
        for i in range(n):
            top = max(top, abs(x[b, i]))
        e = 0
        if top > 0.0:
            e = ACTIVATION_BITS - (math.frexp(top)[1])
        scale = math.ldexp(1.0, e)
        total = 0.0
        for i in range(n):
            v = np.rint(x[b, i] * scale)
            out[b, i] = v
            total += v * v
        exponents[b] = e
        squares[b] = total


@njit(cache=True, parallel=True)
def silu_times(gate_up, half, exp2, pow2, out):
    """out = silu(gate) * up with gate = gate_up[:, :half], up = gate_up[:, half:]."""
    rows = gate_up.shape[0]
    for b in prange(rows):
        for i in range(half):
            g = gate_up[b, i]
            if g >= 0.0:
                s = 1.0 / (1.0 + _exp(-g, exp2, pow2))
            else:
                e = _exp(g, exp2, pow2)
                s = e / (1.0 + e)
            out[b, i] = g * s * gate_up[b, half + i]


@njit(cache=True, parallel=True)
def attention(q, keys, values, length, exp2, pow2, out):
    """Causal attention of one step over the cache, float32 in a fixed order.

    q (B, H, hd) float32 rotated queries already scaled by 1/sqrt(hd); keys (B, Hkv, hd, T)
    and values (B, Hkv, T, hd) float32; positions < ``length`` are filled. out (B, H * hd)
    float64. Scores sum over the head dimension in order, weights over positions in
    order (vectorized across positions and across the head dimension respectively, which
    keeps each element's order of operations).
    """
    rows, heads, hd = q.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    for task in prange(rows * kv_heads):
        b = task // kv_heads
        kv = task % kv_heads
        first = kv * group
        # the heads of a group share each key and value row while it is in L1
        scores = np.zeros((group, length), dtype=np.float32)
        for i in range(hd):
            for j in range(group):
                qi = q[b, first + j, i]
                for w in range(length):
                    scores[j, w] += qi * keys[b, kv, i, w]
        totals = np.zeros(group)
        for j in range(group):
            top = scores[j, 0]
            for w in range(1, length):
                top = max(top, scores[j, w])
            for w in range(length):
                e = np.float32(_exp(np.float64(scores[j, w]) - np.float64(top), exp2, pow2))
                scores[j, w] = e
                totals[j] += np.float64(e)
        acc = np.zeros((group, hd), dtype=np.float32)
        for w in range(length):
            for j in range(group):
                e = scores[j, w]
                for i in range(hd):
                    acc[j, i] += e * values[b, kv, w, i]
        for j in range(group):
            for i in range(hd):
                out[b, (first + j) * hd + i] = np.float64(acc[j, i]) / totals[j]


@njit(cache=True, parallel=True)
def logits_to_frequencies(logits, precision, exp2, pow2, out):
    """Frequencies (B, V) int64, each >= 1, rows summing to 2**precision.

    e = exp(logit - max); f = floor(e * (2**P - V) / sum e) + 1 with the sum in order;
    the remainder goes to the first most probable token.
    """
    rows, vocab = logits.shape
    total_freq = np.int64(1) << precision
    spread = float(total_freq - vocab)
    for b in prange(rows):
        top = logits[b, 0]
        arg = 0
        for j in range(1, vocab):
            if logits[b, j] > top:
                top = logits[b, j]
                arg = j
        e = np.empty(vocab)
        total = 0.0
        for j in range(vocab):
            e[j] = _exp(logits[b, j] - top, exp2, pow2)
            total += e[j]
        used = np.int64(0)
        for j in range(vocab):
            f = np.int64(math.floor(e[j] * spread / total)) + 1
            out[b, j] = f
            used += f
        out[b, arg] += total_freq - used


@njit(cache=True, parallel=True, fastmath=True)
def integer_product(x, weight, out):
    """out = x @ weight.T for integer-valued x (B, K) float64 and int16 weight (N, K).

    Every product and partial sum is an integer below 2**53, so the reassociation and
    FMA contraction that fastmath allows cannot change a result: this equals the float64
    BLAS product bit for bit. With few lanes it is several times faster (the weights are
    read as 2 bytes instead of 8: a decode step is bound by reading them).
    """
    rows, k = x.shape
    for j in prange(weight.shape[0]):
        for b in range(rows):
            total = 0.0
            for i in range(k):
                total += x[b, i] * weight[j, i]
            out[b, j] = total


SMALL_BATCH = 16  # up to this many lanes the int16 kernel beats float64 BLAS (measured 2-35x)


# ----------------------------------------------------------------------------- network

@dataclass
class _Linear:
    """Integer weights as int16 (N, K) and float64 per-output scales (N,); a float64 (K, N)
    copy for BLAS is made on first use (only batches above SMALL_BATCH lanes need it)."""

    rows: np.ndarray
    scale: np.ndarray
    _blas: torch.Tensor | None = None

    def integer_product(self, ints: np.ndarray) -> np.ndarray:
        """ints (B, K) integer-valued float64 -> exact (B, N) float64."""
        if len(ints) <= SMALL_BATCH:
            out = np.empty((len(ints), len(self.scale)))
            integer_product(ints, self.rows, out)
            return out
        if self._blas is None:
            self._blas = torch.from_numpy(np.ascontiguousarray(self.rows.T, dtype=np.float64))
        return (torch.from_numpy(ints) @ self._blas).numpy()


def _quantize_linear(weight: np.ndarray, gain: np.ndarray | None, digest) -> _Linear:
    """weight (N, K) float -> integers |w| <= WEIGHT_MAX per output row (gain folded in);
    ``digest`` (the model id) takes the integers as float64 (K, N) and the scales."""
    w = weight.astype(np.float64)
    if gain is not None:
        w = w * gain.astype(np.float64)[None, :]
    top = np.abs(w).max(axis=1)
    scale = np.where(top > 0, top / WEIGHT_MAX, 1.0)
    ints = np.rint(w / scale[:, None])
    digest.update(np.ascontiguousarray(ints.T).tobytes())
    digest.update(scale.tobytes())
    return _Linear(ints.astype(np.int16), scale)


class LlamaCache:
    """Keys (L, B, Hkv, hd, T) and values (L, B, Hkv, T, hd) float32 for ``capacity`` positions."""

    def __init__(self, shape: LlamaShape, lanes: int, capacity: int):
        self.keys = np.zeros((shape.layers, lanes, shape.kv_heads, shape.head_dim, capacity), dtype=np.float32)
        self.values = np.zeros((shape.layers, lanes, shape.kv_heads, capacity, shape.head_dim), dtype=np.float32)
        self.length = 0
        self.capacity = capacity


class ExactLlama:
    """A Llama-family causal LM whose output frequencies are identical on every machine.

    Args:
        hf_model: a loaded ``LlamaForCausalLM`` (float weights); only its weights and config
            are read.
    """

    def __init__(self, hf_model) -> None:
        self.shape = shape = LlamaShape.from_hf_config(hf_model.config)
        if shape.hidden > 1 << 16 or shape.intermediate > 1 << 16:
            raise ConfigError("the exact network needs hidden and intermediate sizes <= 65536")
        sd = {k: v.detach().float().numpy() for k, v in hf_model.state_dict().items()}
        # float32 rows, made float64 (exactly) when looked up
        self.embedding = sd["model.embed_tokens.weight"]
        head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
        # the model id hashes the shape, then every integer weight and scale as they are made
        digest = hashlib.sha256(json.dumps(asdict(shape), sort_keys=True).encode())
        digest.update(self.embedding.astype(np.float64).tobytes())
        self.layers = []
        for i in range(shape.layers):
            p = f"model.layers.{i}."
            for name in ("q", "k", "v", "o"):
                if p + f"self_attn.{name}_proj.bias" in sd:
                    raise ConfigError("attention biases are not supported by the exact network")
            attn_gain = sd[p + "input_layernorm.weight"]
            mlp_gain = sd[p + "post_attention_layernorm.weight"]
            qkv = np.concatenate([sd[p + f"self_attn.{n}_proj.weight"] for n in "qkv"])
            gate_up = np.concatenate([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]])
            layer = {"qkv": _quantize_linear(qkv, attn_gain, digest)}
            layer["out"] = _quantize_linear(sd[p + "self_attn.o_proj.weight"], None, digest)
            layer["gate_up"] = _quantize_linear(gate_up, mlp_gain, digest)
            layer["down"] = _quantize_linear(sd[p + "mlp.down_proj.weight"], None, digest)
            self.layers.append(layer)
        self.head = _quantize_linear(head, sd["model.norm.weight"], digest)
        self.turns = inverse_frequencies(shape.rope_theta, shape.head_dim)
        digest.update(self.turns.tobytes())
        self.model_id = digest.hexdigest()[:16]

    def new_cache(self, lanes: int, capacity: int) -> LlamaCache:
        return LlamaCache(self.shape, lanes, capacity)

    @staticmethod
    def set_threads(threads: int) -> int:
        """Run the kernels on this many threads (results do not depend on it); returns
        the previous count."""
        previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        torch.set_num_threads(max(1, threads))
        return previous

    def _rope(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """cos, sin (hd/2,) of position * frequency, by table interpolation."""
        t = tables()
        turns = position * self.turns
        frac = (turns - np.floor(turns)) * TURN_STEPS
        index = np.minimum(frac.astype(np.int64), TURN_STEPS - 1)
        r = frac - index
        cos = t["cos"][index] + r * (t["cos"][index + 1] - t["cos"][index])
        sin = t["sin"][index] + r * (t["sin"][index + 1] - t["sin"][index])
        return cos, sin

    @staticmethod
    def _normed_product(x: np.ndarray, linear: _Linear, eps: float) -> np.ndarray:
        """RMSNorm(x) @ W (gain folded into W): the norm is one division per row after
        the exact integer product."""
        n, d = x.shape
        ints = np.empty_like(x)
        exponents = np.empty(n, dtype=np.int64)
        squares = np.empty(n)
        quantize_rows(x, ints, exponents, squares)
        acc = linear.integer_product(ints)
        # rms of the integers: x * 2**e has mean square squares/d, so eps scales by 4**e
        rms = np.sqrt(squares / d + eps * np.ldexp(1.0, 2 * exponents))
        return acc * linear.scale[None, :] / rms[:, None]

    @staticmethod
    def _product(x: np.ndarray, linear: _Linear) -> np.ndarray:
        n = x.shape[0]
        ints = np.empty_like(x)
        exponents = np.empty(n, dtype=np.int64)
        squares = np.empty(n)
        quantize_rows(x, ints, exponents, squares)
        acc = linear.integer_product(ints)
        return np.ldexp(acc * linear.scale[None, :], -exponents[:, None])

    def step(self, tokens: np.ndarray, cache: LlamaCache, precision: int) -> np.ndarray:
        """Feed one token per lane (B,) at position ``cache.length``; return the frequency
        tables (B, V) int64 of the next token (each >= 1, rows summing to 2**precision)."""
        s = self.shape
        if cache.length >= cache.capacity:
            raise ConfigError("the cache is full")
        position = cache.length
        rows = len(tokens)
        hd, nh, nkv = s.head_dim, s.heads, s.kv_heads
        half = hd // 2
        cos, sin = self._rope(position)
        t = tables()
        x = self.embedding[tokens].astype(np.float64)
        out = np.empty((rows, nh * hd))
        hidden = np.empty((rows, s.intermediate))
        for layer_index, layer in enumerate(self.layers):
            qkv = self._normed_product(x, layer["qkv"], s.rms_eps)
            q = qkv[:, : nh * hd].reshape(rows, nh, hd)
            k = qkv[:, nh * hd:(nh + nkv) * hd].reshape(rows, nkv, hd)
            v = qkv[:, (nh + nkv) * hd:].reshape(rows, nkv, hd)
            q = np.concatenate([q[..., :half] * cos - q[..., half:] * sin,
                                q[..., half:] * cos + q[..., :half] * sin], axis=-1)
            q = q / math.sqrt(hd)  # sqrt is correctly rounded (IEEE), not a libm table
            k = np.concatenate([k[..., :half] * cos - k[..., half:] * sin,
                                k[..., half:] * cos + k[..., :half] * sin], axis=-1)
            cache.keys[layer_index, :rows, :, :, position] = k
            cache.values[layer_index, :rows, :, position, :] = v
            attention(q.astype(np.float32), cache.keys[layer_index, :rows], cache.values[layer_index, :rows],
                      position + 1, t["exp2"], t["pow2"], out)
            x = x + self._product(out, layer["out"])
            gate_up = self._normed_product(x, layer["gate_up"], s.rms_eps)
            silu_times(gate_up, s.intermediate, t["exp2"], t["pow2"], hidden)
            x = x + self._product(hidden, layer["down"])
        logits = self._normed_product(x, self.head, s.rms_eps)
        freqs = np.empty((rows, s.vocab_size), dtype=np.int64)
        logits_to_frequencies(logits, precision, t["exp2"], t["pow2"], freqs)
        cache.length += 1
        return freqs
