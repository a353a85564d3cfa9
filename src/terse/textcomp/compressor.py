"""Lossless neural text compression: M1 byte LM + range coding, optionally adaptive.

Input is cut into frames (bounded memory for any input size); each frame is split into
``lanes`` equal segments that are coded in lock-step as one batch: at step t the model
predicts byte t of every segment from that segment's own history (sliding-window KV
cache), and all those symbols are range-coded in one vectorized call. The network is M1's integer
version (:class:`~terse.nn.integer_gpt.IntegerGPT`, format version 3): it computes the
same frequency tables on every CPU, thread count and batch split, so a file decodes on
any machine. Files of format versions 1-2 (float M1) still decode where their float
kernels match the encoder's; a mismatch fails the CRC32 check (an error, never wrong
output).

With ``mixing`` on, M1's predictions are not coded directly: they are
one input of an adaptive context-mixing model (:mod:`terse.textcomp.context_mixing`)
that learns the file while coding, and bits are coded with a binary arithmetic coder.
``neural=False`` (or level 1) gives a pure context-mixing compressor (no network, fast).

:func:`load_compressor` makes a :class:`TextCompressor`; ``compress``/``decompress`` and
their stream versions are one-call wrappers of it.
"""

from __future__ import annotations

import io
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from terse.core import container
from terse.core.config import FrozenConfig
from terse.core.cores import ThreadGovernor
from terse.core.errors import ArtifactError, ConfigError, FormatError, ModelMismatchError
from terse.entropy.quantize import quantize_probabilities
from terse.entropy.range_coder import RangeDecoder, RangeEncoder
from terse.nn.integer_gpt import MIN_SHARD_ROWS, torch_threads
from terse.textcomp.model import BOS, ByteLM, load_byte_lm, load_integer_lm
from terse.textcomp.token_lm import TokenLM, load_token_lm

logger = logging.getLogger(__name__)

FORMAT = "textcomp"
FORMAT_VERSION = 3  # integer M1: decodes on every machine
READABLE_VERSIONS = (1, 2, 3, 4)  # 1: float M1 + range coder; 2: float M1 + context mixing; 4: token LM


COMPUTE_MODES = ("integer", "bf16", "fp32")
NETWORKS = ("m1", "token-lm")
LOAD_LOOK_SECONDS = 5.0  # how often level 4 re-reads the machine's load
_GOVERNOR = ThreadGovernor()  # threads follow the cores other processes leave free


