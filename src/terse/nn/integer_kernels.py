"""Integer kernels of :mod:`terse.nn.integer_gpt` (numba, compiled once and cached).

Everything here is int64 arithmetic on integers (float32 inputs hold integers exactly,
see :mod:`terse.nn.integer_gpt`; the one float64 division, in the frequency tables, is
floored to the exact integer quotient), so each output is a pure function of the inputs on
every machine, whatever its vector units or thread count. The kernels release the GIL:
:class:`terse.nn.integer_gpt.IntegerGPT` runs shards of a batch on several threads.

Requantization convention: ``(value * multiplier + 2**(SHIFT - 1)) >> SHIFT`` rounds
``value * multiplier / 2**SHIFT`` half up (the arithmetic shift floors).
"""

from __future__ import annotations

import numpy as np
from numba import njit

SHIFT = 32
HALF = np.int64(1) << (SHIFT - 1)
LN_FINE_BITS = 7  # the LayerNorm's standard deviation carries 7 fractional bits
LN_CLIP = np.int64(1) << 24  # |x - mean| <= 2**24 and factor <= 2**38: products < 2**62


@njit(cache=True, inline="always")
def _clamp(v, lo, hi):
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


@njit(cache=True, inline="always")
def _isqrt(n):
    """floor(sqrt(n)) for 0 <= n < 2**62, exact (the float guess is corrected)."""
    r = np.int64(np.sqrt(np.float64(n)))
    while r * r > n:
        r -= 1
    while (r + 1) * (r + 1) <= n:
        r += 1
    return r


