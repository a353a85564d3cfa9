"""Training WaLLoC codecs on CPU: ``terse walloc train --modality image|audio --data DIR``.

The paper's recipe, shortened for CPU: pixel/sample MSE only (no rate term: rate is set by
the latent size and the 8-bit bottleneck), AdamW with weight decay 0, warm-up then cosine
decay. The encoder and the linear decoder path start from the closed-form PCA of the
wavelet coefficients (the noise-free optimum of a linear codec), so training spends its
steps on the non-linear decoder. Runs under Hugging Face Accelerate; checkpoints (model +
optimizer + state) are written atomically every ``checkpoint_every`` steps and training
resumes from them. At each checkpoint the current model, with its entropy model refitted
on training latents, is exported as an artifact folder ``out_dir/model``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terse.core.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from terse.core.config import FrozenConfig
from terse.core.errors import ConfigError, DataError
from terse.core.progress import progress
from terse.walloc.model import WallocConfig, WallocNet, pca_init
from terse.walloc.signals import AUDIO_SUFFIXES, IMAGE_SUFFIXES, image_to_array

logger = logging.getLogger(__name__)

# Music clips held out of audio training for evaluation (``audio/music``).
HELD_OUT_AUDIO = (
    "espadf_kevin_macleod_sample_stereo44k.wav",
    "librosa_Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "librosa_admiralbob77_-_Choice_-_Drum-bass.ogg",
)


@dataclasses.dataclass(frozen=True)
class WallocTrainConfig(FrozenConfig):
    """Training hyper-parameters.

    Attributes:
        steps: optimizer steps in total.
        batch_size: crops per step.
        crop: crop size: pixels per side (images) or samples (audio).
        learning_rate: peak AdamW learning rate (weight decay 0, as the paper).
        warmup_steps: linear warm-up, then cosine decay to 5% of the peak.
        checkpoint_every: steps between checkpoints / exports.
        pca_crops: crops used for the PCA initialisation and the entropy model fit.
        init_spread: std of the strongest latent at initialisation, in units of the companding
            scale (sets the quantization step, hence the rate: see :func:`pca_init`).
        validation_crops: a fixed batch of crops (from the training data) evaluated at each checkpoint.
        freeze_encoder: keep the PCA encoder fixed and train only the decoder. Used for audio:
            with heavy-tailed music the training noise near the companding limits (where the
            inverse normal CDF is steep) makes joint training shrink the encoder gain and lose
            eval quality (measured: 44.4 dB -> 42.7 dB validation PSNR after 200 steps).
        seed: data and noise seed.
    """

    steps: int = 4000
    batch_size: int = 8
    crop: int = 128
    learning_rate: float = 5e-4
    warmup_steps: int = 100
    checkpoint_every: int = 250
    pca_crops: int = 256
    init_spread: float = 0.25
    validation_crops: int = 32
    freeze_encoder: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.crop < 1:
            raise ConfigError("steps, batch_size and crop must be >= 1")
        if not self.learning_rate > 0:
            raise ConfigError("learning_rate must be > 0")
        if self.checkpoint_every < 1 or self.warmup_steps < 0:
            raise ConfigError("checkpoint_every must be >= 1 and warmup_steps >= 0")

    def learning_rate_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress_frac = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_frac))))


class ImageCrops:
    """Random RGB crops in [-0.5, 0.5] from every image of a folder (recursive), with flips."""

    def __init__(self, folder: Path, crop: int, exclude_last: int = 0) -> None:
        from PIL import Image

        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.images: list[np.ndarray] = []
        for path in files:
            with Image.open(path) as image:
                array = image_to_array(image, str(path))
            if min(array.shape[:2]) >= crop:
                self.images.append(array)
        if not self.images:
            raise DataError(f"{folder}: no image is at least {crop}x{crop} pixels")
        self.crop = crop

    def sample(self, rng: np.random.Generator, count: int) -> torch.Tensor:
        out = np.empty((count, self.crop, self.crop, 3), dtype=np.uint8)
        for n in range(count):
            image = self.images[rng.integers(len(self.images))]
            top = rng.integers(image.shape[0] - self.crop + 1)
            left = rng.integers(image.shape[1] - self.crop + 1)
            patch = image[top: top + self.crop, left: left + self.crop]
            out[n] = patch[:, ::-1] if rng.random() < 0.5 else patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255 - 0.5  # (B, 3, crop, crop)


class AudioCrops:
    """Random stereo crops from a folder of audio files (mono files are duplicated to both
    channels), with random gain and channel swap; ``exclude`` names are held out."""

    def __init__(self, folder: Path, crop: int, sample_rate: int, exclude: tuple[str, ...] = HELD_OUT_AUDIO) -> None:
        from terse.walloc.signals import read_audio

        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.name not in exclude)
        self.clips: list[np.ndarray] = []
        for path in files:
            samples, rate = read_audio(path)
            if rate != sample_rate:
                logger.warning("skipping %s: %d Hz, the codec is trained at %d Hz", path.name, rate, sample_rate)
                continue
            if samples.shape[0] == 1:
                samples = np.repeat(samples, 2, axis=0)
            if samples.shape[0] == 2 and samples.shape[1] >= crop:
                self.clips.append(samples)
        if not self.clips:
            raise DataError(f"{folder}: no usable {sample_rate} Hz audio of at least {crop} samples")
        self.crop = crop
        weights = np.array([c.shape[1] for c in self.clips], dtype=np.float64)
        self.weights = weights / weights.sum()

    def sample(self, rng: np.random.Generator, count: int) -> torch.Tensor:
        out = np.empty((count, 2, self.crop), dtype=np.float32)
        for n in range(count):
            clip = self.clips[rng.choice(len(self.clips), p=self.weights)]
            start = rng.integers(clip.shape[1] - self.crop + 1)
            seg = clip[:, start: start + self.crop]
            if rng.random() < 0.5:
                seg = seg[::-1]
            out[n] = np.clip(seg * rng.uniform(0.5, 1.5), -1, 1)
        return torch.from_numpy(out)


@contextlib.contextmanager
def step_seeded(seed: int, step: int):
    """torch's global RNG (training noise) seeded by (seed, step) inside, restored after: the
    noise of a step does not depend on how many steps ran in this process, so resume is exact."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed * 1_000_003 + step)
        yield