@dataclass(frozen=True)
class CoderParams(FrozenConfig):
    """How a file is coded; stored in the header and reused by the decoder.

    Attributes:
        precision: bits of the integer frequency tables (every byte keeps >= 2**-precision).
        max_lanes: most segments coded as one batch (speed; more lanes = more restarts).
        min_segment_bytes: segments are at least this long (ratio: each segment restarts
            the model's context).
        frame_bytes: input bytes per independently coded frame (memory bound).
        threads: torch threads of the float network (format 1-2 files; results may
            depend on it). The integer network uses every core and its results do not.
        compute: how M1 computes: "integer" (exact on every machine: format 3), or the
            float network of format 1-2 files, "bf16" (autocast) or "fp32".
        eol_transform: code CRLF-only frames as LF (exactly invertible; M1 learned LF text).
        allow_stored: store a frame raw when coding would not make it smaller (so
            incompressible input grows by the container overhead only).
        mixing: code bits through the adaptive context mixer (M1 is one of its inputs).
        hash_bits: log2 of the largest context-table size (2**hash_bits buckets of 64 B
            per hashed context; smaller frames get smaller tables).
        counter_limit: context counters adapt at rate 1/(n+1.5), n capped here
            (lower adapts faster, higher averages longer).
        mixer_rate: learning rate of the online mixer.
        mixer: generation of the mixer (1: three weight sets averaged, as in every file
            written before mixer 2 existed; 2: five weight sets and a learned final mixer;
            3: mixer 2 learning faster while a frame is young; 4: mixer 3 with a sixth weight
            set, an order-10 context and M1 refined in the order-2 context).
        x86_transform: code frames that look like x86 machine code with relative branch
            targets made absolute (:mod:`terse.textcomp.x86`; exactly invertible).
        disable: comma-separated context-mixing components to switch off (ablations;
            see :data:`terse.textcomp.context_mixing.COMPONENTS`).
        fallback: also code each frame by context mixing alone and keep the smaller
            (files the network only hurts, such as logs and binaries, stay as small as
            at level 1); the frame header says which.
        network: "m1" (a byte LM) or "token-lm": a pretrained LM that codes each text
            frame as its own tokens (:mod:`terse.textcomp.token_lm`; the max-ratio level,
            format 4), with context mixing alone for frames that are not text.
        segment_tokens: tokens per lane of a "token-lm" frame (its context; lanes restart).
    """

    precision: int = 16
    max_lanes: int = 512
    min_segment_bytes: int = 1024
    frame_bytes: int = 1 << 20
    threads: int = 2
    compute: str = "bf16"
    eol_transform: bool = True
    allow_stored: bool = True
    mixing: bool = False
    hash_bits: int = 19
    counter_limit: int = 255
    mixer_rate: int = 8
    mixer: int = 1
    x86_transform: bool = False
    disable: str = ""
    fallback: bool = False
    network: str = "m1"
    segment_tokens: int = 8192

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ConfigError(f"network must be one of {NETWORKS}")
        if not 1 <= self.segment_tokens <= 1 << 16:
            raise ConfigError("segment_tokens must be in [1, 65536]")
        if not 9 <= self.precision <= 24:
            raise ConfigError("precision must be in [9, 24] (256 symbols need at least 9 bits)")
        if self.max_lanes < 1 or self.min_segment_bytes < 1 or self.frame_bytes < 1 or self.threads < 1:
            raise ConfigError("max_lanes, min_segment_bytes, frame_bytes and threads must be >= 1")
        if self.frame_bytes > 1 << 26 or self.max_lanes > 1 << 14:
            raise ConfigError("frame_bytes must be <= 64 MiB and max_lanes <= 16384 (memory bound)")
        if self.compute not in COMPUTE_MODES:
            raise ConfigError(f"compute must be one of {COMPUTE_MODES}")
        if not 10 <= self.hash_bits <= 24:
            raise ConfigError("hash_bits must be in [10, 24] (tables of 64 KiB to 1 GiB per context)")
        if not 1 <= self.counter_limit <= 1023 or not 1 <= self.mixer_rate <= 64:
            raise ConfigError("counter_limit must be in [1, 1023] and mixer_rate in [1, 64]")
        from terse.textcomp.context_mixing import MIXER_VERSIONS, disabled_mask

        if self.mixer not in MIXER_VERSIONS:
            raise ConfigError(f"mixer must be one of {MIXER_VERSIONS}")

        disabled_mask(self.disable)  # validates the names

    def lanes_for(self, length: int) -> int:
        return max(1, min(self.max_lanes, length // self.min_segment_bytes))


# Named parameter sets: a header stores the name instead of the full dict. The defaults
# above are those of format 1-2 files (a header stores only what differs from them).
EXACT_STATIC = CoderParams(compute="integer")
EXACT_MIXING_V1 = CoderParams(compute="integer", mixing=True, fallback=True)  # levels 1-3 before mixer 2
EXACT_MIXING_V2 = EXACT_MIXING_V1.replace(mixer=2, x86_transform=True)  # levels 1-3 before mixer 3
EXACT_MIXING_V3 = EXACT_MIXING_V2.replace(mixer=3)  # levels 1-3 before mixer 4
EXACT_MIXING = EXACT_MIXING_V3.replace(mixer=4, mixer_rate=5)
# the max-ratio level: the token LM's KV cache takes ~46 kB per token (SmolLM2-135M), so
# frames of 256 KiB (~70k tokens, ~3.4 GB) bound its memory; its context-mixing frames
# (binary data) use mixer 2
EXACT_TOKEN_LM = EXACT_MIXING_V2.replace(network="token-lm", precision=24, frame_bytes=1 << 18)
CODER_PRESETS = {"bf16": CoderParams(), "fp32": CoderParams(compute="fp32"), "exact": EXACT_STATIC,
                 "exact-mixing": EXACT_MIXING_V1, "exact-mixing-2": EXACT_MIXING_V2, "exact-token-lm": EXACT_TOKEN_LM,
                 "exact-mixing-3": EXACT_MIXING_V3, "exact-mixing-4": EXACT_MIXING}


def _params_to_header(params: CoderParams) -> str | dict:
    """A preset name, else only the fields that differ from the defaults (the defaults are
    part of the format: changing one means a new format version)."""
    for name, preset in CODER_PRESETS.items():
        if preset == params:
            return name
    defaults = CoderParams().to_dict()
    return {key: value for key, value in params.to_dict().items() if value != defaults[key]}


def _params_from_header(value) -> CoderParams:
    if isinstance(value, str):
        if value not in CODER_PRESETS:
            raise FormatError(f"unknown coder preset {value!r} (made by a newer terse?)")
        return CODER_PRESETS[value]
    try:
        return CoderParams.from_dict(value)
    except ValueError as exc:
        raise FormatError(f"corrupted file: bad coder parameters ({exc})") from None


def segment_lengths(length: int, lanes: int) -> np.ndarray:
    """Split ``length`` bytes into ``lanes`` near-equal segments (first ones 1 longer)."""
    base, extra = divmod(length, lanes)
    return np.array([base + 1] * extra + [base] * (lanes - extra), dtype=np.int64)


def _compute_context(params: CoderParams):
    """One autocast region per frame: its weight-cast cache then converts each weight to
    bf16 once per frame instead of once per step."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=params.compute == "bf16")


def _code_lanes(lm: ByteLM, params: CoderParams, lengths: np.ndarray,
                code_column: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
                on_step: Callable[[int], None] | None) -> None:
    """Run M1 in lock-step over the lanes of one frame; the one loop both directions share.

    At step t, ``code_column(t, active, freqs)`` gets the (lanes, 256) frequency tables of
    byte t of every lane and the mask of lanes still that long; it encodes (or decodes)
    the active lanes' bytes and returns byte t of every lane (lanes,), the next input.
    """
    lanes = len(lengths)
    if lm.exact:
        # the integer network shards lanes over threads; few lanes make one shard anyway
        cache = lm.model.new_cache(lanes, _GOVERNOR.threads() if lanes >= 2 * MIN_SHARD_ROWS else 1)
        inputs = np.full(lanes, BOS, dtype=np.int64)
        for t in range(int(lengths.max())):
            freqs = lm.model.step(inputs, cache, params.precision)
            active = lengths > t
            inputs = code_column(t, active, freqs).astype(np.int64)
            if on_step is not None:
                on_step(int(active.sum()))
        return
    with _compute_context(params):
        cache = lm.model.new_cache(lanes, dtype=torch.bfloat16 if params.compute == "bf16" else torch.float32)
        inputs = torch.full((lanes,), BOS, dtype=torch.int64)
        for t in range(int(lengths.max())):
            logits = lm.model.step(inputs, cache)
            probs = torch.softmax(logits[:, :256].float(), dim=-1).numpy()
            freqs = quantize_probabilities(probs, params.precision)
            active = lengths > t
            inputs = torch.from_numpy(code_column(t, active, freqs).astype(np.int64))
            if on_step is not None:
                on_step(int(active.sum()))


def _lanes(lm: ByteLM | None, params: CoderParams, length: int) -> int:
    """Lanes exist to batch M1; without a network one lane keeps all context."""
    return params.lanes_for(length) if lm is not None else 1


def _mix_frame(lm: ByteLM | None, params: CoderParams, matrix: np.ndarray, lengths: np.ndarray,
               payload: bytes | None, on_step: Callable[[int], None] | None,
               replay: Sequence[np.ndarray] | None = None) -> bytes:
    """Code (``payload is None``) or decode (into ``matrix``) one frame with context mixing.

    ``replay``: M1's (lanes, 256) frequencies of every step, recorded earlier, used instead
    of running the network (benchmarks replay them to compare mixer settings quickly).
    """
    from terse.entropy import binary_coder
    from terse.textcomp import context_mixing as cm

    decoding = payload is not None
    length = int(lengths.sum())
    state = cm.new_frame_state(len(lengths), matrix.shape[1] + 1, cm.hash_bits_for(length, params.hash_bits),
                               params.mixer)
    settings = cm.Settings(params.counter_limit, params.mixer_rate, cm.disabled_mask(params.disable), params.mixer)
    coder = binary_coder.new_state()
    if decoding:
        buf = np.frombuffer(payload, dtype=np.uint8).copy()  # one compiled signature for both ways
        binary_coder.start_decoder(coder, buf)
    else:
        # at most 4 bytes per coded bit; untouched pages of np.empty cost nothing
        buf = np.empty(32 * length + 64, dtype=np.uint8)

    def run(t_begin: int, t_end: int, freqs: np.ndarray, use_lm: bool) -> None:
        cm.code_steps(t_begin, t_end, matrix, lengths, freqs, use_lm, decoding, coder, buf, state, settings,
                      cm.CURVES)

    if replay is not None:
        for t, freqs in enumerate(replay):
            run(t, t + 1, np.asarray(freqs, dtype=np.int64), True)
    elif lm is None:
        run(0, int(lengths.max()), np.zeros((1, 256), dtype=np.int64), False)
        if on_step is not None:
            on_step(length)
    else:
        def code_column(t: int, active: np.ndarray, freqs: np.ndarray) -> np.ndarray:
            run(t, t + 1, freqs, True)
            return matrix[:, t]

        _code_lanes(lm, params, lengths, code_column, on_step)
    if decoding:
        return b""
    return buf[:binary_coder.finish_encoder(coder, buf)].tobytes()


def _lane_matrix(frame: bytes, lengths: np.ndarray) -> np.ndarray:
    """(lanes, max_len) uint8 matrix of the segments, zero-padded."""
    matrix = np.zeros((len(lengths), int(lengths.max())), dtype=np.uint8)
    data = np.frombuffer(frame, dtype=np.uint8)
    start = 0
    for lane, n in enumerate(lengths):
        matrix[lane, :n] = data[start:start + n]
        start += n
    return matrix


def is_crlf_text(frame: bytes) -> bool:
    """True when every line ends in CRLF (no lone CR or LF), so CRLF -> LF is invertible."""
    crlf = frame.count(b"\r\n")
    return crlf > 0 and frame.count(b"\r") == crlf and frame.count(b"\n") == crlf


def prepare_frame(params: CoderParams, frame: bytes) -> tuple[dict, bytes]:
    """The chunk meta so far (CRC, line-ending or x86 transform, length) and the bytes to code."""
    meta = {"crc": zlib.crc32(frame)}
    if params.eol_transform and is_crlf_text(frame):
        # M1 learned LF text; a CR before every LF would cost ~2 bytes per line. The
        # transform is exactly invertible because the frame has no lone CR or LF.
        frame = frame.replace(b"\r\n", b"\n")
        meta["eol"] = "crlf"
    elif params.x86_transform:
        from terse.textcomp.x86 import encode_x86, looks_like_x86

        if looks_like_x86(frame):
            frame = encode_x86(frame)
            meta["x86"] = 1
    meta["n"] = len(frame)
    return meta, frame


def _token_lengths(count: int, params: CoderParams) -> np.ndarray:
    return segment_lengths(count, max(1, -(-count // params.segment_tokens)))


def _code_token_lanes(lm: TokenLM, params: CoderParams, lengths: np.ndarray,
                      code_column: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
                      on_step: Callable[[int], None] | None) -> None:
    """The token LM in lock-step over the lanes of one frame (as :func:`_code_lanes`):
    every lane starts at BOS; ``code_column`` gets the (lanes, V) tables of step t."""
    lanes = len(lengths)
    cache = lm.model.new_cache(lanes, int(lengths.max()))
    inputs = np.full(lanes, lm.bos, dtype=np.int64)
    sizes = np.array([len(piece) for piece in lm.token_bytes], dtype=np.int64)
    previous, next_look = None, 0.0
    try:
        for t in range(int(lengths.max())):
            if time.monotonic() >= next_look:  # a frame takes minutes: follow the machine's load
                threads = lm.model.set_threads(_GOVERNOR.threads())
                previous = threads if previous is None else previous
                next_look = time.monotonic() + LOAD_LOOK_SECONDS
            freqs = lm.model.step(inputs, cache, params.precision)
            active = lengths > t
            inputs = code_column(t, active, freqs).astype(np.int64)
            if on_step is not None:
                on_step(int(sizes[inputs[active]].sum()))
    finally:
        if previous is not None:
            lm.model.set_threads(previous)


def _looks_like_text(frame: bytes) -> bool:
    """At most 1% of the bytes outside valid UTF-8 (those cost a byte token each)."""
    return len(frame) - len(frame.decode("utf-8", errors="ignore").encode("utf-8")) <= len(frame) // 100


def _compress_tokens(lm: TokenLM, params: CoderParams, frame: bytes,
                     on_step: Callable[[int], None] | None) -> tuple[int, bytes] | None:
    """(token count, payload) of a text frame coded by the token LM; None if not text."""
    if not frame or not _looks_like_text(frame):
        return None
    try:
        tokens = lm.tokenize(frame)
    except ConfigError:
        return None
    lengths = _token_lengths(len(tokens), params)
    matrix = np.zeros((len(lengths), int(lengths.max())), dtype=np.int64)
    start = 0
    for lane, n in enumerate(lengths):
        matrix[lane, :n] = tokens[start:start + n]
        start += n
    encoder = RangeEncoder()

    def encode_column(t: int, active: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        encoder.encode(matrix[active, t], freqs[active])
        return matrix[:, t]

    _code_token_lanes(lm, params, lengths, encode_column, on_step)
    return len(tokens), encoder.finish()


def _decompress_tokens(lm: TokenLM, params: CoderParams, count, payload: bytes,
                       on_step: Callable[[int], None] | None) -> bytes:
    if not (isinstance(count, int) and 1 <= count <= params.frame_bytes):
        raise FormatError("corrupted file: invalid token count")
    lengths = _token_lengths(count, params)
    matrix = np.zeros((len(lengths), int(lengths.max())), dtype=np.int64)
    decoder = RangeDecoder(payload)

    def decode_column(t: int, active: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        matrix[active, t] = decoder.decode(freqs[active])
        return matrix[:, t]

    _code_token_lanes(lm, params, lengths, decode_column, on_step)
    return b"".join(lm.detokenize(matrix[lane, :n]) for lane, n in enumerate(lengths))


def _compress_token_frame(lm: TokenLM | None, params: CoderParams, meta: dict, frame: bytes,
                          on_step: Callable[[int], None] | None) -> bytes:
    """A text frame as tokens, or by context mixing alone when that is smaller or the
    frame is not text (``meta["alone"]``)."""
    coded = _compress_tokens(lm, params, frame, on_step) if lm is not None else None
    alone = None
    if coded is None or params.fallback:
        single = segment_lengths(len(frame), 1)
        alone = _mix_frame(None, params, _lane_matrix(frame, single), single, None, None)
    if coded is None or (alone is not None and len(alone) < len(coded[1])):
        meta["alone"] = 1
        return alone
    meta["tokens"] = coded[0]
    return coded[1]


def compress_frame(lm: ByteLM | TokenLM | None, params: CoderParams, frame: bytes,
                   on_step: Callable[[int], None] | None = None) -> tuple[dict, bytes]:
    """Code one frame -> (chunk meta, payload): range-coded, or the frame itself when coding
    would not make it smaller (always so for an empty frame)."""
    meta, frame = prepare_frame(params, frame)
    if params.network == "token-lm":
        payload = _compress_token_frame(lm, params, meta, frame, on_step) if frame else b""
        if params.allow_stored and len(payload) >= meta["n"]:
            meta.pop("tokens", None)
            meta.pop("alone", None)
            meta["stored"] = 1
            return meta, frame
        return meta, payload
    lengths = segment_lengths(len(frame), _lanes(lm, params, len(frame)))
    matrix = _lane_matrix(frame, lengths)
    if params.mixing:
        payload = _mix_frame(lm, params, matrix, lengths, None, on_step)
        if params.fallback and lm is not None:
            alone = _mix_frame(None, params, _lane_matrix(frame, segment_lengths(len(frame), 1)),
                               segment_lengths(len(frame), 1), None, None)
            if len(alone) < len(payload):
                meta["alone"] = 1  # coded by context mixing alone
                payload = alone
    else:
        encoder = RangeEncoder()

        def encode_column(t: int, active: np.ndarray, freqs: np.ndarray) -> np.ndarray:
            encoder.encode(matrix[active, t], freqs[active])
            return matrix[:, t]

        _code_lanes(lm, params, lengths, encode_column, on_step)
        payload = encoder.finish()
    if params.allow_stored and len(payload) >= meta["n"]:
        meta["stored"] = 1
        return meta, frame
    return meta, payload


def decompress_frame(lm: ByteLM | None, params: CoderParams, meta: dict, payload: bytes,
                     on_step: Callable[[int], None] | None = None) -> bytes:
    length = meta.get("n")
    if not (isinstance(length, int) and 0 <= length <= params.frame_bytes):
        raise FormatError("corrupted file: invalid frame header")
    if meta.get("stored"):
        if len(payload) != length:
            raise FormatError("corrupted file: stored frame has the wrong length")
        return _restore_frame(payload, meta)
    if meta.get("alone"):
        if not (params.mixing and (params.fallback or params.network == "token-lm")):
            raise FormatError("corrupted file: a frame coded without the network in a file that allows none")
        lm = None
    elif params.network == "token-lm":
        frame = _decompress_tokens(lm, params, meta.get("tokens"), payload, on_step)
        if len(frame) != length:
            raise FormatError("corrupted file: the decoded frame has the wrong length")
        return _restore_frame(frame, meta)
    lengths = segment_lengths(length, _lanes(lm, params, length))
    matrix = np.zeros((len(lengths), int(lengths.max())), dtype=np.uint8)
    if params.mixing:
        _mix_frame(lm, params, matrix, lengths, payload, on_step)
    else:
        decoder = RangeDecoder(payload)

        def decode_column(t: int, active: np.ndarray, freqs: np.ndarray) -> np.ndarray:
            matrix[active, t] = decoder.decode(freqs[active])
            return matrix[:, t]

        _code_lanes(lm, params, lengths, decode_column, on_step)
    return _restore_frame(b"".join(matrix[lane, :n].tobytes() for lane, n in enumerate(lengths)), meta)


def _restore_frame(frame: bytes, meta: dict) -> bytes:
    """Undo the line-ending or x86 transform and verify the frame's CRC32."""
    if "x86" in meta:
        if meta["x86"] != 1:
            raise FormatError(f"unknown x86 transform {meta['x86']!r}")
        from terse.textcomp.x86 import decode_x86

        frame = decode_x86(frame)
    if meta.get("eol") == "crlf":
        frame = frame.replace(b"\n", b"\r\n")
    elif "eol" in meta:
        raise FormatError(f"unknown line-ending transform {meta['eol']!r}")
    if zlib.crc32(frame) != meta.get("crc"):
        raise FormatError("decoded data fails its CRC32 check (corrupted file, or decoded on a machine "
                          "whose float kernels differ from the encoder's)")
    return frame


def format_version(params: CoderParams) -> int:
    """4 for the token LM; 3 for the integer M1 (and context mixing alone); 2 and 1 for
    the float network with and without mixing (written only on request, for older readers)."""
    if params.network == "token-lm":
        return 4
    if params.compute == "integer":
        return 3
    return 2 if params.mixing else 1


def _header(lm: ByteLM | None, params: CoderParams) -> dict:
    return {"format": FORMAT, "version": format_version(params), "model": lm.name if lm else None,
            "id": lm.model_id if lm else None, "coder": _params_to_header(params)}


@dataclass(frozen=True)
class Level:
    """A named speed/ratio trade-off: which M1 (None: no network) and how to code."""

    model: str | None
    params: CoderParams
    summary: str


# Measured speed and ratio of every level: results/textcomp/bench.json (README table).
LEVELS = {
    0: Level("m1-default", EXACT_STATIC, "static M1 + range coder (no adaptation)"),
    1: Level(None, EXACT_MIXING, "context mixing only, no network (fastest)"),
    2: Level("m1-small", EXACT_MIXING, "m1-small mixed with adaptive contexts"),
    3: Level("m1-default", EXACT_MIXING, "m1-default mixed with adaptive contexts (best)"),
    4: Level("smollm2", EXACT_TOKEN_LM, "SmolLM2-135M over its own tokens (max ratio, ~0.15 KB/s)"),
}
DEFAULT_LEVEL = 3

Model = str | Path | ByteLM | TokenLM  # a shipped model name, a model folder, or a loaded model


def _load_lm(name: str | Path, params: CoderParams) -> ByteLM | TokenLM:
    if params.network == "token-lm":
        return load_token_lm(name)
    return load_integer_lm(name) if params.compute == "integer" else load_byte_lm(name)


def _coding_lm(model: Model | None, params: CoderParams) -> ByteLM | None:
    """The M1 that codes with ``params``: a float M1 is swapped for its integer version."""
    if model is None:
        if not params.mixing:
            raise ConfigError("coding without a model needs context mixing (a level >= 1)")
        return None
    if isinstance(model, (ByteLM, TokenLM)) and isinstance(model, TokenLM) != (params.network == "token-lm"):
        raise ConfigError("a token LM codes with network='token-lm', an M1 with network='m1'")
    if isinstance(model, TokenLM):
        return model
    if not isinstance(model, ByteLM):
        return _load_lm(model, params)
    if model.exact and params.compute != "integer":
        raise ConfigError("an integer M1 codes with compute='integer'; 'bf16' and 'fp32' need the float M1")
    if not model.exact and params.compute == "integer":
        return load_integer_lm(model.path)
    return model


def _read_stream(src: BinaryIO, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        data = src.read(remaining)
        if not data:
            break
        chunks.append(data)
        remaining -= len(data)
    return b"".join(chunks)


class TextCompressor:
    """A loaded compressor: its M1 (or none: context mixing alone) and coder parameters.

    Made by :func:`load_compressor`. Decompression reads everything it needs from the
    file's header; the M1 the header names is loaded, unless the compressor was given an
    explicit ``model``, which must then be the file's (else :class:`ModelMismatchError`).

    >>> compressor = load_compressor(level=1)   # context mixing alone: no network to load
    >>> blob = compressor.compress(b"to be or not to be, that is the question")
    >>> compressor.decompress(blob)
    b'to be or not to be, that is the question'
    >>> compressor.neural, compressor.params.mixing
    (False, True)
    """

    def __init__(self, lm: ByteLM | None, params: CoderParams, level: int, model: Model | None = None) -> None:
        self._lm, self._params, self._level = lm, params, level
        self._model = model  # as given by the caller: decoding loads what a file's format needs

    @property
    def level(self) -> int:
        """The :data:`LEVELS` preset this compressor started from."""
        return self._level

    @property
    def params(self) -> CoderParams:
        return self._params

    @property
    def lm(self) -> ByteLM | None:
        """The M1 that codes, or None when context mixing codes alone."""
        return self._lm

    @property
    def neural(self) -> bool:
        return self._lm is not None

    @property
    def model_name(self) -> str | None:
        return self._lm.name if self._lm else None

    @property
    def model_id(self) -> str | None:
        return self._lm.model_id if self._lm else None

    def __repr__(self) -> str:
        return f"TextCompressor(level={self._level}, model={self.model_name!r}, params={self._params!r})"

    def compress_stream(self, src: BinaryIO, dst: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> int:
        """Compress ``src`` into ``dst`` frame by frame (bounded memory); returns the input size.

        ``on_bytes(n)`` is called as input bytes are coded (progress).
        """
        lm, params = self._lm, self._params
        container.write_header(dst, _header(lm, params))
        total, crc, count = 0, 0, 0
        frame = _read_stream(src, params.frame_bytes)
        with torch_threads(params.threads):
            while True:
                # Read one frame ahead so the last chunk can carry the end marker.
                following = _read_stream(src, params.frame_bytes) if frame else b""
                meta, payload = compress_frame(lm, params, frame, on_bytes)
                total += len(frame)
                crc = zlib.crc32(frame, crc)
                count += 1
                if not following:
                    meta["end"] = 1
                    if count > 1:
                        meta.update(total=total, total_crc=crc)
                container.write_chunk(dst, meta, payload)
                if not following:
                    return total
                frame = following

    def decompress_stream(self, src: BinaryIO, dst: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> int:
        """Decompress ``src`` into ``dst``; returns the number of bytes written."""
        return decompress_stream(src, dst, self._model, on_bytes)

    def compress(self, data: bytes) -> bytes:
        """Compress ``data`` (any bytes) into a self-describing blob."""
        out = io.BytesIO()
        self.compress_stream(io.BytesIO(bytes(data)), out)
        return out.getvalue()

    def decompress(self, blob: bytes) -> bytes:
        """Invert :meth:`compress` (of this or any other compressor)."""
        out = io.BytesIO()
        self.decompress_stream(io.BytesIO(bytes(blob)), out)
        return out.getvalue()


def load_compressor(level: int | None = None, model: Model | None = None, params: CoderParams | None = None,
                    *, neural: bool = True) -> TextCompressor:
    """A :class:`TextCompressor` for a level of :data:`LEVELS`; explicit arguments override
    that part of the level.

    Args:
        level: speed/ratio preset (default :data:`DEFAULT_LEVEL`).
        model: the M1 instead of the level's: a shipped name, a model folder or a loaded
            :class:`~terse.textcomp.model.ByteLM` (a float M1 codes through its integer
            version unless ``params.compute`` asks for the float network).
        params: coder parameters instead of the level's.
        neural: False codes by context mixing alone, with no network, whatever the level's
            model (the parameters must mix: a level >= 1).

    Raises:
        ConfigError: unknown level, a model with ``neural=False``, or no network without mixing.
        ArtifactError: the model cannot be loaded.

    >>> compressor = load_compressor(level=2, neural=False)   # level 2's coder, no m1-small
    >>> compressor.decompress(compressor.compress(b"abracadabra" * 3)) == b"abracadabra" * 3
    True
    >>> load_compressor(level=0, neural=False)
    Traceback (most recent call last):
    ...
    terse.core.errors.ConfigError: coding without a model needs context mixing (a level >= 1)
    """
    if level is None:
        level = DEFAULT_LEVEL
    if level not in LEVELS:
        raise ConfigError(f"unknown level {level}; levels are {sorted(LEVELS)}")
    if model is not None and not neural:
        raise ConfigError("a model was given with neural=False (no network)")
    chosen = LEVELS[level]
    params = params or chosen.params
    lm = _coding_lm((model if model is not None else chosen.model) if neural else None, params)
    return TextCompressor(lm, params, level, model)


def _decoding_lm(header: dict, params: CoderParams, model: Model | None) -> ByteLM | None:
    """The M1 a file names in its header: ``model`` if given (it must be that one), else
    the shipped model of that name."""
    name, wanted = header.get("model"), header.get("id")
    if name is None and wanted is None:
        return None  # coded by context mixing alone
    if isinstance(model, (ByteLM, TokenLM)) and isinstance(model, TokenLM) != (params.network == "token-lm"):
        raise ModelMismatchError(f"this file was compressed with model {name!r} (id {wanted}), "
                                 "a different kind of model than the one given")
    if isinstance(model, TokenLM):
        lm = model
    elif isinstance(model, ByteLM):
        lm = model if model.exact == (params.compute == "integer") else _load_lm(model.path, params)
    else:
        try:
            lm = _load_lm(model if model is not None else name, params)
        except ArtifactError:
            if model is not None:
                raise
            raise ModelMismatchError(
                f"this file was compressed with model {name!r} (id {wanted}), which is not available; "
                "pass its folder with --model") from None
    if lm.model_id != wanted:
        raise ModelMismatchError(
            f"this file was compressed with model {name!r} (id {wanted}), but the model given has id "
            f"{lm.model_id}; pass the original model with --model")
    return lm


def decompress_stream(src: BinaryIO, dst: BinaryIO, model: Model | None = None,
                      on_bytes: Callable[[int], None] | None = None) -> int:
    """Decompress ``src`` into ``dst``; returns the number of bytes written. The model
    named in the header is loaded unless ``model`` is given (it must be that one)."""
    header = container.read_header(src, FORMAT)
    if header.get("version") not in READABLE_VERSIONS:
        raise FormatError(f"unsupported {FORMAT} format version {header.get('version')} "
                          f"(this terse reads versions {', '.join(map(str, READABLE_VERSIONS))}; "
                          "the file was made by a newer terse)")
    params = _params_from_header(header.get("coder"))
    if format_version(params) != header["version"]:
        raise FormatError(f"corrupted file: coder parameters do not match format version {header['version']}")
    if not params.mixing and header.get("model") is None:
        raise FormatError("corrupted file: no model and no context mixing")
    lm = _decoding_lm(header, params, model)
    total, crc, count = 0, 0, 0
    with torch_threads(params.threads):
        while True:
            meta, payload = container.read_chunk(src, header["container"])
            frame = decompress_frame(lm, params, meta, payload, on_bytes)
            dst.write(frame)
            total += len(frame)
            crc = zlib.crc32(frame, crc)
            count += 1
            if meta.get("end"):
                break
    if count > 1 and (meta.get("total") != total or meta.get("total_crc") != crc):
        raise FormatError("corrupted file: length or CRC32 of the whole output does not match")
    container.expect_eof(src)
    return total


# Module-level verbs: one-call wrappers of load_compressor(...) and its methods.

def compress_stream(src: BinaryIO, dst: BinaryIO, model: Model | None = None, params: CoderParams | None = None,
                    on_bytes: Callable[[int], None] | None = None, level: int | None = None, *,
                    neural: bool = True) -> int:
    """``load_compressor(level, model, params, neural=neural).compress_stream(src, dst, on_bytes)``."""
    return load_compressor(level, model, params, neural=neural).compress_stream(src, dst, on_bytes)


def compress(data: bytes, model: Model | None = None, params: CoderParams | None = None,
             level: int | None = None, *, neural: bool = True) -> bytes:
    """``load_compressor(level, model, params, neural=neural).compress(data)``."""
    return load_compressor(level, model, params, neural=neural).compress(data)


def decompress(blob: bytes, model: Model | None = None) -> bytes:
    """Invert :func:`compress`. The model named in the header is loaded unless given."""
    out = io.BytesIO()
    decompress_stream(io.BytesIO(bytes(blob)), out, model)
    return out.getvalue()
