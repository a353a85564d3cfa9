"""Adaptive context mixing around M1 (paq/lpaq-style, compiled with numba).

A static byte LM trained on prose predicts prose well and everything else poorly;
classical compressors win there because they *adapt to the file*. This module adds that
adaptation: each byte is coded as 8 binary decisions (most significant bit first), and
every decision's probability comes from an online logistic mixer over

* M1's prediction for the bit (the byte distribution marginalized over the bits already
  coded), raw and refined by an adaptive map in the order-1 context, when a model is used;
* adaptive contexts: orders 0 to 6, three word contexts (current word, current + previous
  word, previous word + last byte), a column context (byte above in the previous line)
  for tables and indented text, and a sparse context (the two bytes before the last);
  orders >= 2 and the others are hashed into 64-byte buckets of 15 counters (one bucket
  per nibble, checksummed, 2-way);
* a match model that follows the longest earlier occurrence of the last 6 bytes and
  predicts the byte that came next.

Mixer 3 (levels 1-3 now) is mixer 2 with a higher learning rate while a frame is
young (:data:`WARMUP_BOOST`). Mixer 1 (files written before mixer 2): three weight sets (selected by the partial byte;
by M1's confidence, match length and bit position; by the previous byte) averaged in the
logistic domain. Mixer 2 adds

* three hashed contexts: indirect (what followed the last two occurrences of the order-2
  context), line (the line's first two bytes, a record's field tag, with order 2) and
  word skip (the current word with the word two back);
* calibrated counters: each hashed counter's logit averaged with that of an adaptive
  map from (visit count, probability) to what followed, learned on the file;
* two more weight sets (by the byte before the previous one; by the classes of the last
  two bytes, inside-a-word and bit position) and a learned final mixer over the five
  sets' logits (weights chosen by the partial byte) instead of their average.

Mixer 4 (preset ``exact-mixing-4``, levels 1-3) is mixer 3 with a sixth weight set (chosen by
how many hashed orders have met the context before, the last byte's class and the bit
position), a "long" context (the last 10 bytes), M1's probability also refined in the
hashed order-2 context, and a learning rate of 5 instead of 8.

Either mixer's output is refined by two adaptive probability maps (secondary estimation,
order 1 and hashed order 2) and coded with the binary arithmetic coder of
:mod:`terse.entropy.binary_coder`.

Lanes. The compressor codes a frame's segments ("lanes") in lock-step so M1 can run as a
batch. Context statistics are shared by all lanes and updated in the coding order (step
t: lane 0, 1, ...); each lane's contexts are its own previous bytes, and the match model
may point into any lane's bytes that are already known to the decoder at that moment.

Determinism: everything here is integer arithmetic (tables built once with integer
interpolation), so given M1's quantized frequencies the output bytes are a pure function
of the input, on any machine.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from terse.core.errors import ConfigError
from terse.entropy.binary_coder import decode_bit, encode_bit

HASHED_ORDERS = (2, 3, 4, 5, 6)
N_ORDERS = len(HASHED_ORDERS)
_HASHED_ORDERS = np.array(HASHED_ORDERS, dtype=np.int64)
# rows after the orders: the three before "long" are used from mixer version 2 on, "long" from version 4
OTHER_CONTEXTS = ("word_bigram", "word", "previous_word", "column", "sparse", "indirect", "line", "word_skip",
                  "long")
N_HASHED = N_ORDERS + len(OTHER_CONTEXTS)
N_HASHED_V3 = N_HASHED - 1
N_HASHED_V1 = N_HASHED_V3 - 3
LONG_ORDER = 10  # the "long" context (version 4): a development sweep of 8, 10, 14, 20 bytes chose 10
# rows of the hashed tables after the orders, in OTHER_CONTEXTS order
R_WORD_BIGRAM, R_WORD, R_PREVIOUS_WORD, R_COLUMN, R_SPARSE, R_INDIRECT, R_LINE, R_WORD_SKIP, R_LONG = range(N_ORDERS,
                                                                                                   N_HASHED)
# mixer inputs: bias, M1, order 0, order 1, the hashed contexts, match, M1 refined
X_LM, X_ORDER0, X_ORDER1, X_HASHED = 1, 2, 3, 4
X_MATCH = X_HASHED + N_HASHED
X_LM_SSE = X_MATCH + 1  # M1's probability refined in the order-1 context (adapts M1 to the file)
X_LM_SSE2 = X_LM_SSE + 1  # ... and in the hashed order-2 context (version 4)
N_INPUTS = X_LM_SSE2 + 1
# Version 2 calibrates each hashed context's counter: an adaptive map, learned on this file,
# from (visit count, probability) to the probability that actually followed; the mixer sees
# the mean of the counter's and the map's logits.
CAL_COUNTS, CAL_LEVELS = 16, 64  # the map's cells: visit count (capped) x probability level
MATCH_MIN = 6
MATCH_MAX_VERIFY = 32
# Components that can be switched off (ablations): name -> bit of the ``disabled`` mask.
# Bits below N_INPUTS are mixer inputs; "sse" drops the secondary estimation, "mixer2"
# the extra weight sets.
COMPONENTS = {"lm": X_LM, "lm_sse": X_LM_SSE, "order0": X_ORDER0, "order1": X_ORDER1,
              **{f"order{order}": X_HASHED + i for i, order in enumerate(HASHED_ORDERS)},
              **{name: X_HASHED + N_ORDERS + i for i, name in enumerate(OTHER_CONTEXTS)},
              "match": X_MATCH, "lm_sse2": X_LM_SSE2, "sse": N_INPUTS, "mixer2": N_INPUTS + 1, "final_mixer": N_INPUTS + 2,
              "calibrated": N_INPUTS + 3}
OFF_SSE, OFF_MIXER2, OFF_FINAL, OFF_CALIBRATED = (COMPONENTS[name] for name in ("sse", "mixer2", "final_mixer",
                                                                                  "calibrated"))
MIXER_VERSIONS = (1, 2, 3, 4)  # 1: three weight sets averaged; 2: five sets and a learned final mixer;
# 3: 2 + warm-up; 4: 3 + a sixth set, the long context and M1 refined in hashed order 2
# Mixer 3 learns faster while a frame is young: rate x (1 + BOOST * BYTES / (BYTES + bytes
# coded so far)), 5x at the first byte, 3x after 4 KB, ~1.1x after 150 KB. Fresh weights
# are far from where the file wants them. Level 3 on paper1-6, bib and news: -0.47%
# (paper5 -3.3%, paper6 -1.6%); on unseen code, JSON, logs, HTML and an executable -0.4%.
WARMUP_BOOST, WARMUP_BYTES = 4, 4096
SETS_A = 256  # mixer weight set chosen by the partial byte
SETS_B = 8 * 4 * 8  # ... and by (M1 confidence, match length, bit position)
SETS_C = 256  # ... and by the previous byte
SETS_D = 256  # ... and by the byte before it (version 2)
SETS_E = 4 * 4 * 2 * 8  # ... and by (class of the last two bytes, inside a word, bit position) (version 2)
SETS_F = 6 * 4 * 8  # ... and by (hashed orders already seen in this context, class of the last byte, bit position) (version 4)
N_SETS = SETS_A + SETS_B + SETS_C + SETS_D + SETS_E + SETS_F
N_FIRST = 6  # first-layer outputs the final mixer combines (version 2), plus a bias
SETS_FINAL = 256  # final mixer weights chosen by the partial byte
# M1 confidence buckets: top byte probability (of 2**16) at .2 .4 .6 .8 .9 .95 .99
_CONFIDENCE_STEPS = np.array([13107, 26214, 39322, 52429, 58982, 62259, 64881], dtype=np.int64)
_K = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15 as int64: odd multiplicative hash
_INIT_COUNTER = np.uint32(1 << 31)  # p = 0.5, n = 0


def _squash_table() -> np.ndarray:
    """squash(d) = 4096 / (1 + exp(-d / 256)) for d in [-2047, 2047], integers.

    Built by integer interpolation between 33 integer knots so every machine gets the
    same table (the knots are rounded logistic values at d = -2048 + 128 i)."""
    knots = np.array([1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047,
                      2549, 2994, 3348, 3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089,
                      4092, 4093, 4094], dtype=np.int64)
    d = np.arange(-2047, 2048, dtype=np.int64)
    w = d & 127
    i = (d >> 7) + 16
    return ((knots[i] * (128 - w) + knots[np.minimum(i + 1, 32)] * w + 64) >> 7).astype(np.int64)


def _stretch_table(squash: np.ndarray) -> np.ndarray:
    """Inverse of squash: stretch[p] = smallest d with squash(d) >= p, p in [0, 4095]."""
    stretch = np.full(4096, 2047, dtype=np.int64)
    previous = 0
    for d in range(-2047, 2048):
        value = int(squash[d + 2047])
        stretch[previous:value + 1] = d
        previous = max(previous, value + 1)
    return stretch


SQUASH = _squash_table()
STRETCH = _stretch_table(SQUASH)
# Counter adaptation rate 1/(n + 1.5) in 16-bit fixed point: fast at first, then slower.
RECIPROCAL = (65536.0 / (np.arange(1024) + 1.5)).astype(np.int64)


# Columns of LaneState.per_lane.
(L_WORD, L_PREVIOUS_WORD, L_MATCH_LANE, L_MATCH_POS, L_MATCH_LEN, L_LINE_START, L_PREVIOUS_LINE_START,
 L_WORD_BEFORE) = range(8)
N_LANE_FIELDS = 8


class Counters(NamedTuple):
    """Adaptive bit counters (22-bit probability << 10 | visit count) of every context."""

    order0: np.ndarray  # (256,) by partial byte
    order1: np.ndarray  # (65536,) by previous byte and partial byte
    hashed: np.ndarray  # (N_HASHED, buckets * 16): rows R_* and the hashed orders
    match: np.ndarray  # (64,) by match length bucket and expected bit
    followers: np.ndarray  # (65536,) the last two bytes that followed each order-2 context (indirect)
    calibration: np.ndarray  # (N_HASHED, CAL_COUNTS * CAL_LEVELS) 16-bit probabilities (version 2)


class LaneState(NamedTuple):
    """What each lane remembers between bytes, and the match model's index."""

    per_lane: np.ndarray  # (lanes, N_LANE_FIELDS) int64, columns L_*
    match_table: np.ndarray  # hash of the last MATCH_MIN bytes -> lane * stride + position + 1
    stride: int  # lane stride of match_table entries (> any lane length)


