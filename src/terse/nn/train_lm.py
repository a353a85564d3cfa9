"""Training loop for the small GPT over a flat token array (bytes or compressed tokens).

Runs under Hugging Face Accelerate, so ``accelerate launch`` scales the same command to
several GPUs/nodes; on one CPU it is a plain loop, in bf16 autocast where bf16 is fast
(:mod:`terse.nn.precision`).
Checkpoints (model + AdamW state as safetensors, trainer state as JSON) are written
atomically every ``checkpoint_every`` steps, and training resumes from them.

The LR schedule is warmup-stable-decay: linear warmup, constant, then linear decay to
zero over the last ``decay_fraction`` of ``max_steps``. A run can therefore be extended
(larger ``max_steps`` on resume) as long as it has not entered the decay phase.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terse.core.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from terse.core.config import FrozenConfig
from terse.core.errors import ConfigError
from terse.core.progress import progress
from terse.nn.gpt import GPT
from terse.nn.precision import MIXED_PRECISIONS, use_bf16

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    """Hyperparameters of :func:`train_lm`.

    Attributes:
        seq_len: tokens per training sequence (BOS included).
        batch_size: sequences per optimizer step (per process).
        max_steps: total optimizer steps.
        learning_rate: peak AdamW learning rate.
        warmup_steps: linear warmup length.
        decay_fraction: final fraction of steps with linear decay to zero.
        weight_decay: AdamW weight decay (matrices only).
        grad_clip: global gradient-norm clip.
        eval_every: steps between validation evaluations.
        eval_sequences: validation sequences per evaluation.
        checkpoint_every: steps between checkpoints.
        seed: base seed; batches depend only on (seed, step, process), so resume is exact.
        mixed_precision: "auto" (bf16 autocast where it is faster than fp32), "bf16" or "no".
    """

    seq_len: int = 384
    batch_size: int = 40
    max_steps: int = 4000
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    decay_fraction: float = 0.25
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_sequences: int = 64
    checkpoint_every: int = 100
    seed: int = 0
    mixed_precision: str = "auto"

    def __post_init__(self) -> None:
        if self.seq_len < 2 or self.batch_size < 1 or self.max_steps < 1:
            raise ConfigError("seq_len >= 2, batch_size >= 1 and max_steps >= 1 are required")
        if not 0 <= self.decay_fraction <= 1:
            raise ConfigError("decay_fraction must be in [0, 1]")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ConfigError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}")

    def learning_rate_at(self, step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, self.warmup_steps))
        decay_start = self.max_steps * (1 - self.decay_fraction)
        if step < decay_start:
            return self.learning_rate * warm
        return self.learning_rate * warm * max(0.0, (self.max_steps - step) / max(1.0, self.max_steps - decay_start))


def sample_batch(tokens: np.ndarray, starts: np.ndarray, seq_len: int, bos: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences starting at ``starts`` -> (inputs, targets), each (B, seq_len) int64.

    With a BOS id, inputs are ``[BOS] + x[:seq_len-1]`` and targets ``x[:seq_len]``, so the
    first byte is predicted from no context, as at the start of a coded segment.
    """
    offsets = np.arange(seq_len + (0 if bos is not None else 1))
    windows = torch.from_numpy(tokens[starts[:, None] + offsets[None, :]].astype(np.int64))
    if bos is None:
        return windows[:, :-1], windows[:, 1:]
    inputs = torch.cat((torch.full((len(starts), 1), bos, dtype=torch.int64), windows[:, :-1]), dim=1)
    return inputs, windows


def evaluation_starts(num_tokens: int, seq_len: int, count: int) -> np.ndarray:
    """Evenly spaced, fixed validation windows."""
    span = num_tokens - seq_len - 1
    if span <= 0:
        raise ValueError(f"validation data too short: {num_tokens} tokens for seq_len {seq_len}")
    return np.linspace(0, span, num=min(count, span + 1)).astype(np.int64)