@njit(cache=True, nogil=True)
def layer_norm(x, inv_scale, out):
    """Integer LayerNorm without affine (folded into the next layer's weights).

    x (B, d) int64 residual; out (B, d) int8 ~= z * inv_scale with z = (x - mean) / std,
    clamped to [-127, 127]: one integer reciprocal of the standard deviation per row
    (32 fractional bits), then a multiply and a rounding shift per element.
    """
    rows, d = x.shape
    for b in range(rows):
        total = np.int64(0)
        for i in range(d):
            total += x[b, i]
        mean = total // d
        square = np.int64(0)
        for i in range(d):
            c = x[b, i] - mean
            square += c * c
        # std with LN_FINE_BITS fractional bits; the variance is a mean of squares
        std = _isqrt((square // d) << (2 * LN_FINE_BITS))
        factor = ((inv_scale << (LN_FINE_BITS + SHIFT)) + std // 2) // std if std > 0 else np.int64(0)
        if factor >= np.int64(1) << 38:  # near-constant row: out is 0 or saturates
            factor = np.int64(1) << 38
        for i in range(d):
            c = x[b, i] - mean
            if c > LN_CLIP:
                c = LN_CLIP
            elif c < -LN_CLIP:
                c = -LN_CLIP
            out[b, i] = _clamp((c * factor + HALF) >> SHIFT, -127, 127)


@njit(cache=True, nogil=True)
def requantize(acc, bias, multiplier, lo, hi, out):
    """out[b, j] = clamp(round((acc[b, j] + bias[j]) * multiplier[j] / 2**SHIFT), lo, hi)."""
    rows, n = acc.shape
    for b in range(rows):
        for j in range(n):
            v = (np.int64(acc[b, j]) + bias[j]) * multiplier[j]
            out[b, j] = _clamp((v + HALF) >> SHIFT, lo, hi)


@njit(cache=True, nogil=True)
def add_to_residual(acc, bias, multiplier, limit, x):
    """x[b, j] += round((acc[b, j] + bias[j]) * multiplier[j] / 2**SHIFT); x stays in +-limit."""
    rows, n = acc.shape
    for b in range(rows):
        for j in range(n):
            v = (np.int64(acc[b, j]) + bias[j]) * multiplier[j]
            x[b, j] = _clamp(x[b, j] + ((v + HALF) >> SHIFT), -limit, limit)


@njit(cache=True, nogil=True)
def rotate_and_store(qkv, n_heads, n_kv_heads, head_dim, cos, sin, fine_bits, q_out, keys, values, slot):
    """Rotary embedding in fixed point, then int8 q (into ``q_out``) and k, v (into the cache).

    qkv (B, (H + 2 Hkv) hd) int64: q, k at 2**fine_bits times their int8 scale, v at its
    int8 scale. cos, sin (hd/2,) int64 with 14 fractional bits. q_out (B, H, hd), keys and
    keys and values (B, Hkv, hd, window) int8.
    """
    rows = qkv.shape[0]
    half = head_dim // 2
    shift = 14 + fine_bits
    rounding = np.int64(1) << (shift - 1)
    for b in range(rows):
        for h in range(n_heads + n_kv_heads):
            base = h * head_dim
            for i in range(half):
                x1 = qkv[b, base + i]
                x2 = qkv[b, base + half + i]
                r1 = _clamp((x1 * cos[i] - x2 * sin[i] + rounding) >> shift, -127, 127)
                r2 = _clamp((x1 * sin[i] + x2 * cos[i] + rounding) >> shift, -127, 127)
                if h < n_heads:
                    q_out[b, h, i] = r1
                    q_out[b, h, half + i] = r2
                else:
                    keys[b, h - n_heads, i, slot] = r1
                    keys[b, h - n_heads, half + i, slot] = r2
        vbase = (n_heads + n_kv_heads) * head_dim
        for h in range(n_kv_heads):
            for i in range(head_dim):
                values[b, h, i, slot] = _clamp(qkv[b, vbase + h * head_dim + i], -127, 127)


# Float32 arithmetic on integers below 2**24 is exact whatever the order of the sums, so
# these loops may be reassociated and fused (vectorized); nothing else is relaxed.
_EXACT_FLOAT = {"reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=_EXACT_FLOAT)
def attention(q, keys, values, filled, score_multiplier, exp_table, value_multiplier, out):
    """Grouped-query attention of one step over the ring buffer, all on integers.

    q (B, H, hd) int16; keys and values (B, Hkv, hd, W) int8 (both transposed: the window
    is the contiguous axis); slots >= ``filled`` are empty. Scores q.k are integers below
    64 * 127**2 < 2**24, summed exactly in float32. Softmax weights are
    e * floor(2**48 / sum e) >> 32 <= 2**16 * e / sum e, with
    e = exp_table[(max - score) * score_multiplier >> SHIFT], so they sum to at most 2**16
    and the weighted sum of values stays below 2**16 * 127 < 2**24 (exact in float32
    too). It is requantized to int8 with ``value_multiplier`` into out (B, H * hd).

    The query heads of a group are processed four at a time (missing ones as zeros), so
    each key and value is loaded once per four heads.
    """
    rows, n_heads, hd = q.shape
    n_kv = keys.shape[1]
    group = n_heads // n_kv
    last = exp_table.shape[0] - 1
    scores = np.empty((4, filled), dtype=np.float32)
    weights = np.zeros((4, filled), dtype=np.float32)
    qf = np.zeros((4, hd), dtype=np.float32)
    acc = np.empty((4, hd), dtype=np.float32)
    for b in range(rows):
        for kv in range(n_kv):
            for first in range(0, group, 4):
                heads = min(4, group - first)
                for j in range(heads):
                    for i in range(hd):
                        qf[j, i] = q[b, kv * group + first + j, i]
                scores[:, :] = 0.0
                # four key rows per pass: each score is loaded and stored once per 16
                # products instead of once per 4 (22% faster attention, dev timing)
                for i in range(0, hd - 3, 4):
                    a0, a1, a2, a3 = qf[0, i], qf[0, i + 1], qf[0, i + 2], qf[0, i + 3]
                    b0, b1, b2, b3 = qf[1, i], qf[1, i + 1], qf[1, i + 2], qf[1, i + 3]
                    c0, c1, c2, c3 = qf[2, i], qf[2, i + 1], qf[2, i + 2], qf[2, i + 3]
                    d0, d1, d2, d3 = qf[3, i], qf[3, i + 1], qf[3, i + 2], qf[3, i + 3]
                    for w in range(filled):
                        k0 = np.float32(keys[b, kv, i, w])
                        k1 = np.float32(keys[b, kv, i + 1, w])
                        k2 = np.float32(keys[b, kv, i + 2, w])
                        k3 = np.float32(keys[b, kv, i + 3, w])
                        scores[0, w] += a0 * k0 + a1 * k1 + a2 * k2 + a3 * k3
                        scores[1, w] += b0 * k0 + b1 * k1 + b2 * k2 + b3 * k3
                        scores[2, w] += c0 * k0 + c1 * k1 + c2 * k2 + c3 * k3
                        scores[3, w] += d0 * k0 + d1 * k1 + d2 * k2 + d3 * k3
                for i in range(hd - hd % 4, hd):
                    q0, q1, q2, q3 = qf[0, i], qf[1, i], qf[2, i], qf[3, i]
                    for w in range(filled):
                        k = np.float32(keys[b, kv, i, w])
                        scores[0, w] += q0 * k
                        scores[1, w] += q1 * k
                        scores[2, w] += q2 * k
                        scores[3, w] += q3 * k
                for j in range(heads):
                    top = np.int64(scores[j, 0])
                    for w in range(1, filled):
                        top = max(top, np.int64(scores[j, w]))
                    total = np.int64(0)
                    for w in range(filled):
                        idx = min(((top - np.int64(scores[j, w])) * score_multiplier) >> SHIFT, last)
                        e = exp_table[idx]
                        scores[j, w] = e  # < 2**17: exact in float32
                        total += e
                    reciprocal = (np.int64(1) << 48) // total
                    for w in range(filled):
                        weights[j, w] = np.float32((np.int64(scores[j, w]) * reciprocal) >> 32)
                for i in range(hd):
                    s0 = np.float32(0.0)
                    s1 = np.float32(0.0)
                    s2 = np.float32(0.0)
                    s3 = np.float32(0.0)
                    for w in range(filled):
                        v = np.float32(values[b, kv, i, w])
                        s0 += weights[0, w] * v
                        s1 += weights[1, w] * v
                        s2 += weights[2, w] * v
                        s3 += weights[3, w] * v
                    acc[0, i] = s0
                    acc[1, i] = s1
                    acc[2, i] = s2
                    acc[3, i] = s3
                for j in range(heads):
                    base = (kv * group + first + j) * hd
                    for i in range(hd):
                        v = np.int64(acc[j, i]) * value_multiplier
                        out[b, base + i] = _clamp((v + HALF) >> SHIFT, -127, 127)
                for j in range(heads, 4):  # keep missing heads at zero for the next group
                    for i in range(hd):
                        qf[j, i] = 0.0


@njit(cache=True, nogil=True)
def gelu_lookup(acc, bias, multiplier, table, out):
    """int8 GELU outputs: table[clamp(round((acc + bias) * m / 2**SHIFT)) + centre]."""
    rows, n = acc.shape
    centre = table.shape[0] // 2
    index = np.empty(n, dtype=np.int64)
    for b in range(rows):
        # two passes: the arithmetic vectorizes once the table lookups are out of its loop (2x)
        for j in range(n):
            v = (np.int64(acc[b, j]) + bias[j]) * multiplier[j]
            index[j] = _clamp((v + HALF) >> SHIFT, -centre, centre) + centre
        for j in range(n):
            out[b, j] = table[index[j]]


@njit(cache=True, nogil=True)
def logits_to_frequencies(acc, bias, multiplier, exp_table, precision, out):
    """Integer logits -> frequency tables (B, V) int64, each >= 1, rows summing to 2**precision.

    e = exp_table[max - logit] (logits in units of the table's step); then the same rule as
    :func:`terse.entropy.quantize.quantize_probabilities`: floor(e * (2**P - V) / sum e) + 1,
    the remainder to the (first) most probable symbol.
    """
    rows, vocab = out.shape
    last = exp_table.shape[0] - 1
    total_freq = np.int64(1) << precision
    logits = np.empty(vocab, dtype=np.int64)
    for b in range(rows):
        top = np.int64(-(1 << 62))
        arg = 0
        for j in range(vocab):
            v = (np.int64(acc[b, j]) + bias[j]) * multiplier[j]
            logits[j] = (v + HALF) >> SHIFT
            if logits[j] > top:
                top = logits[j]
                arg = j
        total = np.int64(0)
        for j in range(vocab):
            idx = top - logits[j]
            e = exp_table[idx if idx < last else last]
            out[b, j] = e
            total += e
        spread = total_freq - vocab
        # floor(e * spread / total) by a float64 division, which vectorizes: the quotient of
        # integers a < 2**53 and b >= 1 rounds (correctly, by IEEE 754) to a float whose floor
        # is a // b, since a non-integer a / b lies at least 1/b > a / (b * 2**53) below the
        # next integer; here a <= 2**20 * 2**24
        total_f = np.float64(total)
        used = np.int64(0)
        for j in range(vocab):
            f = np.int64(np.float64(out[b, j] * spread) / total_f) + 1
            out[b, j] = f
            used += f
        out[b, arg] += total_freq - used
