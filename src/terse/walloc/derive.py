"""New WaLLoC codecs derived from a saved one with its latents unchanged: a decoder trained
further (or a new, smaller decoder distilled from the source's) with the encoder frozen, or
refitted entropy tables.

With ``latent_step`` the derived codec instead keeps the source's encoder but quantizes its
latents with a coarser step (a lower rate, every channel kept): the decoder is trained on the
new rounded latents and the parallel context model is fitted afresh for them (the files are
the new codec's own; it reads none of the source's). It stores no wavefront tables: its
files use the parallel storage (or lossless WebP / PNG).

Both write a *new* codec folder (the source is never modified) whose encoder, and so every
latent and every parallel-storage bitstream, is bit-identical to the source's; the source's
parallel context tables are carried over (re-linked to the new model id). How the shipped
``walloc-rgb-16x`` decoder was trained further::

    terse walloc finetune-decoder walloc-rgb-16x --steps 22000 --learning-rate 3e-4 -o runs/16x-decoder

A derived codec lists the ids of the codecs whose files it reads (``info.reads_model_ids``):
the latents are the same integers, only the reconstruction differs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terse.core.artifacts import load_artifact
from terse.core.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from terse.core.config import FrozenConfig
from terse.core.errors import ArtifactError, ConfigError, TrainingError
from terse.core.progress import progress
from terse.walloc.codec import PARALLEL_KIND, WallocCodec, load_codec, resolve_model_path, save_codec, save_parallel_tables
from terse.walloc.model import WallocNet
from terse.walloc.training import ImageCrops, entropy_fit_signals, evaluate, make_dataset, step_seeded


@dataclasses.dataclass(frozen=True)
class DecoderFinetuneConfig(FrozenConfig):
    """Hyper-parameters of :func:`finetune_decoder`.

    Attributes:
        steps: optimizer steps.
        learning_rate: peak AdamW learning rate (weight decay 0): warm-up, then cosine decay to 5%.
        warmup_steps: linear warm-up length.
        batch_size: random crops per step.
        crop: crop size in pixels.
        checkpoint_every: steps between checkpoints (and monitor evaluations).
        monitor_crops: a fixed batch of training crops evaluated at each checkpoint.
        seed: crop seed (the codecs' training used 0).
        decoder_width: a new decoder of this width (0: the source's decoder, trained further).
        decoder_blocks: residual blocks of the new decoder (used with ``decoder_width``).
        teacher_weight: weight of the MSE to the source codec's reconstruction (distillation
            from the source decoder), added to the MSE to the image.
        rounded_latents: train on the rounded latents the decoder sees in files instead of the
            noisy training latents (the encoder is frozen, so no gradient needs the noise).
        latent_step: a new quantization step for the source's latents (0: keep the source's);
            see :class:`terse.walloc.model.WallocConfig`.
        fit_steps: with ``latent_step``, the steps of the parallel context model's fit (0: its default).
    """

    steps: int = 22000
    learning_rate: float = 3e-4
    warmup_steps: int = 100
    batch_size: int = 16
    crop: int = 128
    checkpoint_every: int = 500
    monitor_crops: int = 32
    seed: int = 1
    decoder_width: int = 0
    decoder_blocks: int = 0
    teacher_weight: float = 0.0
    rounded_latents: bool = False
    latent_step: float = 0.0
    fit_steps: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.crop, self.checkpoint_every, self.monitor_crops) < 1:
            raise ConfigError("steps, batch_size, crop, checkpoint_every and monitor_crops must be >= 1")
        if self.decoder_width < 0 or self.decoder_blocks < 0 or (self.decoder_blocks and not self.decoder_width):
            raise ConfigError("decoder_width must be >= 0 (0 keeps the source decoder) and decoder_blocks >= 0 "
                              "(with a decoder_width)")
        if self.fit_steps < 0:
            raise ConfigError("fit_steps must be >= 0 (0: the fits' defaults)")
        if self.latent_step and not self.latent_step >= 1:
            raise ConfigError("latent_step must be >= 1 (or 0 to keep the source's)")
        if not self.teacher_weight >= 0:
            raise ConfigError("teacher_weight must be >= 0")
        if self.latent_step and self.teacher_weight:
            raise ConfigError("the teacher decodes the source's latents: with latent_step, train without a teacher")
        if not self.learning_rate > 0 or self.warmup_steps < 0:
            raise ConfigError("learning_rate must be > 0 and warmup_steps >= 0")

    def learning_rate_at(self, step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, self.warmup_steps))
        return self.learning_rate * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / self.steps)))


def _check_target(source: Path, folder: Path, overwrite: bool) -> None:
    if folder.resolve() == source.resolve() or source.resolve() in folder.resolve().parents:
        raise ConfigError(f"{folder} is (inside) the source codec; write the derived codec to a new folder")
    if folder.exists() and not overwrite:
        raise ConfigError(f"{folder} already exists (pass overwrite=True / --force to replace it)")


def _stored_half(folder: Path) -> bool:
    """Whether the source stores its network weights in fp16 (the derived codec keeps that)."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as stored:
        return all(stored.get_slice(k).get_dtype() == "F16" for k in stored.keys() if not k.startswith("entropy."))


