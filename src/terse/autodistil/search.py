"""Search: score every subnet of a space by held-out distillation loss (inheriting the
supernet's weights, no re-training), keep those that satisfy a cost constraint, pick the
lowest loss. Also the Pareto front (cost vs loss) for tables and plots."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch

from terse.autodistil.space import SearchSpace, SubnetConfig, TeacherShape, costs
from terse.core.config import FrozenConfig
from terse.core.errors import ConfigError, TerseError

CONSTRAINT_KEYS = ("params", "macs", "latency_ms")


class NoSubnetError(TerseError):
    """No subnet of the space satisfies the constraint."""


@dataclasses.dataclass(frozen=True)
class Constraint(FrozenConfig):
    """Upper bounds; ``None`` = unconstrained. ``latency_ms`` is measured on this CPU."""

    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self):
        for name in ("max_params", "max_macs", "max_latency_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")

    def describe(self) -> str:
        parts = [f"params <= {self.max_params:,}" if self.max_params else "",
                 f"MACs <= {self.max_macs:,}" if self.max_macs else "",
                 f"latency <= {self.max_latency_ms} ms" if self.max_latency_ms else ""]
        return ", ".join(p for p in parts if p) or "no constraint"


def measure_latency_ms(subnet: SubnetConfig, teacher: TeacherShape, batch_size: int = 1, seq_len: int = 128,
                       threads: int = 2, repeats: int = 5, warmup: int = 2, statistic: str = "median") -> float:
    """CPU wall time (ms) of the extracted student's forward (a ``BertModel`` with random
    weights: latency does not depend on the weight values). ``statistic``: ``median`` or
    ``min`` (the better estimate of the unloaded latency on a machine shared with other work)."""
    if statistic not in ("median", "min"):
        raise ConfigError(f"statistic must be median or min, got {statistic!r}")
    from transformers import BertModel

    from terse.autodistil.extract import bert_config_for

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = BertModel(bert_config_for(subnet, teacher), add_pooling_layer=False).eval()
        ids = torch.randint(1000, 2000, (batch_size, seq_len))
        mask = torch.ones_like(ids)
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                model(input_ids=ids, attention_mask=mask)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
        return float(min(times) if statistic == "min" else sorted(times)[len(times) // 2])
    finally:
        torch.set_num_threads(old)


def satisfies(subnet: SubnetConfig, teacher: TeacherShape, constraint: Constraint,
              latency: Callable[[SubnetConfig], float] | None = None) -> bool:
    c = costs(subnet, teacher)
    if constraint.max_params is not None and c["params"] > constraint.max_params:
        return False
    if constraint.max_macs is not None and c["macs"] > constraint.max_macs:
        return False
    if constraint.max_latency_ms is not None:
        measure = latency or (lambda s: measure_latency_ms(s, teacher))
        if measure(subnet) > constraint.max_latency_ms:
            return False
    return True


def select(scores: dict[SubnetConfig, float], teacher: TeacherShape, constraint: Constraint,
           latency: Callable[[SubnetConfig], float] | None = None) -> SubnetConfig:
    """The lowest-loss subnet satisfying ``constraint``. Latency is measured only for
    candidates in loss order until one fits (cheap cost checks first)."""
    cheap = Constraint(constraint.max_params, constraint.max_macs, None)
    candidates = sorted((s for s in scores if satisfies(s, teacher, cheap)), key=lambda s: (scores[s], s))
    for subnet in candidates:
        if constraint.max_latency_ms is None or satisfies(subnet, teacher, constraint, latency):
            return subnet
    smallest = min(scores, key=lambda s: costs(s, teacher)["macs"]) if scores else None
    hint = f"; the cheapest subnet here is {smallest.name} ({costs(smallest, teacher)['params']:,} params, " \
           f"{costs(smallest, teacher)['macs']:,} MACs)" if smallest else ""
    raise NoSubnetError(f"no subnet of the {len(scores)} searched satisfies {constraint.describe()}{hint}")


def pareto_front(scores: dict[SubnetConfig, float], teacher: TeacherShape, cost: str = "macs") -> list[SubnetConfig]:
    """Subnets not dominated in (cost, loss): sorted by cost, strictly decreasing loss."""
    if cost not in ("params", "macs"):
        raise ConfigError(f"cost must be params or macs, got {cost!r}")
    front, best = [], float("inf")
    for subnet in sorted(scores, key=lambda s: (costs(s, teacher)[cost], scores[s])):
        if scores[subnet] < best:
            front.append(subnet)
            best = scores[subnet]
    return front


def search_table(scores: dict[SubnetConfig, float], teacher: TeacherShape, space: SearchSpace | None = None) -> list[dict]:
    """Rows (one per subnet) with shape, params, MACs, loss and whether it is on the Pareto front."""
    front = set(pareto_front(scores, teacher))
    rows = []
    for subnet in sorted(scores, key=lambda s: costs(s, teacher)["macs"]):
        rows.append({**subnet.to_dict(), "name": subnet.name, **costs(subnet, teacher), "loss": scores[subnet],
                     "pareto": subnet in front, "space": space.name if space else None})
    return rows
