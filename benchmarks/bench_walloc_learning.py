"""Compressed-domain learning with WaLLoC (the paper's second half), audio task:
speech / music / other classification of 1 s clips, from WaLLoC latents vs from samples at
about the same number of input values.

* latents: ``walloc-stereo-5x`` continuous companded latents (the paper feeds these, before
  rounding) of a 1 s stereo clip at 44.1 kHz: 108 channels x 173 steps = 18,684 values;
* samples: the same clip box-filtered and decimated by 5 (8.8 kHz): 2 x 8,820 = 17,640 values.

Clips come from ``audio/speech``, ``audio/music`` and ``audio/other``; files are split by
file (every third file of each class is a test file), so no test clip shares a recording
with a training clip. Clips at other rates are linearly resampled to 44.1 kHz, mono is
duplicated to stereo. A small 1-D CNN per input type, same training recipe; reports balanced
test accuracy, parameters, training time and inference time (1 torch thread, shared CPU).

    python benchmarks/bench_walloc_learning.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

CLASSES = ("speech", "music", "other")
RATE = 44100
MAX_CLIPS_PER_FILE = 24
EPOCHS = 25
SEEDS = (0, 1, 2)


def load_clips(codec) -> dict:
    from terse.core.paths import data_path
    from terse.walloc.signals import AUDIO_SUFFIXES, read_audio

    split = {"train": [], "test": []}
    for label, name in enumerate(CLASSES):
        files = sorted(p for p in data_path("audio", name).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        for index, path in enumerate(files):
            samples, rate = read_audio(path)
            if samples.shape[0] == 1:
                samples = np.repeat(samples, 2, axis=0)
            samples = samples[:2]
            if rate != RATE:
                t_new = np.arange(int(samples.shape[1] * RATE / rate)) / RATE
                t_old = np.arange(samples.shape[1]) / rate
                samples = np.stack([np.interp(t_new, t_old, ch) for ch in samples]).astype(np.float32)
            windows = [samples[:, s: s + RATE] for s in range(0, samples.shape[1] - RATE + 1, RATE)]
            windows = [w for w in windows if np.sqrt(np.mean(w**2)) > 1e-3][:MAX_CLIPS_PER_FILE]
            part = "test" if index % 3 == 0 else "train"
            split[part] += [(w, label, path.name) for w in windows]
    return split


def features(clips, codec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float]:
    from terse.nn.wavelets import pad_to_multiple

    x = torch.from_numpy(np.stack([c for c, _, _ in clips]))  # (N, 2, 44100)
    labels = torch.tensor([label for _, label, _ in clips])
    start = time.perf_counter()
    with torch.no_grad():
        latents = codec.net.encode_continuous(pad_to_multiple(x, codec.config.block, (2,))[0]) / 127.0
    t_latent = time.perf_counter() - start
    start = time.perf_counter()
    samples = torch.nn.functional.avg_pool1d(x, 5, 5) * 4  # box filter + decimate by 5
    t_samples = time.perf_counter() - start
    return latents, samples, labels, t_latent / len(clips), t_samples / len(clips)


def make_model(kind: str, in_channels: int) -> nn.Module:
    if kind == "latents":  # (108, 173): the WPT already did the time-frequency analysis
        body = [nn.Conv1d(in_channels, 64, 3, padding=1), nn.ReLU(), nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.ReLU()]
    else:  # (2, 8820): learn a filterbank first
        body = [nn.Conv1d(in_channels, 64, 16, stride=8), nn.ReLU(), nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*body, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, len(CLASSES)))


def train_eval(kind: str, train_x, train_y, test_x, test_y, seed: int) -> dict:
    torch.manual_seed(seed)
    model = make_model(kind, train_x.shape[1])
    counts = torch.bincount(train_y, minlength=len(CLASSES)).float()
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (len(CLASSES) * counts))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    mean, std = train_x.mean(dim=(0, 2), keepdim=True), train_x.std(dim=(0, 2), keepdim=True) + 1e-6
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        order = rng.permutation(len(train_x))
        for b in range(0, len(order), 32):
            idx = torch.from_numpy(order[b: b + 32])
            loss = loss_fn(model((train_x[idx] - mean) / std), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - start
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        pred = model((test_x - mean) / std).argmax(1)
    infer_s = (time.perf_counter() - start) / len(test_x)
    recalls = [float((pred[test_y == c] == c).float().mean()) for c in range(len(CLASSES))]
    return {"balanced_accuracy": float(np.mean(recalls)), "per_class_recall": dict(zip(CLASSES, recalls, strict=True)),
            "parameters": sum(p.numel() for p in model.parameters()), "train_seconds": train_s,
            "inference_ms_per_clip": 1e3 * infer_s}


def main() -> None:
    from terse.walloc.codec import load_codec

    torch.set_num_threads(1)
    codec = load_codec("walloc-stereo-5x")
    split = load_clips(codec)
    tr_lat, tr_smp, tr_y, t_lat, t_smp = features(split["train"], codec)
    te_lat, te_smp, te_y, _, _ = features(split["test"], codec)
    results = {"clips": {part: {c: int(sum(1 for _, y, _ in split[part] if y == i)) for i, c in enumerate(CLASSES)}
                         for part in split},
               "input_values": {"latents": int(np.prod(tr_lat.shape[1:])), "samples": int(np.prod(tr_smp.shape[1:]))},
               "feature_ms_per_clip": {"latents": 1e3 * t_lat, "samples": 1e3 * t_smp}, "runs": {}}
    for kind, (trx, tex) in (("latents", (tr_lat, te_lat)), ("samples", (tr_smp, te_smp))):
        runs = [train_eval(kind, trx, tr_y, tex, te_y, seed) for seed in SEEDS]
        results["runs"][kind] = runs
        accs = [r["balanced_accuracy"] for r in runs]
        print(f"{kind}: balanced accuracy {np.mean(accs):.3f} +- {np.std(accs):.3f}", flush=True)
    write_json(RESULTS / "walloc" / "learning_audio.json", {"meta": meta(seed=list(SEEDS)), **results})
    lines = ["### Compressed-domain learning: audio classification (speech / music / other, 1 s clips)", "",
             f"`python benchmarks/bench_walloc_learning.py`; clips (train / test, split by file): "
             f"{results['clips']['train']} / {results['clips']['test']}; {EPOCHS} epochs, seeds {list(SEEDS)}.", "",
             "| input | values per clip | params | balanced test acc. (mean +- sd) | recall speech / music / other "
             "| train s | infer ms/clip | feature ms/clip |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, runs in results["runs"].items():
        accs = [r["balanced_accuracy"] for r in runs]
        lines.append(f"| {'WaLLoC 5x latents' if kind == 'latents' else 'samples decimated by 5'} | "
                     f"{results['input_values'][kind]:,} | {runs[0]['parameters']:,} | "
                     f"{np.mean(accs):.3f} +- {np.std(accs):.3f} | "
                     + " / ".join(f"{np.mean([r['per_class_recall'][c] for r in runs]):.2f}" for c in CLASSES) + " | "
                     f"{np.mean([r['train_seconds'] for r in runs]):.1f} | "
                     f"{np.mean([r['inference_ms_per_clip'] for r in runs]):.2f} | {results['feature_ms_per_clip'][kind]:.2f} |")
    lines += ["", "The test set is small (a few recordings per class, split by recording), so differences of a few "
              "points are within noise; 'other' has only 6 recordings (4 for training)."]
    update_report_section("walloc-learning", "\n".join(lines))


if __name__ == "__main__":
    main()
