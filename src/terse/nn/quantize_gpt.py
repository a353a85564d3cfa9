"""Build an :class:`~terse.nn.integer_gpt.IntegerGPT` from a float :class:`~terse.nn.gpt.GPT`.

Post-training quantization with calibration (Jacob et al. 2018, section 3): run the float
network over calibration text, take a high percentile of each activation's magnitude as
its int8 range, fold every LayerNorm's affine into the linear layer after it, quantize
each weight matrix to 7 bits with one scale per output channel, and turn every ratio of
scales into an integer multiplier (``multiplier / 2**32``). Nonlinearities become tables
(exp, GELU, sin) computed here in float64 and stored as integers, so the integer
network never evaluates a transcendental function.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from terse.nn.gpt import GPT, apply_rotary, rotary_tables
from terse.nn.integer_gpt import ROPE_TABLE_BITS, WEIGHT_MAX, IntegerGPT, IntegerGPTConfig
from terse.nn.integer_kernels import SHIFT

ATTENTION_EXP_STEP = 64  # attention scores index the exp table in steps of 1/64 nat
GELU_STEP = 32  # GELU inputs are rounded to 1/32
SAMPLE = 1 << 22  # activations kept per tensor for the percentile


def _magnitude(t: torch.Tensor, percentile: float) -> float:
    flat = t.detach().abs().flatten().double()
    if flat.numel() > SAMPLE:
        flat = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:SAMPLE]]
    return max(float(torch.quantile(flat, percentile)), 1e-8)


@torch.no_grad()
def calibration_ranges(model: GPT, idx: torch.Tensor, percentile: float = 0.9999) -> dict[str, float]:
    """Run the float network over idx (B, T) and return each activation's range."""
    g = model.config
    B, T = idx.shape
    cos, sin = rotary_tables(torch.arange(T), g.head_dim, g.rope_base)
    mask = model.window_mask(T)
    group = g.n_heads // g.n_kv_heads
    ranges: dict[str, float] = {}
    x = model.embed(idx).float()
    for layer, block in enumerate(model.blocks):
        p = f"blocks.{layer}."
        ranges[p + "ln_attn"] = _magnitude(F.layer_norm(x, (g.d_model,)), percentile)
        q, k, v = block._split_heads(block.ln_attn(x))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        ranges[p + "q"], ranges[p + "k"], ranges[p + "v"] = (_magnitude(t, percentile) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                                           attn_mask=mask)
        ranges[p + "y"] = _magnitude(y, percentile)
        x = x + block.attn_out(y.transpose(1, 2).reshape(B, T, g.d_model))
        ranges[p + "ln_mlp"] = _magnitude(F.layer_norm(x, (g.d_model,)), percentile)
        h = block.mlp_in(block.ln_mlp(x))
        ranges[p + "mlp_in"] = float(h.abs().max())
        gelu = F.gelu(h, approximate="tanh")
        ranges[p + "gelu"] = _magnitude(gelu, percentile)
        x = x + block.mlp_out(gelu)
    ranges["ln_final"] = _magnitude(F.layer_norm(x, (g.d_model,)), percentile)
    ranges["residual"] = float(x.abs().max())
    return ranges


def _fold(linear: torch.nn.Linear, norm: torch.nn.LayerNorm | None) -> tuple[torch.Tensor, torch.Tensor]:
    """W (out, in) and b (out,) in float64 with the preceding LayerNorm's affine folded in."""
    w = linear.weight.double()
    b = linear.bias.double() if linear.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if norm is not None:
        b = b + w @ norm.bias.double()
        w = w * norm.weight.double()[None, :]
    return w, b


def _linear(w: torch.Tensor, b: torch.Tensor, input_scale: float, output_scale: torch.Tensor | float
            ) -> dict[str, torch.Tensor]:
    """Quantize y = W a + b for int8 inputs at ``input_scale`` to outputs in units of
    ``output_scale`` (per output channel): int7 weights (K, N), int bias, multiplier."""
    channel_scale = (w.abs().amax(dim=1) / WEIGHT_MAX).clamp_min(1e-12)  # (out,)
    weight = torch.round(w / channel_scale[:, None]).clamp(-WEIGHT_MAX, WEIGHT_MAX)
    acc_scale = input_scale * channel_scale
    bias = torch.round(b / acc_scale)
    multiplier = torch.round(acc_scale / torch.as_tensor(output_scale, dtype=torch.float64) * 2.0**SHIFT)
    return {"weight": weight.T.contiguous().to(torch.int8), "bias": bias.to(torch.int64),
            "multiplier": multiplier.to(torch.int64)}


def _exp_table(step: int, nats: float, one: int) -> torch.Tensor:
    i = torch.arange(int(step * nats) + 1, dtype=torch.float64)
    table = torch.round(one * torch.exp(-i / step)).to(torch.int64)
    table[-1] = 0
    return table


