"""Task-agnostic self-attention relation distillation of a supernet (MiniLMv2-style).

Loss between the teacher's last layer and the student's last layer: Q-Q, K-K and V-V
self-relations, each split into ``relation_heads`` heads (default: the teacher's head
count) independently of the student's heads (``d_r = W // R``, remainder dropped).

* ``kl`` (MiniLMv2): KL(softmax(teacher) || softmax(student)) over real key tokens,
  averaged over real query tokens and relation heads; padded keys get -inf.
* ``mse`` (the AutoDistil code): mean squared error of the relation scores over real
  (query, key) pairs only (the code's version lets padding in; ours masks it).

Training follows the sandwich rule: per batch, the largest, the smallest and two distinct
random subnets of the space, gradients accumulated over the four, clipped to 1.0, one
AdamW step (wd 0.01 except biases / LayerNorms), linear decay, no warm-up; one teacher
forward per batch; every subnet distils from the (frozen) teacher.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from terse.autodistil.corpus import block_source, random_padding
from terse.autodistil.space import SearchSpace, SubnetConfig
from terse.autodistil.supernet import ElasticBert, relation_logits
from terse.core.artifacts import atomic_write_bytes
from terse.core.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from terse.core.config import FrozenConfig
from terse.core.errors import ConfigError, TrainingError
from terse.core.progress import progress
from terse.nn.optim import adamw

log = logging.getLogger(__name__)

LOSSES = ("kl", "mse")


# ------------------------------------------------------------------------------ loss

MASKED_SCORE = -1e9  # a padded key's relation score: its softmax weight underflows to exactly 0


def _key_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask -> (B, 1, 1, T) additive bias: 0 for real keys, MASKED_SCORE for padding."""
    return torch.zeros(attention_mask.shape, dtype=torch.float32, device=attention_mask.device).masked_fill(
        ~attention_mask.bool(), MASKED_SCORE)[:, None, None, :]


@torch.no_grad()
def teacher_relations(teacher_qkv, attention_mask: torch.Tensor, relation_heads: int, kind: str = "kl") -> list:
    """The teacher's side of :func:`relation_loss` for Q, K, V, computed once per batch and
    shared by every subnet trained on it: (softmax, log_softmax) of the relation scores (kl)
    or the scores (mse)."""
    if kind not in LOSSES:
        raise ConfigError(f"unknown distillation loss {kind!r}; choose one of {LOSSES}")
    bias = _key_bias(attention_mask)
    out = []
    for t in teacher_qkv:
        rt = relation_logits(t, relation_heads)                # (B, R, T, T)
        out.append((torch.softmax(rt + bias, -1), torch.log_softmax(rt + bias, -1)) if kind == "kl" else rt)
    return out


def relation_loss_from(teacher_rel: list, student_qkv, attention_mask: torch.Tensor, relation_heads: int,
                       kind: str = "kl") -> torch.Tensor:
    """Mean over Q-Q, K-K, V-V of the relation loss against :func:`teacher_relations`."""
    real = attention_mask.bool()                               # (B, T)
    bias = _key_bias(attention_mask)
    pair = real[:, None, :, None] & real[:, None, None, :]     # (B, 1, T, T): both tokens real (mse)
    total = 0.0
    for t, s in zip(teacher_rel, student_qkv, strict=True):
        rs = relation_logits(s, relation_heads)
        if kind == "kl":
            pt, log_pt = t
            # padded keys: pt is exactly 0 and both log-probabilities finite, so they add 0
            kl = (pt * (log_pt - torch.log_softmax(rs + bias, -1))).sum(-1)   # (B, R, T)
            total = total + kl[real[:, None, :].expand_as(kl)].mean()
        else:
            diff = (t - rs).pow(2)
            total = total + diff[pair.expand_as(diff)].mean()
    return total / 3