class Mixer(NamedTuple):
    """The online mixer and the secondary estimation after it."""

    weights: np.ndarray  # (N_SETS, N_INPUTS) 16.16 fixed point
    final: np.ndarray  # (SETS_FINAL, N_FIRST + 1) 16.16: the second layer over the sets' logits
    apm: np.ndarray  # SSE of the mixed probability by order-1 context (33 knots per context)
    apm_o2: np.ndarray  # ... by hashed order-2 context
    apm_lm: np.ndarray  # SSE of M1's probability by order-1 context
    apm_lm2: np.ndarray  # ... by hashed order-2 context (version 4)


class FrameState(NamedTuple):
    """All adaptive state of one frame (fresh per frame, so frames decode independently)."""

    counters: Counters
    lanes: LaneState
    mixer: Mixer


class Settings(NamedTuple):
    counter_limit: int
    mixer_rate: int
    disabled: int  # bit mask of COMPONENTS
    version: int  # of the mixer: MIXER_VERSIONS


class Curves(NamedTuple):
    squash: np.ndarray
    stretch: np.ndarray
    reciprocal: np.ndarray


def new_frame_state(lanes: int, stride: int, hash_bits: int, version: int) -> FrameState:
    buckets = 1 << hash_bits
    counters = Counters(order0=np.full(256, _INIT_COUNTER, dtype=np.uint32),
                        order1=np.full(1 << 16, _INIT_COUNTER, dtype=np.uint32),
                        hashed=np.zeros((N_HASHED, buckets * 16), dtype=np.uint32),
                        match=np.full(64, _INIT_COUNTER, dtype=np.uint32),
                        followers=np.zeros(1 << 16, dtype=np.int64),
                        calibration=np.tile(np.arange(CAL_LEVELS, dtype=np.int64) * 1024 + 512,
                                            (N_HASHED, CAL_COUNTS)))
    weights = np.zeros((N_SETS, N_INPUTS), dtype=np.int64)
    weights[:, X_LM] = 1 << 16  # start by trusting M1 alone
    final = np.zeros((SETS_FINAL, N_FIRST + 1), dtype=np.int64)
    n_sets = _n_sets(version)
    final[:, :n_sets] = (1 << 16) // n_sets  # start as the plain average of the sets
    apm_row = (SQUASH[np.clip((np.arange(33) - 16) * 128, -2047, 2047) + 2047] * 16).astype(np.int64)
    mixer = Mixer(weights=weights, final=final, apm=np.tile(apm_row, 1 << 16),
                  apm_o2=np.tile(apm_row, 1 << 18).astype(np.int32),
                  apm_lm=np.tile(apm_row, 1 << 16).astype(np.int32),
                  # 34 MB that only version 4 reads: earlier versions get a placeholder of the same type
                  apm_lm2=np.tile(apm_row, 1 << 18 if version >= 4 else 1).astype(np.int32))
    lane_state = LaneState(per_lane=np.zeros((lanes, N_LANE_FIELDS), dtype=np.int64),
                           match_table=np.zeros(1 << hash_bits, dtype=np.int64), stride=stride)
    return FrameState(counters, lane_state, mixer)