def _ln_scale(magnitude: float) -> int:
    """Integer inverse scale of a LayerNorm output so that its range maps to +-127."""
    return int(min(1024, max(1, math.floor(127 / magnitude))))


@torch.no_grad()
def quantize_gpt(model: GPT, calibration: torch.Tensor, percentile: float = 0.9999,
                 config: IntegerGPTConfig | None = None) -> tuple[IntegerGPTConfig, dict[str, torch.Tensor]]:
    """Quantize ``model`` using calibration ids (B, T); returns (config, integer tensors)."""
    g = model.config
    if g.two_level_vocab:
        raise ValueError("integer inference serves byte LMs (no two-level vocabulary)")
    config = config or IntegerGPTConfig(network=g.to_dict())
    r = calibration_ranges(model.float().eval(), calibration, percentile)
    residual_scale = 2.0 ** -config.residual_bits
    tensors: dict[str, torch.Tensor] = {}
    ln_scales = []
    embed = torch.round(model.embed.weight.double() / residual_scale)
    tensors["embed"] = embed.clamp(-config.residual_limit, config.residual_limit).to(torch.int32)
    hd, fine = g.head_dim, 2.0 ** config.fine_bits
    for layer, block in enumerate(model.blocks):
        p = f"blocks.{layer}."
        ln_attn = _ln_scale(r[p + "ln_attn"])
        ln_mlp = _ln_scale(r[p + "ln_mlp"])
        ln_scales += [ln_attn, ln_mlp]
        s_q, s_k, s_v, s_y = (r[p + name] / 127 for name in ("q", "k", "v", "y"))
        kv = g.n_kv_heads * hd
        out_scale = torch.cat([torch.full((g.d_model,), s_q / fine), torch.full((kv,), s_k / fine),
                               torch.full((kv,), s_v)]).double()
        for name, t in _linear(*_fold(block.qkv, block.ln_attn), 1 / ln_attn, out_scale).items():
            tensors[p + "qkv." + name] = t
        score = s_q * s_k / math.sqrt(hd) * ATTENTION_EXP_STEP
        tensors[p + "score_multiplier"] = torch.tensor([round(score * 2.0**SHIFT)], dtype=torch.int64)
        tensors[p + "value_multiplier"] = torch.tensor([round(2.0**-16 * s_v / s_y * 2.0**SHIFT)], dtype=torch.int64)
        for name, t in _linear(*_fold(block.attn_out, None), s_y, residual_scale).items():
            tensors[p + "attn_out." + name] = t
        for name, t in _linear(*_fold(block.mlp_in, block.ln_mlp), 1 / ln_mlp, 1 / GELU_STEP).items():
            tensors[p + "mlp_in." + name] = t
        half = min(8192, math.ceil(r[p + "mlp_in"] * GELU_STEP) + 1)
        s_gelu = r[p + "gelu"] / 127
        u = torch.arange(-half, half + 1, dtype=torch.float64) / GELU_STEP
        tensors[p + "gelu"] = torch.round(F.gelu(u, approximate="tanh") / s_gelu).clamp(-127, 127).to(torch.int8)
        for name, t in _linear(*_fold(block.mlp_out, None), s_gelu, residual_scale).items():
            tensors[p + "mlp_out." + name] = t
    ln_final = _ln_scale(r["ln_final"])
    ln_scales.append(ln_final)
    tensors["ln_scale"] = torch.tensor(ln_scales, dtype=torch.int64)
    for name, t in _linear(*_fold(model.head, model.ln_final), 1 / ln_final,
                           1 / config.logit_step).items():
        tensors["head." + name] = t
    tensors["attention_exp"] = _exp_table(ATTENTION_EXP_STEP, 16, 1 << 16)
    tensors["logit_exp"] = _exp_table(config.logit_step, 24, 1 << 20)
    inv_freq = g.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    tensors["rope_omega"] = torch.round(inv_freq / (2 * math.pi) * 2.0**32).to(torch.int64)
    steps = 1 << ROPE_TABLE_BITS
    tensors["rope_sin"] = torch.round(torch.sin(torch.arange(steps, dtype=torch.float64) * 2 * math.pi / steps)
                                      * (1 << 14)).to(torch.int64)
    IntegerGPT(config, tensors)  # validates every bound the exactness argument needs
    return config, tensors


def code_length_bits(network: IntegerGPT, lanes: np.ndarray, precision: int = 16) -> float:
    # (used by benchmarks to measure what quantization costs)
    """Ideal code length in bits of the (lanes, T) uint8 matrix under ``network``."""
    cache = network.new_cache(len(lanes))
    tokens = np.full(len(lanes), 256, dtype=np.int64)
    bits = 0.0
    rows = np.arange(len(lanes))
    for t in range(lanes.shape[1]):
        freqs = network.step(tokens, cache, precision)
        bits += float(np.sum(precision - np.log2(freqs[rows, lanes[:, t]])))
        tokens = lanes[:, t].astype(np.int64)
    return bits