def relation_loss(teacher_qkv, student_qkv, attention_mask: torch.Tensor, relation_heads: int,
                  kind: str = "kl") -> torch.Tensor:
    """Mean over Q-Q, K-K, V-V of the relation loss. Tensors (B, T, W_t) / (B, T, W_s); mask (B, T)."""
    teacher = teacher_relations(teacher_qkv, attention_mask, relation_heads, kind)
    return relation_loss_from(teacher, student_qkv, attention_mask, relation_heads, kind)


# ------------------------------------------------------------------------------ training

@dataclasses.dataclass(frozen=True)
class DistillConfig(FrozenConfig):
    """Hyperparameters of supernet distillation (paper values where they fit the budget)."""

    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 128
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    loss: str = "kl"
    relation_heads: int = 0          # 0 = the teacher's head count
    random_subnets: int = 2          # sandwich: largest + smallest + this many random
    dropout: float = 0.1
    seed: int = 0
    checkpoint_every: int = 200

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.steps < 1 or self.batch_size < 1 or self.seq_len < 8:
            raise ConfigError("steps and batch_size must be >= 1 and seq_len >= 8")
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate must be > 0")
        if self.random_subnets < 0 or self.relation_heads < 0:
            raise ConfigError("random_subnets and relation_heads must be >= 0")


def sandwich(space: SearchSpace, step: int, seed: int, random_subnets: int = 2) -> list[SubnetConfig]:
    """Largest + smallest + ``random_subnets`` distinct random others (seeded by the step,
    so a resumed or multi-process run draws the same subnets)."""
    largest, smallest = space.largest(), space.smallest()
    others = [s for s in space.subnets() if s not in (largest, smallest)]
    rng = random.Random(seed * 1_000_003 + step)
    picked = rng.sample(others, min(random_subnets, len(others)))
    return [largest] + ([smallest] if smallest != largest else []) + picked


def param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def student_qkv(model: ElasticBert, ids, mask, subnet: SubnetConfig):
    return model(ids, mask, subnet=subnet, return_qkv=True).qkv


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _step_seed(config: DistillConfig, step: int, rank: int = 0) -> int:
    return config.seed * 7919 + step + 104_729 * rank