def save_derived(source: WallocCodec, net, tables: dict[str, torch.Tensor], folder: Path, info: dict[str, Any]) -> str:
    """Save ``net`` + entropy ``tables`` as a codec in ``folder`` with the source's parallel
    tables carried over (the encoder must be the source's); returns the new model id."""
    for key, value in source.net.encoder.state_dict().items():
        if not torch.equal(value, net.encoder.state_dict()[key]):
            raise TrainingError("the encoder changed: the derived codec would not read the source's latents")
    info = {k: v for k, v in info.items() if k != "reads_model_ids"}
    if tables.keys() == source.tables.keys() and all(torch.equal(v, source.tables[k]) for k, v in tables.items()):
        # same encoder and entropy tables: every file of the source decodes with this codec
        info["reads_model_ids"] = sorted({source.model_id, *source.reads_model_ids})
    new_id = save_codec(net, tables, folder, info=info, name=source.name, half=_stored_half(source.folder))
    carry_parallel_tables(source, load_codec(folder))
    return new_id


def carry_parallel_tables(source: WallocCodec, target: WallocCodec) -> str | None:
    """Give ``target`` (a codec with the source's encoder) the source's parallel table sets:
    its earlier ones, oldest first, then its current one (so the target codes as the source
    does and reads every file the source reads). Returns the current set's id (None without)."""
    if source.parallel_folder is None:
        return None
    for key, value in source.net.encoder.state_dict().items():
        if not torch.equal(value, target.net.encoder.state_dict()[key]):
            raise TrainingError(f"{target.name} has another encoder than {source.name}: its latents differ")
    folders = [*source.earlier_parallel_ids.values(), source.parallel_folder]
    context_id = None
    for folder in folders:
        _, parallel, manifest = load_artifact(folder, PARALLEL_KIND)
        context_id = save_parallel_tables(target, parallel, info={**manifest.get("info", {}), "carried_from": source.model_id})
    return context_id


def student_net(source: WallocNet, width: int, blocks: int, latent_step: float = 0.0) -> WallocNet:
    """A codec network with the source's encoder and linear decoder path and (``width`` > 0) a
    fresh residual decoder of ``width`` x ``blocks`` (its output layer starts at zero: the
    linear codec), else the source's decoder; ``latent_step`` > 0 sets a new quantization step."""
    changes = {"latent_step": latent_step} if latent_step else {}
    if width:
        changes |= {"decoder_width": width, "decoder_blocks": blocks}
    net = WallocNet(dataclasses.replace(source.config, **changes))
    if width:
        net.encoder.load_state_dict(source.encoder.state_dict())
        net.linear_decoder.load_state_dict(source.linear_decoder.state_dict())
    else:
        net.load_state_dict(source.state_dict())
    return net


def _decoder_loss(net: WallocNet, teacher: WallocNet, batch: torch.Tensor, config: DecoderFinetuneConfig) -> torch.Tensor:
    if not config.rounded_latents and not config.teacher_weight:
        return net(batch)["mse"]  # the training pass: noisy latents
    with torch.no_grad():
        latent = net.encode(batch) if config.rounded_latents else net.bottleneck.noisy(net.encode_continuous(batch))
        target = teacher.decode(latent, clamp=False) if config.teacher_weight else None
    x_hat = net.decode(latent, clamp=False)
    loss = torch.mean((x_hat - batch) ** 2)
    return loss + config.teacher_weight * torch.mean((x_hat - target) ** 2) if target is not None else loss