CURVES = Curves(SQUASH, STRETCH, RECIPROCAL)


@njit(cache=True)
def _n_sets(version):
    """First-layer weight sets of a mixer version (the final mixer's bias follows them)."""
    return 3 if version == 1 else (5 if version < 4 else 6)


def disabled_mask(names: str) -> int:
    """Comma-separated component names -> bit mask (ConfigError names the valid ones)."""
    mask = 0
    for name in filter(None, (part.strip() for part in names.split(","))):
        if name not in COMPONENTS:
            raise ConfigError(f"unknown component {name!r}; components are {', '.join(COMPONENTS)}")
        mask |= 1 << COMPONENTS[name]
    return mask


def hash_bits_for(frame_bytes: int, max_bits: int) -> int:
    """About one 64-byte bucket per input byte per context, capped (a development
    measurement, context mixing alone on the 14 benchmark files: a 2**19 cap cost +0.03%
    size against 2**20, a 2**18 cap +0.16%)."""
    return int(min(max_bits, max(10, frame_bytes.bit_length())))


@njit(cache=True, inline="always")
def _counter_p(v):
    return np.int64(v) >> 10


@njit(cache=True, inline="always")
def _update_counter(table, i, bit, limit, reciprocal):
    v = np.int64(table[i])
    n = v & 1023
    p = v >> 10
    p += (((bit << 22) - bit - p) * reciprocal[n]) >> 16
    if n < limit:
        n += 1
    table[i] = np.uint32((p << 10) | n)


