"""Subnet configurations, search spaces declared as data, and their costs.

A subnet of the elastic supernet is a :class:`SubnetConfig` (layers, heads, hidden size,
FFN size). Heads keep the teacher's head size, so ``hidden_size == num_heads * head_size``
and every subnet is a plain ``BertConfig`` (head size = hidden / heads): the extracted
student loads with ``transformers.AutoModel``.

Why 64 and not 256 subnets per sub-space: the paper's code (QKV width = 64 * heads,
independent of the hidden size) gives 4 x 4 x 4 x 4 = 256 per sub-space, but such a
student has an attention width different from its hidden size, which a standard
``BertConfig`` cannot express. Keeping the teacher's head size *and* a standard config
ties hidden size to heads, so a sub-space is 4 depths x 4 widths (heads = hidden / 32)
x 4 MLP ratios = 64 subnets. See ``README`` / the issue note.

Costs are computed from the actual sliced shapes (:func:`count_params`, :func:`count_macs`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from typing import Any

from terse.core.config import FrozenConfig
from terse.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TeacherShape(FrozenConfig):
    """The shape of a BERT-like teacher (what the supernet is sliced from)."""

    num_layers: int
    num_heads: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    max_positions: int = 512
    type_vocab_size: int = 2

    def __post_init__(self):
        for name in ("num_layers", "num_heads", "hidden_size", "intermediate_size", "vocab_size", "max_positions"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"TeacherShape.{name} must be >= 1")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"teacher hidden size {self.hidden_size} is not a multiple of its {self.num_heads} heads")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_subnet(self) -> SubnetConfig:
        return SubnetConfig(self.num_layers, self.num_heads, self.hidden_size, self.intermediate_size)


@dataclasses.dataclass(frozen=True, order=True)
class SubnetConfig(FrozenConfig):
    """One architecture inside the supernet. Passed to ``forward``; never stored in the model.

    Attributes:
        num_layers: depth L (teacher layers kept by the every-other mapping, :func:`layer_map`).
        num_heads: attention heads A, each of the teacher's head size.
        hidden_size: H = A x head size (front slice of every hidden dimension).
        intermediate_size: FFN width (front slice of the FFN), ``int(H * mlp_ratio)``.
    """

    num_layers: int
    num_heads: int
    hidden_size: int
    intermediate_size: int

    def __post_init__(self):
        for name in ("num_layers", "num_heads", "hidden_size", "intermediate_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"SubnetConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}")

    @property
    def name(self) -> str:
        return f"L{self.num_layers}-A{self.num_heads}-H{self.hidden_size}-F{self.intermediate_size}"

    @classmethod
    def parse(cls, text: str) -> SubnetConfig:
        """The inverse of :attr:`name`: ``"L4-A6-H192-F576"`` -> SubnetConfig(4, 6, 192, 576)."""
        match = re.fullmatch(r"L(\d+)-A(\d+)-H(\d+)-F(\d+)", text.strip())
        if not match:
            raise ConfigError(f"subnet {text!r} is not of the form L<layers>-A<heads>-H<hidden>-F<ffn>, "
                              "e.g. L4-A6-H192-F576")
        return cls(*(int(g) for g in match.groups()))

    def check_fits(self, teacher: TeacherShape) -> None:
        """ConfigError unless this subnet is a slice of ``teacher`` with the teacher's head size."""
        if self.num_layers > teacher.num_layers or self.num_heads > teacher.num_heads \
                or self.intermediate_size > teacher.intermediate_size:
            raise ConfigError(f"subnet {self.name} is larger than the teacher "
                              f"(L{teacher.num_layers}-A{teacher.num_heads}-H{teacher.hidden_size}-F{teacher.intermediate_size})")
        if self.hidden_size != self.num_heads * teacher.head_size:
            raise ConfigError(f"subnet {self.name}: hidden size must be heads x {teacher.head_size} (the teacher's head size)")