def train_subnets(student: ElasticBert, teacher: ElasticBert, blocks, space: SearchSpace | None,
                  config: DistillConfig, out_dir: Path | None = None, fixed_subnet: SubnetConfig | None = None,
                  device: str | torch.device = "cpu", time_limit_s: float | None = None,
                  desc: str = "distilling", heldout: torch.Tensor | None = None, heldout_every: int = 0,
                  accelerator=None) -> dict:
    """Distil ``student`` from ``teacher`` on ``blocks``: an (N, T) tensor or a block source
    of :mod:`terse.autodistil.corpus` (e.g. a :class:`~terse.autodistil.corpus.CorpusStream`).

    With ``space``, each step trains the sandwich of that space; with ``fixed_subnet``
    (and ``space=None``), one architecture only (the standalone baseline: same data,
    steps and optimiser). The student trains with ``config.dropout``. Checkpoints
    (``out_dir/checkpoint``) every ``checkpoint_every`` steps and resumes from them, exactly:
    a resumed run ends with the weights of an uninterrupted one.

    ``heldout`` blocks are scored every ``heldout_every`` steps and at the end (largest and
    smallest subnet, or the fixed one); the curve is in the summary and, with ``out_dir``,
    in ``out_dir/heldout.json``. With an ``accelerate.Accelerator`` of several processes
    each process takes every n-th row of the global batch and DDP averages the gradients,
    so one command trains the same schedule on one CPU or several GPUs. Returns a summary
    dict (steps done, losses, tokens/s, seconds, the held-out curve).
    """
    if (space is None) == (fixed_subnet is None):
        raise ConfigError("pass exactly one of space / fixed_subnet")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    main = rank == 0
    device = accelerator.device if accelerator else torch.device(device)
    student.dropout = config.dropout
    student.to(device).train()
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    model = accelerator.prepare_model(student) if world > 1 else student   # DDP wrapper on several processes
    R = config.relation_heads or teacher.shape.num_heads
    opt = adamw(param_groups(student, config.weight_decay), config.learning_rate, device)
    # With a time limit the plan is re-estimated once after a few steps so the linear decay
    # still reaches zero at the last step that fits.
    plan = {"steps": config.steps}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / plan["steps"]))
    start, history, curve, seconds_before, active_before = 0, [], [], 0.0, 0.0
    ckpt = Path(out_dir) / "checkpoint" if out_dir else None
    if ckpt and has_checkpoint(ckpt):
        saved = load_checkpoint(ckpt, student, opt, sched)
        start, history, plan["steps"] = int(saved["step"]), list(saved["history"]), int(saved["planned"])
        curve, seconds_before = list(saved.get("heldout", [])), float(saved.get("seconds", 0.0))
        active_before = float(saved.get("active_seconds", seconds_before))
        log.info("resuming from step %d of %d", start, plan["steps"])
    source = block_source(blocks, config.seed)
    watched = [fixed_subnet] if fixed_subnet else [space.largest(), space.smallest()]
    tokens_per_step = config.batch_size * config.seq_len

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - t0

    step_seconds: list[float] = []

    def active() -> float:
        """Training seconds with pauses left out (a stopped process, a suspended machine): a step
        over 10x this run's median step is counted at the median."""
        if not step_seconds:
            return active_before
        median = float(np.median(step_seconds))
        return active_before + float(np.minimum(step_seconds, 10 * median).sum())

    def score_heldout(step: int) -> None:
        if heldout is None or (curve and curve[-1]["step"] == step):
            return
        if main:
            losses = heldout_losses(student, teacher, heldout, watched, relation_heads=R, loss=config.loss,
                                    device=device, desc="held-out")
            student.train()
            curve.append({"step": step, "tokens": step * tokens_per_step, "seconds": round(elapsed(), 1),
                          "active_seconds": round(active(), 1),
                          "train_loss_last_50": float(np.mean(history[-50:])) if history else None,
                          "heldout": {s.name: v for s, v in losses.items()}})
            log.info("step %d (%.2fM tokens, %.0f tokens/s): held-out %s", step, step * tokens_per_step / 1e6,
                     (step - start) * tokens_per_step / max(1e-9, active() - active_before),
                     ", ".join(f"{k} {v:.4f}" for k, v in curve[-1]["heldout"].items()))
            if out_dir:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(Path(out_dir) / "heldout.json", json.dumps(curve, indent=1).encode())
        if accelerator:
            accelerator.wait_for_everyone()

    t0 = time.perf_counter()
    bar = progress(total=config.steps, initial=start, desc=desc, unit="step", disable=not main)
    done = start
    # Speed is measured over steps 5..25 of this run: the first steps include one-off costs
    # (CUDA context, kernel selection) that made an earlier estimate plan 3x too few steps.
    measure_from, calibrate_at, t_measure = start + 5, start + 25, None
    step = start
    while step < plan["steps"]:
        if heldout_every and step % heldout_every == 0:
            score_heldout(step)
        t_step = time.perf_counter()
        if time_limit_s is not None and step == measure_from:
            t_measure = time.perf_counter()
        if time_limit_s is not None and step == calibrate_at and t_measure is not None:
            per_step = (time.perf_counter() - t_measure) / (calibrate_at - measure_from)
            fits = int((time_limit_s - (time.perf_counter() - t0)) / per_step * 0.95)
            planned = [max(step + 1, min(config.steps, step + fits))]
            if world > 1:   # every process must stop at the same step
                from accelerate.utils import broadcast_object_list

                broadcast_object_list(planned, from_process=0)
            plan["steps"] = planned[0]
            bar.total = plan["steps"]
            log.info("time limit %.0fs: planning %d steps", time_limit_s, plan["steps"])
        pad_gen = torch.Generator().manual_seed(_step_seed(config, step))
        ids, mask = random_padding(source.batch(step, config.batch_size), pad_gen)
        ids, mask = ids[rank::world].to(device), mask[rank::world].to(device)
        with torch.no_grad(), _autocast(device):
            t_qkv = student_qkv(teacher, ids, mask, teacher.shape.max_subnet)
        subnets = [fixed_subnet] if fixed_subnet else sandwich(space, step, config.seed, config.random_subnets)
        opt.zero_grad(set_to_none=True)
        losses = []
        # Dropout draws from the global RNG, seeded per step so a resumed run matches an uninterrupted one.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(_step_seed(config, step, rank))
            t_rel = teacher_relations(t_qkv, mask, R, config.loss)  # shared by the step's subnets
            for i, subnet in enumerate(subnets):
                # Several processes: gradients are all-reduced once, after the last subnet.
                sync = world == 1 or i == len(subnets) - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                    with _autocast(device):
                        s_qkv = model(ids, mask, subnet=subnet, return_qkv=True).qkv
                    loss = relation_loss_from(t_rel, s_qkv, mask, R, config.loss)
                    (loss / len(subnets)).backward()
                losses.append(loss.detach())
        torch.nn.utils.clip_grad_norm_(student.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        mean_loss = torch.stack(losses).mean()
        if world > 1:
            mean_loss = accelerator.reduce(mean_loss, "mean")
        history.append(float(mean_loss))  # one device sync per step
        step_seconds.append(time.perf_counter() - t_step)
        done = step + 1
        bar.update(1)
        if not math.isfinite(history[-1]):
            raise TrainingError(f"distillation diverged at step {step} (loss {history[-1]})")
        if ckpt and (step + 1) % config.checkpoint_every == 0 and step + 1 < plan["steps"]:
            if heldout_every and (step + 1) % heldout_every == 0:
                score_heldout(step + 1)   # so the saved curve already holds this step
            if main:
                save_checkpoint(ckpt, student, opt, {"step": step + 1, "history": history, "planned": plan["steps"],
                                                     "heldout": curve, "seconds": elapsed(),
                                                     "active_seconds": active()}, sched)
            if accelerator:
                accelerator.wait_for_everyone()
        step += 1
    bar.close()
    score_heldout(done)
    run_seconds = active() - active_before
    return {"steps_done": done, "steps_planned": plan["steps"], "seconds": elapsed(), "active_seconds": active(),
            "tokens": done * tokens_per_step,
            "tokens_per_second": (done - start) * tokens_per_step / max(1e-9, run_seconds),
            "loss_first": history[0] if history else None,
            "loss_last_100": float(np.mean(history[-100:])) if history else None, "loss_history": history[::10],
            "heldout_curve": curve}


# ------------------------------------------------------------------------------ held-out loss

@torch.no_grad()
def heldout_losses(supernet: ElasticBert, teacher: ElasticBert, blocks: torch.Tensor, subnets: list[SubnetConfig],
                   relation_heads: int = 0, loss: str = "kl", batch_size: int = 32, device="cpu",
                   desc: str = "held-out loss") -> dict[SubnetConfig, float]:
    """Mean relation-distillation loss of each subnet (inheriting supernet weights) on ``blocks``."""
    device = torch.device(device)
    supernet.to(device).eval()
    teacher.to(device).eval()
    R = relation_heads or teacher.shape.num_heads
    gen = torch.Generator().manual_seed(12345)
    batches = []
    for i in range(0, len(blocks), batch_size):
        ids, mask = random_padding(blocks[i:i + batch_size], gen)
        ids, mask = ids.to(device), mask.to(device)
        with _autocast(device):
            batches.append((ids, mask, student_qkv(teacher, ids, mask, teacher.shape.max_subnet)))
    out = {}
    for subnet in progress(subnets, desc=desc, unit="subnet"):
        total = 0.0
        for ids, mask, t_qkv in batches:
            with _autocast(device):
                s_qkv = student_qkv(supernet, ids, mask, subnet)
            total += float(relation_loss(t_qkv, s_qkv, mask, R, loss)) * len(ids)
        out[subnet] = total / len(blocks)
    return out