@njit(cache=True, inline="always")
def _bucket(table, row, h, mask):
    """Index of the 16-slot bucket for hash ``h`` (2-way, checksum in slot 0)."""
    check = ((h >> 40) & 0xFFFFFF) + 1
    i0 = ((h >> 12) & mask) * 16
    i1 = i0 ^ 16
    if table[row, i0] == check:
        return i0
    if table[row, i1] == check:
        return i1
    # replace the less used bucket (its first counter counts visits)
    n0 = np.int64(table[row, i0 + 1]) & 1023
    n1 = np.int64(table[row, i1 + 1]) & 1023
    i = i0 if n0 <= n1 else i1
    table[row, i] = check
    for j in range(1, 16):
        table[row, i + j] = np.uint32(1 << 31)
    return i


@njit(cache=True, inline="always")
def _squash(d, squash):
    if d > 2047:
        d = 2047
    if d < -2047:
        d = -2047
    return squash[d + 2047]


@njit(cache=True, inline="always")
def _byte_class(c):
    """0 letter (or a non-ASCII byte), 1 digit, 2 white space, 3 anything else."""
    if (65 <= c <= 90) or (97 <= c <= 122) or c >= 128:
        return 0
    if 48 <= c <= 57:
        return 1
    if c == 32 or c == 10 or c == 9 or c == 13:
        return 2
    return 3


@njit(cache=True, inline="always")
def _clip_logit(d):
    return min(max(d, -2047), 2047)