def layer_map(teacher_layers: int, num_layers: int) -> list[int]:
    """Teacher layers a depth-``num_layers`` subnet keeps: DynaBERT's every-other mapping,
    ``floor(i * L_teacher / L)`` for ``i < L`` (L=3 of 6 keeps 0, 2, 4)."""
    if not 1 <= num_layers <= teacher_layers:
        raise ConfigError(f"depth {num_layers} is outside 1..{teacher_layers}")
    return [(i * teacher_layers) // num_layers for i in range(num_layers)]


@dataclasses.dataclass(frozen=True)
class SearchSpace(FrozenConfig):
    """A grid of subnets: every combination of depth, heads and MLP ratio.

    The hidden size follows the heads (``heads * head_size``) and the FFN is
    ``int(hidden * mlp_ratio)``.
    """

    name: str
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    head_size: int

    def __post_init__(self):
        for field in ("layers", "heads", "mlp_ratios"):
            values = tuple(getattr(self, field))
            object.__setattr__(self, field, values)
            if not values:
                raise ConfigError(f"search space {self.name!r}: {field} is empty")
            if any(v <= 0 for v in values):
                raise ConfigError(f"search space {self.name!r}: {field} must be positive, got {values}")
        if self.head_size < 1:
            raise ConfigError("head_size must be >= 1")

    @classmethod
    def single(cls, subnet: SubnetConfig) -> SearchSpace:
        """The space of one architecture: distilling it is the standalone baseline (each
        step trains that subnet only: the sandwich of a one-subnet space)."""
        head_size = subnet.hidden_size // subnet.num_heads
        ratio = subnet.intermediate_size / subnet.hidden_size
        if int(subnet.hidden_size * ratio) != subnet.intermediate_size:   # float round-off below the integer
            ratio = math.nextafter(ratio, math.inf)
        return cls(f"standalone-{subnet.name}", (subnet.num_layers,), (subnet.num_heads,), (ratio,), head_size)

    def subnets(self) -> list[SubnetConfig]:
        out = []
        for layers, heads, ratio in itertools.product(self.layers, self.heads, self.mlp_ratios):
            hidden = heads * self.head_size
            out.append(SubnetConfig(int(layers), int(heads), hidden, int(hidden * ratio)))
        return sorted(set(out))

    def __len__(self) -> int:
        return len(self.subnets())

    def check_fits(self, teacher: TeacherShape) -> None:
        if self.head_size != teacher.head_size:
            raise ConfigError(f"search space {self.name!r} has head size {self.head_size}, the teacher {teacher.head_size}")
        for subnet in (self.largest(), max(self.subnets(), key=lambda s: s.intermediate_size)):
            subnet.check_fits(teacher)

    def largest(self) -> SubnetConfig:
        return max(self.subnets(), key=count_params)

    def smallest(self) -> SubnetConfig:
        return min(self.subnets(), key=count_params)

    def contains(self, subnet: SubnetConfig) -> bool:
        return subnet in set(self.subnets())


def _four_ending_at(top: int) -> tuple[int, ...]:
    """Four consecutive integers ending at ``top`` (fewer when ``top`` < 4)."""
    return tuple(range(max(1, top - 3), top + 1))


def default_spaces(teacher: TeacherShape) -> dict[str, SearchSpace]:
    """The K=3 sub-spaces (base / small / tiny) and the K=1 space, sized relative to the teacher.

    For MiniLM-L6-H384 (6 layers, 12 heads of 32):

    =====  ==========  =================  ==================
    space  layers      heads (hidden)     MLP ratio
    =====  ==========  =================  ==================
    base   3 4 5 6     9-12 (288-384)     2.5 3.0 3.5 4.0
    small  3 4 5 6     5-8  (160-256)     2.5 3.0 3.5 4.0
    tiny   2 3 4 5     2-5  (64-160)      2.0 2.5 3.0 3.5
    k1     2-6         2-12 (64-384)      2.0 2.5 3.0 3.5 4.0
    =====  ==========  =================  ==================

    The tops follow the paper's BERT-base sub-spaces (base: full depth and width; small:
    full depth, 2/3 width; tiny: 5/6 depth, 5/12 width), four consecutive values per
    dimension; K=1 covers the union (its grid is a superset of every K=3 sub-space).
    """
    L, A = teacher.num_layers, teacher.num_heads
    full_ratio = teacher.intermediate_size / teacher.hidden_size
    ratios_hi = tuple(max(0.5, round(full_ratio - 0.5 * i, 2)) for i in (3, 2, 1, 0))
    ratios_lo = tuple(max(0.5, round(full_ratio - 0.5 * i, 2)) for i in (4, 3, 2, 1))
    spaces = {
        "base": SearchSpace("base", _four_ending_at(L), _four_ending_at(A), ratios_hi, teacher.head_size),
        "small": SearchSpace("small", _four_ending_at(L), _four_ending_at(max(1, round(A * 8 / 12))), ratios_hi,
                             teacher.head_size),
        "tiny": SearchSpace("tiny", _four_ending_at(max(1, round(L * 5 / 6))), _four_ending_at(max(1, round(A * 5 / 12))),
                            ratios_lo, teacher.head_size),
    }
    union_layers = sorted({v for s in spaces.values() for v in s.layers})
    union_heads = sorted({v for s in spaces.values() for v in s.heads})
    union_ratios = sorted({v for s in spaces.values() for v in s.mlp_ratios})
    spaces["k1"] = SearchSpace("k1", tuple(range(union_layers[0], union_layers[-1] + 1)),
                               tuple(range(union_heads[0], union_heads[-1] + 1)), tuple(union_ratios), teacher.head_size)
    for space in spaces.values():
        space.check_fits(teacher)
    return spaces


K3_SPACES = ("base", "small", "tiny")
SPACE_NAMES = (*K3_SPACES, "k1")  # the keys of default_spaces


# ---------------------------------------------------------------- costs (actual sliced shapes)

def count_params(subnet: SubnetConfig, vocab_size: int = 30522, max_positions: int = 512, type_vocab_size: int = 2,
                 with_pooler: bool = False) -> int:
    """Parameters of the extracted student (``BertModel`` without pooler unless asked)."""
    H, F, L = subnet.hidden_size, subnet.intermediate_size, subnet.num_layers
    W = H  # attention width: heads x head size == hidden size
    embeddings = (vocab_size + max_positions + type_vocab_size) * H + 2 * H
    attention = 3 * (H * W + W) + (W * H + H) + 2 * H
    ffn = (H * F + F) + (F * H + H) + 2 * H
    pooler = H * H + H if with_pooler else 0
    return embeddings + L * (attention + ffn) + pooler


def count_macs(subnet: SubnetConfig, seq_len: int = 128) -> int:
    """Multiply-accumulates of one sequence's encoder forward (no pooler, no embeddings lookup).

    Per layer, with n tokens, hidden H, attention width W = heads x head size, FFN F:
    Q/K/V ``3 n H W`` + scores ``n^2 W`` + context ``n^2 W`` + output ``n W H`` + FFN ``2 n H F``.
    (The paper's "FLOPs" are this count: BERT-base at n=128 gives 11.2G.)
    """
    n, H, F, L = seq_len, subnet.hidden_size, subnet.intermediate_size, subnet.num_layers
    W = H
    per_layer = 3 * n * H * W + 2 * n * n * W + n * W * H + 2 * n * H * F
    return L * per_layer


def costs(subnet: SubnetConfig, teacher: TeacherShape, seq_len: int = 128) -> dict[str, Any]:
    return {"params": count_params(subnet, teacher.vocab_size, teacher.max_positions, teacher.type_vocab_size),
            "macs": count_macs(subnet, seq_len)}