def make_dataset(modality: str, folder: Path, crop: int, sample_rate: int):
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a directory")
    return ImageCrops(folder, crop) if modality == "image" else AudioCrops(folder, crop, sample_rate)


def _coefficient_samples(net: WallocNet, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        coeffs = net.analysis(batch)  # (B, wc, ...)
    return coeffs.transpose(0, 1).reshape(coeffs.shape[1], -1).T  # (positions, wc)


def evaluate(net: WallocNet, batch: torch.Tensor) -> dict[str, float]:
    """Eval-mode (rounded latents) MSE and PSNR on a batch."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        out = net(batch)
        x_hat = out["x_hat"].clamp(-0.5, 0.5) if net.config.modality == "image" else out["x_hat"].clamp(-1, 1)
        mse = float(torch.mean((x_hat - batch) ** 2))
    net.train(was_training)
    peak = 1.0 if net.config.modality == "image" else 2.0
    return {"mse": mse, "psnr": 10 * math.log10(peak**2 / max(mse, 1e-12))}


def entropy_fit_signals(data, config: WallocConfig, count: int | None = None) -> list[torch.Tensor]:
    """Whole signals (not small crops: fewer borders) for fitting the entropy model:
    ``count`` training images spread over the set (default 96), or ``count`` 2**17-sample audio
    segments (default 24)."""
    count = count or (96 if isinstance(data, ImageCrops) else 24)
    from terse.nn.wavelets import pad_to_multiple

    if isinstance(data, ImageCrops):
        picks = data.images[:: max(1, len(data.images) // count)][:count]
        tensors = [torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1)[None].float() / 255 - 0.5 for im in picks]
        return [pad_to_multiple(t, config.block, (2, 3))[0] for t in tensors]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        clip = data.clips[rng.choice(len(data.clips), p=data.weights)]
        length = min(clip.shape[1], 2**17)
        start = rng.integers(clip.shape[1] - length + 1)
        out.append(pad_to_multiple(torch.from_numpy(np.ascontiguousarray(clip[:, start: start + length]))[None],
                                   config.block, (2,))[0])
    return out


def fit_parallel_tables(name_or_path: str | Path, data_dir: Path, steps: int | None = None, count: int = 500,
                        positions: int | None = None, seed: int = 0, log=None) -> str:
    """Fit the parallel context model (:mod:`terse.walloc.parallel_context`) of a saved image
    codec on ``count`` whole training images and save it as ``<codec>/parallel``; returns its id.
    The codec's own weights and entropy tables are not touched."""
    from terse.walloc.codec import load_codec, save_parallel_tables
    from terse.walloc.context_models import fit_context_tables
    from terse.walloc.parallel_context import FIT_POSITIONS, FIT_STEPS

    codec = load_codec(name_or_path)
    if codec.config.modality != "image":
        raise ConfigError("the parallel context model is for image codecs")
    data = make_dataset("image", data_dir, 64, 0)
    with torch.no_grad():
        latents = [codec.net.encode(x)[0] for x in entropy_fit_signals(data, codec.config, count=count)]
    tables = fit_context_tables(latents, codec.config, kind="parallel", steps=steps or FIT_STEPS,
                                positions=positions or FIT_POSITIONS, seed=seed, log=log)
    info = {"images": len(latents), "steps": steps or FIT_STEPS, "positions": positions or FIT_POSITIONS,
            "seed": seed, "data": Path(data_dir).name}
    return save_parallel_tables(codec, tables, info=info)


def linear_codec(model_config: WallocConfig, train_config: WallocTrainConfig, data_dir: Path):
    """The closed-form linear (PCA) codec: PCA encoder, its inverse as decoder, the same
    bottleneck and a fitted context model; no gradient training. This is exactly the starting
    point of :func:`train_walloc` (same crops, same seed). Returns a WallocCodec."""
    from terse.walloc.codec import WallocCodec
    from terse.walloc.context_models import fit_context_tables

    config = model_config.replace(decoder_blocks=0)
    data = make_dataset(config.modality, data_dir, train_config.crop, config.sample_rate)
    net = WallocNet(config)
    fit_batch = data.sample(np.random.default_rng([train_config.seed, 888_888]), train_config.pca_crops)
    info = pca_init(net, _coefficient_samples(net, fit_batch), spread=train_config.init_spread)
    net.eval()
    with torch.no_grad():
        latents = [net.encode(x)[0] for x in entropy_fit_signals(data, config)]
    codec = WallocCodec(net, fit_context_tables(latents, config), "linear", f"linear-pca-{config.latent_dim}c")
    codec.info = {"trained_on": str(data_dir), "pca_init": info, "train_config": train_config.to_dict(), "steps": 0}
    return codec


def train_walloc(model_config: WallocConfig, train_config: WallocTrainConfig, data_dir: Path, out_dir: Path,
                 max_minutes: float | None = None, name: str | None = None) -> dict[str, Any]:
    """Train (or resume) a codec; returns the final state. ``max_minutes`` stops early
    (after a checkpoint) so long runs can be split; rerunning resumes."""
    from accelerate import Accelerator

    from terse.walloc.codec import save_codec
    from terse.walloc.context_models import fit_context_tables

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(train_config.seed)
    data = make_dataset(model_config.modality, data_dir, train_config.crop, model_config.sample_rate)
    # a fixed batch of training-distribution crops to monitor progress (held-out evaluation is the benchmark's job)
    valid = data.sample(np.random.default_rng([train_config.seed, 999_999]), train_config.validation_crops)
    net = WallocNet(model_config)
    if train_config.freeze_encoder:
        net.encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=train_config.learning_rate,
                                  weight_decay=0.0)
    checkpoint = out_dir / "checkpoint"
    if has_checkpoint(checkpoint):
        state = load_checkpoint(checkpoint, net, optimizer)
        logger.info("resumed from %s at step %d", checkpoint, state["step"])
    else:
        fit_batch = data.sample(np.random.default_rng([train_config.seed, 888_888]), train_config.pca_crops)
        pca = pca_init(net, _coefficient_samples(net, fit_batch), spread=train_config.init_spread)
        state = {"step": 0, "elapsed_s": 0.0, "history": [], "pca": pca,
                 "model_config": model_config.to_dict(), "train_config": train_config.to_dict()}
        state["history"].append({"step": 0, **evaluate(net, valid)})
        logger.info("PCA init: %s, %s", pca, state["history"][-1])
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    net, optimizer = accelerator.prepare(net, optimizer)
    raw = accelerator.unwrap_model(net)
    def export() -> None:
        raw.eval()
        with torch.no_grad():
            latents = [raw.encode(x)[0] for x in entropy_fit_signals(data, model_config)]
        tables = fit_context_tables(latents, model_config)
        raw.train()
        info = {"trained_on": str(data_dir), "steps": state["step"], "train_seconds": round(state["elapsed_s"], 1),
                "train_config": train_config.to_dict(), "validation": state["history"][-1] if state["history"] else None,
                "pca_init": state.get("pca")}
        if model_config.modality == "audio":
            info["held_out"] = list(HELD_OUT_AUDIO)
        save_codec(raw, tables, out_dir / "model", info=info, name=name, half=True)

    start_step = state["step"]
    started = run_started = time.perf_counter()
    bar = progress(total=train_config.steps, initial=start_step, desc=f"walloc {model_config.modality}", unit="step")
    net.train()
    metrics = open(out_dir / "metrics.jsonl", "a")
    try:
        for step in range(start_step, train_config.steps):
            rng = np.random.default_rng([train_config.seed, step])
            batch = data.sample(rng, train_config.batch_size).to(accelerator.device)
            for group in optimizer.param_groups:
                group["lr"] = train_config.learning_rate_at(step)
            with step_seeded(train_config.seed, step):
                out = net(batch)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(out["mse"])
            optimizer.step()
            state["step"] = step + 1
            bar.update(1)
            if (step + 1) % 25 == 0:
                bar.set_postfix(mse=f"{float(out['mse'].detach()):.2e}")
            last = step + 1 == train_config.steps
            elapsed = state["elapsed_s"] + time.perf_counter() - started
            out_of_time = max_minutes is not None and time.perf_counter() - run_started > 60 * max_minutes
            if (step + 1) % train_config.checkpoint_every == 0 or last:
                state["elapsed_s"] = elapsed
                started = time.perf_counter()
                record = {"step": step + 1, "train_mse": float(out['mse'].detach()), "lr": train_config.learning_rate_at(step),
                          "rate_bits": float(out["rate_bits"]),
                          "elapsed_s": round(elapsed, 1), **evaluate(raw, valid)}
                state["history"].append(record)
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                save_checkpoint(checkpoint, raw, optimizer, state)
                export()
                logger.info("step %d: %s", step + 1, record)
                if out_of_time:
                    break
    finally:
        bar.close()
        metrics.close()
    if start_step >= train_config.steps:  # nothing left to train: re-export (e.g. after a code update)
        export()
    return state