@njit(cache=True, inline="always")
def _apm_index(pr, ctx, stretch):
    s = stretch[pr] + 2048  # 1..4095
    lo = s >> 7
    w = s & 127
    return ctx * 33 + lo, w


@njit(cache=True)
def code_steps(t_begin, t_end, matrix, lengths, freqs, use_lm, decoding, coder, buf, state, settings, curves):
    """Code bytes ``t_begin..t_end-1`` of every lane (lane-major within each step).

    Args:
        matrix: (lanes, T) uint8; read when encoding, filled in when decoding.
        lengths: (lanes,) bytes per lane.
        freqs: (lanes, 256) M1 frequencies (rows sum to 2**16) for step ``t_begin``; only
            used when ``use_lm`` (then ``t_end == t_begin + 1``).
        coder, buf: binary coder state and its output (encoding) or input (decoding) bytes.
        state: the frame's :class:`FrameState`, updated in place.
        settings: :class:`Settings`; curves: :data:`CURVES`.
    """
    order0, order1, hashed, match_counters, followers, calibration = state.counters
    lanes_state, match_table, stride = state.lanes
    weights, final, apm, apm_o2, apm_lm, apm_lm2 = state.mixer

    limit, lr, disabled, version = settings
    il2 = wl2 = 0
    lm_sse2 = version >= 4
    n_sets = _n_sets(version)
    n_rows = N_HASHED_V1 if version == 1 else (N_HASHED_V3 if version < 4 else N_HASHED)
    calibrate = version != 1 and not (disabled >> OFF_CALIBRATED) & 1
    cal_cells = np.zeros(N_HASHED, dtype=np.int64)
    dots = np.zeros(N_FIRST, dtype=np.int64)
    probs = np.zeros(N_FIRST, dtype=np.int64)
    sets = np.zeros(N_FIRST, dtype=np.int64)
    squash, stretch, reciprocal = curves
    n_lanes = matrix.shape[0]
    mask = (hashed.shape[1] // 16) - 1
    match_mask = match_table.shape[0] - 1
    x = np.zeros(N_INPUTS, dtype=np.int64)
    x[0] = 256  # bias input
    cum = np.zeros(257, dtype=np.int64)
    bases = np.zeros(N_HASHED, dtype=np.int64)
    ctx_hash = np.zeros(N_HASHED, dtype=np.int64)
    for t in range(t_begin, t_end):
        for lane in range(n_lanes):
            if t >= lengths[lane]:
                continue
            # ---- byte-boundary contexts from this lane's own history ----
            c1 = np.int64(matrix[lane, t - 1]) if t >= 1 else 0
            h = np.int64(0)
            k = 0
            for r in range(N_ORDERS):
                order = _HASHED_ORDERS[r]
                while k < order:
                    byte = np.int64(matrix[lane, t - 1 - k]) if t - 1 - k >= 0 else 0
                    h = (h + byte + 1) * _K
                    k += 1
                ctx_hash[r] = (h + r + 1) * _K
            h6 = ctx_hash[N_ORDERS - 1]  # the longest order: keys the match model
            if version >= 4:
                while k < LONG_ORDER:
                    byte = np.int64(matrix[lane, t - 1 - k]) if t - 1 - k >= 0 else 0
                    h = (h + byte + 1) * _K
                    k += 1
                ctx_hash[R_LONG] = (h + 37) * _K
            word = lanes_state[lane, L_WORD]
            if t >= 1:
                if _byte_class(c1) == 0:  # a letter
                    word = (word + (c1 | 32) + 1) * _K
                elif word != 0:
                    lanes_state[lane, L_WORD_BEFORE] = lanes_state[lane, L_PREVIOUS_WORD]
                    lanes_state[lane, L_PREVIOUS_WORD] = word
                    word = 0
            lanes_state[lane, L_WORD] = word
            ctx_hash[R_WORD_BIGRAM] = ((word * 31 + lanes_state[lane, L_PREVIOUS_WORD]) * _K + (c1 if word == 0 else 0) + 7) * _K
            ctx_hash[R_WORD] = (word * _K + (c1 if word == 0 else 0) + 11) * _K
            # the current word and the one two words back (skipping the previous word)
            ctx_hash[R_WORD_SKIP] = ((word * 37 + lanes_state[lane, L_WORD_BEFORE]) * _K + (c1 if word == 0 else 0) + 31) * _K
            ctx_hash[R_PREVIOUS_WORD] = ((lanes_state[lane, L_PREVIOUS_WORD] * _K + c1) * _K + 13) * _K
            if t >= 1 and c1 == 10:
                lanes_state[lane, L_PREVIOUS_LINE_START] = lanes_state[lane, L_LINE_START]
                lanes_state[lane, L_LINE_START] = t
            column = t - lanes_state[lane, L_LINE_START]
            above_pos = lanes_state[lane, L_PREVIOUS_LINE_START] + column
            above = np.int64(matrix[lane, above_pos]) if above_pos < lanes_state[lane, L_LINE_START] else 0
            ctx_hash[R_COLUMN] = (((above * 256 + c1) * _K + (column if column < 64 else 64)) * _K + 17) * _K
            c2 = np.int64(matrix[lane, t - 2]) if t >= 2 else 0
            c3 = np.int64(matrix[lane, t - 3]) if t >= 3 else 0
            ctx_hash[R_SPARSE] = ((c2 * 256 + c3) * _K + 19) * _K
            sse2_row = ((c2 * 0x2F0F3 + c1 * 0x1F) & 1023) << 8  # hashed order-2 SSE context
            # indirect: what followed the last two times this order-2 context occurred
            ctx_hash[R_INDIRECT] = ((followers[(c2 << 8) | c1] * 256 + c1) * _K + 23) * _K
            # line: the first two bytes of the line (a record's field tag) with order 2
            start = lanes_state[lane, L_LINE_START]
            tag = 0
            if start < t:
                tag = np.int64(matrix[lane, start]) * 256 + (np.int64(matrix[lane, start + 1]) if start + 1 < t else 0)
            ctx_hash[R_LINE] = (((tag * 65536 + c2 * 256 + c1) * _K) + 29) * _K
            sets[3] = SETS_A + SETS_B + SETS_C + c2
            set_e_base = SETS_A + SETS_B + SETS_C + SETS_D + ((_byte_class(c1) * 4 + _byte_class(c2)) * 2
                                                              + (1 if word != 0 else 0)) * 8
            set_f_base = SETS_A + SETS_B + SETS_C + SETS_D + SETS_E + _byte_class(c1) * 8
            for r in range(n_rows):
                bases[r] = _bucket(hashed, r, ctx_hash[r], mask)

            # ---- match model: follow or find the longest earlier occurrence ----
            m_len = lanes_state[lane, L_MATCH_LEN]
            m_lane = lanes_state[lane, L_MATCH_LANE]
            m_pos = lanes_state[lane, L_MATCH_POS]
            if m_len > 0:
                if not (m_pos < lengths[m_lane] and (m_pos < t or (m_pos == t and m_lane < lane))):
                    m_len = 0
            if t >= MATCH_MIN:
                slot = (h6 >> 20) & match_mask
                if m_len == 0:
                    cand = match_table[slot] - 1
                    if cand >= 0:
                        c_lane = cand // stride
                        c_pos = cand % stride
                        if c_pos < lengths[c_lane] and (c_pos < t or (c_pos == t and c_lane < lane)):
                            n = 0
                            while (n < MATCH_MAX_VERIFY and c_pos - 1 - n >= 0 and t - 1 - n >= 0
                                   and matrix[c_lane, c_pos - 1 - n] == matrix[lane, t - 1 - n]):
                                n += 1
                            if n >= MATCH_MIN:
                                m_len = n
                                m_lane = c_lane
                                m_pos = c_pos
                match_table[slot] = lane * stride + t + 1
            expected = np.int64(matrix[m_lane, m_pos]) if m_len > 0 else 0
            missed = m_len == 0
            m_bucket = 0 if m_len == 0 else (1 if m_len < 16 else (2 if m_len < 32 else 3))

            # ---- M1's byte distribution -> per-bit probabilities ----
            confidence = 0
            if use_lm and not (disabled >> X_LM) & 1:
                top = 0
                for s in range(256):
                    f = np.int64(freqs[lane, s])
                    cum[s + 1] = cum[s] + f
                    if f > top:
                        top = f
                for threshold in _CONFIDENCE_STEPS:
                    if top >= threshold:
                        confidence += 1

            c0 = 1
            rate = lr
            if version >= 3:
                rate = lr + (lr * WARMUP_BOOST * WARMUP_BYTES) // (WARMUP_BYTES + t * n_lanes + lane)
            for bit_pos in range(8):
                if bit_pos == 4:
                    for r in range(n_rows):
                        bases[r] = _bucket(hashed, r, (ctx_hash[r] + c0) * _K, mask)
                node = c0 if bit_pos < 4 else ((c0 & ((1 << (bit_pos - 4)) - 1)) | (1 << (bit_pos - 4)))
                # inputs (stretched probabilities, 8.8 fixed point logits)
                if use_lm and not (disabled >> X_LM) & 1:
                    lo = (c0 - (1 << bit_pos)) << (8 - bit_pos)
                    half = 1 << (7 - bit_pos)
                    m0 = cum[lo + half] - cum[lo]
                    m1 = cum[lo + 2 * half] - cum[lo + half]
                    p_lm = (m1 * 4096) // (m0 + m1)
                    if p_lm < 1:
                        p_lm = 1
                    if p_lm > 4095:
                        p_lm = 4095
                    x[X_LM] = stretch[p_lm]
                    il, wl = _apm_index(p_lm, (c1 << 8) | c0, stretch)
                    p_lm_sse = (np.int64(apm_lm[il]) * (128 - wl) + np.int64(apm_lm[il + 1]) * wl) >> 11
                    x[X_LM_SSE] = stretch[min(max(p_lm_sse, 1), 4095)]
                    if lm_sse2:
                        il2, wl2 = _apm_index(p_lm, sse2_row | c0, stretch)
                        p_lm_sse2 = (np.int64(apm_lm2[il2]) * (128 - wl2) + np.int64(apm_lm2[il2 + 1]) * wl2) >> 11
                        x[X_LM_SSE2] = stretch[min(max(p_lm_sse2, 1), 4095)]
                else:
                    x[X_LM] = 0
                    x[X_LM_SSE] = 0
                    il = -1
                x[X_ORDER0] = stretch[_counter_p(order0[c0]) >> 10]
                i1 = (c1 << 8) | c0
                x[X_ORDER1] = stretch[_counter_p(order1[i1]) >> 10]
                seen = 0  # hashed orders that have met this context before (version 4's set F)
                for r in range(n_rows):
                    v = np.int64(hashed[r, bases[r] + node])
                    if r < N_ORDERS and (v & 1023) > 0:
                        seen += 1
                    x[X_HASHED + r] = stretch[(v >> 10) >> 10]
                    if calibrate:
                        n_seen = v & 1023
                        cell = (n_seen if n_seen < CAL_COUNTS else CAL_COUNTS - 1) * CAL_LEVELS + (v >> 26)
                        cal_cells[r] = cell
                        calibrated = stretch[min(max(calibration[r, cell] >> 4, 1), 4095)]
                        x[X_HASHED + r] = (x[X_HASHED + r] + calibrated) >> 1
                match_i = -1
                if not missed:
                    expected_bit = (expected >> (7 - bit_pos)) & 1
                    length_bucket = m_len if m_len < 31 else 31
                    match_i = length_bucket * 2 + expected_bit
                    x[X_MATCH] = stretch[_counter_p(match_counters[match_i]) >> 10]
                else:
                    x[X_MATCH] = 0

                for i in range(1, N_INPUTS):
                    if (disabled >> i) & 1:
                        x[i] = 0
                sets[0] = c0
                sets[1] = SETS_A + (confidence * 4 + m_bucket) * 8 + bit_pos
                sets[2] = SETS_A + SETS_B + c1
                sets[4] = set_e_base + bit_pos
                sets[5] = set_f_base + seen * 32 + bit_pos
                for j in range(n_sets):
                    dot = 0
                    for i in range(N_INPUTS):
                        dot += weights[sets[j], i] * x[i]
                    dots[j] = dot >> 16
                    probs[j] = _squash(dots[j], squash)
                if (disabled >> OFF_MIXER2) & 1:
                    for j in range(1, n_sets):
                        dots[j] = dots[0]
                set_f = c0  # the final mixer's weights are chosen by the partial byte
                if version == 1 or (disabled >> OFF_FINAL) & 1:
                    total = 0
                    for j in range(n_sets):
                        total += dots[j]
                    p_mix = _squash(total // n_sets, squash)  # floor division, as version 1 always did
                else:
                    dot_f = final[set_f, n_sets] * 256
                    for j in range(n_sets):
                        dot_f += final[set_f, j] * _clip_logit(dots[j])
                    p_mix = _squash(dot_f >> 16, squash)
                # secondary estimation (SSE): refine the mixed probability in the order-1 context
                ib, wb = _apm_index(p_mix, i1, stretch)  # i1 = previous byte, partial byte
                p_apm = (apm[ib] * (128 - wb) + apm[ib + 1] * wb) >> 11
                i2 = sse2_row | c0
                ic, wc = _apm_index(p_mix, i2, stretch)
                p_apm2 = (np.int64(apm_o2[ic]) * (128 - wc) + np.int64(apm_o2[ic + 1]) * wc) >> 11
                p = (2 * p_mix + 3 * p_apm + 3 * p_apm2) >> 3
                if (disabled >> OFF_SSE) & 1:
                    p = p_mix
                if p < 1:
                    p = 1
                if p > 4095:
                    p = 4095

                if decoding:
                    bit = decode_bit(coder, buf, p)
                else:
                    bit = (np.int64(matrix[lane, t]) >> (7 - bit_pos)) & 1
                    encode_bit(coder, buf, bit, p)

                # ---- learn ----
                for j in range(n_sets):
                    err = ((bit << 12) - probs[j]) * rate
                    for i in range(N_INPUTS):
                        weights[sets[j], i] += (x[i] * err) >> 14
                if version != 1 and not (disabled >> OFF_FINAL) & 1:
                    err = ((bit << 12) - p_mix) * rate
                    for j in range(n_sets):
                        final[set_f, j] += (_clip_logit(dots[j]) * err) >> 16
                    final[set_f, n_sets] += (256 * err) >> 16
                target = (bit << 16) - bit
                if wb < 64:
                    apm[ib] += (target - apm[ib]) >> 6
                else:
                    apm[ib + 1] += (target - apm[ib + 1]) >> 6
                if lm_sse2 and il >= 0:
                    if wl2 < 64:
                        apm_lm2[il2] += (target - apm_lm2[il2]) >> 6
                    else:
                        apm_lm2[il2 + 1] += (target - apm_lm2[il2 + 1]) >> 6
                if il >= 0:
                    if wl < 64:
                        apm_lm[il] += (target - apm_lm[il]) >> 6
                    else:
                        apm_lm[il + 1] += (target - apm_lm[il + 1]) >> 6
                if wc < 64:
                    apm_o2[ic] += (target - apm_o2[ic]) >> 6
                else:
                    apm_o2[ic + 1] += (target - apm_o2[ic + 1]) >> 6
                _update_counter(order0, c0, bit, limit, reciprocal)
                _update_counter(order1, i1, bit, limit, reciprocal)
                for r in range(n_rows):
                    row = hashed[r]
                    _update_counter(row, bases[r] + node, bit, limit, reciprocal)
                    if calibrate:
                        calibration[r, cal_cells[r]] += (target - calibration[r, cal_cells[r]]) >> 6
                if match_i >= 0:
                    _update_counter(match_counters, match_i, bit, 1023, reciprocal)
                    if bit != ((expected >> (7 - bit_pos)) & 1):
                        missed = True
                c0 = (c0 << 1) | bit

            byte = c0 & 255
            if decoding:
                matrix[lane, t] = byte
            i_follow = (c2 << 8) | c1
            followers[i_follow] = ((followers[i_follow] << 8) | byte) & 0xFFFF
            if m_len > 0 and not missed:
                m_len = m_len + 1 if m_len < 65535 else m_len
                m_pos += 1
            else:
                m_len = 0
            lanes_state[lane, L_MATCH_LANE] = m_lane
            lanes_state[lane, L_MATCH_POS] = m_pos
            lanes_state[lane, L_MATCH_LEN] = m_len