def finetune_decoder(source: str | Path, data_dir: Path, out_dir: Path, config: DecoderFinetuneConfig | None = None,
                     max_minutes: float | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train the decoder of an image codec further, encoder frozen; resumes from
    ``out_dir/checkpoint``, writes ``out_dir/metrics.jsonl`` and, when done (or out of time,
    after a checkpoint), the derived codec ``out_dir/model``. Returns the trainer state."""
    config = config or DecoderFinetuneConfig()
    folder = resolve_model_path(source)
    codec = load_codec(folder)
    if codec.config.modality != "image":
        raise ConfigError("decoder fine-tuning is for image codecs (the audio decoder is linear)")
    out_dir = Path(out_dir)
    checkpoint = out_dir / "checkpoint"
    if not has_checkpoint(checkpoint):
        _check_target(folder, out_dir / "model", overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a new network, never the loaded one: loaded codecs are cached and shared
    net = student_net(codec.net, config.decoder_width, config.decoder_blocks, config.latent_step)
    net.encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=0.0)
    data = ImageCrops(Path(data_dir), config.crop)
    monitor = data.sample(np.random.default_rng([0, 999_999]), config.monitor_crops)
    if has_checkpoint(checkpoint):
        state = load_checkpoint(checkpoint, net, optimizer)
    else:
        state = {"step": 0, "seconds": 0.0, "history": [{"step": 0, **evaluate(net, monitor)}],
                 "config": config.to_dict(), "source_id": codec.model_id}
    if state.get("source_id") != codec.model_id:
        raise ArtifactError(f"{checkpoint} belongs to another source codec (id {state.get('source_id')})")
    started = time.perf_counter()
    bar = progress(total=config.steps, initial=state["step"], desc="decoder", unit="step")
    net.train()
    with open(out_dir / "metrics.jsonl", "a") as metrics:
        for step in range(state["step"], config.steps):
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate_at(step)
            with step_seeded(config.seed, step):  # the bottleneck noise too: a resumed run is exact
                batch = data.sample(np.random.default_rng([config.seed, step]), config.batch_size)
                loss = _decoder_loss(net, codec.net, batch, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] = step + 1
            bar.update(1)
            out_of_time = max_minutes is not None and time.perf_counter() - started > 60 * max_minutes
            if state["step"] % config.checkpoint_every == 0 or state["step"] == config.steps or out_of_time:
                state["seconds"] = round(state["seconds"] + time.perf_counter() - started, 1)
                started = time.perf_counter()
                state["history"].append({"step": state["step"], "lr": config.learning_rate_at(step),
                                         "seconds": state["seconds"], **evaluate(net, monitor)})
                metrics.write(json.dumps(state["history"][-1]) + "\n")
                metrics.flush()
                save_checkpoint(checkpoint, net, optimizer, state)
                if out_of_time:
                    break
    bar.close()
    net.eval()
    info = {**codec.info, "decoder_finetune": {
        **config.to_dict(), "steps_done": state["step"], "seconds": state["seconds"], "encoder": "frozen (bit-identical)",
        "monitor_psnr": [state["history"][0]["psnr"], state["history"][-1]["psnr"]], "source_id": codec.model_id}}
    if "decoder_finetune" in codec.info:  # a chain of derivations keeps each step's record, oldest first
        info["earlier_decoder_finetunes"] = [*codec.info.get("earlier_decoder_finetunes", []),
                                             codec.info["decoder_finetune"]]
    if config.latent_step:
        state["model_id"] = _save_requantized(codec, net, Path(data_dir), out_dir / "model", info, overwrite,
                                              config.fit_steps or None)
    else:
        state["model_id"] = save_derived(codec, net, codec.tables, out_dir / "model", info)
    return state


def _save_requantized(source: WallocCodec, net: WallocNet, data_dir: Path, folder: Path, info: dict[str, Any],
                      overwrite: bool, fit_steps: int | None) -> str:
    """Save a codec with a new latent step and its parallel context model, fitted on the training
    images' new latents (fitting options as the shipped codecs'); returns its id. No wavefront
    tables: that coder is ~30x slower and only older files need it."""
    from terse.walloc.training import fit_parallel_tables

    info = {k: v for k, v in info.items() if k != "reads_model_ids"}
    if folder.exists() and overwrite:
        import shutil

        shutil.rmtree(folder)
    new_id = save_codec(net, {}, folder, info=info, name=f"{source.name}-step{net.config.latent_step:g}",
                        half=_stored_half(source.folder))
    fit_parallel_tables(folder, data_dir, steps=fit_steps)
    return new_id


def refit_entropy_tables(source: str | Path, data_dir: Path, out_folder: Path, hidden: tuple[int, int] | None = None,
                         steps: int | None = None, count: int = 96, overwrite: bool = False) -> str:
    """Refit the MLP entropy tables of an image codec on ``count`` whole images of
    ``data_dir`` (its training data) into a new codec folder; returns the new model id."""
    from terse.walloc.entropy_model import FIT_STEPS, HIDDEN, fit_entropy_model

    folder = resolve_model_path(source)
    codec = load_codec(folder)
    if codec.config.modality != "image":
        raise ConfigError("the MLP entropy model is for image codecs (audio keeps the linear model)")
    _check_target(folder, Path(out_folder), overwrite)
    data = make_dataset("image", data_dir, 64, 0)
    with torch.no_grad():
        latents = [codec.net.encode(x)[0] for x in entropy_fit_signals(data, codec.config, count=count)]
    tables = fit_entropy_model(latents, codec.config, steps=steps or FIT_STEPS, hidden=hidden or HIDDEN)
    info = {**codec.info, "entropy_fit": {"signals": len(latents), "steps": steps or FIT_STEPS,
                                          "hidden": list(hidden or HIDDEN), "data": Path(data_dir).name}}
    return save_derived(codec, codec.net, tables, Path(out_folder), info)