@torch.no_grad()
def evaluate_loss(model: GPT, tokens: np.ndarray, seq_len: int, count: int, bos: int | None,
                  batch_size: int = 16, autocast: bool = False) -> float:
    """Mean next-token cross-entropy in nats over fixed validation windows."""
    model.eval()
    device = next(model.parameters()).device
    starts = evaluation_starts(len(tokens), seq_len, count)
    total, n = 0.0, 0
    for i in range(0, len(starts), batch_size):
        inputs, targets = sample_batch(tokens, starts[i:i + batch_size], seq_len, bos)
        inputs, targets = inputs.to(device), targets.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(inputs, targets)
        total += loss.item() * targets.numel()
        n += targets.numel()
    model.train()
    return total / n


def make_optimizer(model: GPT, config: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.95), eps=1e-8)


def train_lm(model: GPT, train_tokens: np.ndarray, valid_tokens: np.ndarray, config: TrainConfig,
             out_dir: Path, bos: int | None = None, bits_per_unit: float = 1.0,
             on_checkpoint=None) -> dict[str, Any]:
    """Train ``model`` in place; returns the final trainer state (with metrics history).

    Args:
        model: the GPT to train (its config decides vocab and window).
        train_tokens, valid_tokens: 1-D integer arrays of token ids.
        config: hyperparameters.
        out_dir: folder for ``checkpoint/`` and ``metrics.jsonl``; an existing checkpoint
            there is resumed.
        bos: BOS token id prepended to every sequence (None: no BOS).
        bits_per_unit: reported ``valid_bits`` = loss / ln 2 * bits_per_unit (e.g. tokens
            per byte to report bits/byte).
        on_checkpoint: optional callback ``(model, state)`` after each checkpoint.
    """
    from accelerate import Accelerator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Precision via our own autocast, not Accelerator(mixed_precision=...): Accelerate keeps that
    # setting in process-global state, so a second run with another precision would fail.
    accelerator = Accelerator()
    bf16 = use_bf16(config.mixed_precision, accelerator.device.type)
    optimizer = make_optimizer(model, config)
    checkpoint = out_dir / "checkpoint"
    state: dict[str, Any] = {"step": 0, "tokens_seen": 0, "elapsed_s": 0.0, "history": []}
    if has_checkpoint(checkpoint):
        state = load_checkpoint(checkpoint, model, optimizer)
        logger.info("resumed from %s at step %d", checkpoint, state["step"])
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    model.train()
    span = len(train_tokens) - config.seq_len - 1
    if span <= 0:
        raise ValueError(f"training data too short ({len(train_tokens)} tokens) for seq_len {config.seq_len}")
    metrics_file = out_dir / "metrics.jsonl"
    start_step = state["step"]
    bar = progress(total=config.max_steps, initial=start_step, desc="train", unit="step")
    started = time.perf_counter() - state["elapsed_s"]
    for step in range(start_step, config.max_steps):
        rng = np.random.default_rng([config.seed, step, accelerator.process_index])
        inputs, targets = sample_batch(train_tokens, rng.integers(0, span, config.batch_size), config.seq_len, bos)
        inputs, targets = inputs.to(accelerator.device), targets.to(accelerator.device)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(step)
        with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(inputs, targets)
        accelerator.backward(loss)
        if config.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["tokens_seen"] += inputs.numel() * accelerator.num_processes
        state["elapsed_s"] = time.perf_counter() - started
        record: dict[str, Any] = {"step": step + 1, "train_loss": round(loss.item(), 5),
                                  "lr": config.learning_rate_at(step), "tokens_seen": state["tokens_seen"],
                                  "elapsed_s": round(state["elapsed_s"], 1)}
        last = step + 1 == config.max_steps
        if (step + 1) % config.eval_every == 0 or last:
            val = evaluate_loss(raw_model, valid_tokens, config.seq_len, config.eval_sequences, bos,
                                autocast=bf16)
            record["valid_loss"] = round(val, 5)
            record["valid_bits"] = round(val / math.log(2) * bits_per_unit, 5)
            state["history"].append(record)
            logger.info("step %d valid %.4f bits", step + 1, record["valid_bits"])
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if accelerator.is_main_process:
            with open(metrics_file, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            if (step + 1) % config.checkpoint_every == 0 or last:
                save_checkpoint(checkpoint, raw_model, optimizer, state)
                if on_checkpoint is not None:
                    on_checkpoint(raw_model, state)
    bar.close()
    return state
