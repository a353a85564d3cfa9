"""Latent storage of the shipped WaLLoC codecs: context-model payload bytes vs lossless-WebP
latents vs the first release's linear context model, on the 24 Kodak images and the 3 held-out
music clips, with end-to-end compress / decompress times (1 torch thread).

The first release's entropy tables are read from git history (``--baseline`` commit), so the
old model is measured on the same latents in the same run.

    python benchmarks/bench_walloc_entropy.py            # -> results/walloc/entropy.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, meta, write_json  # noqa: E402

BASELINE = "76969bf"  # last commit with the linear context model for every shipped codec
MODELS = ("walloc-rgb-16x", "walloc-rgb-4x", "walloc-stereo-5x")


def baseline_tables(name: str, commit: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    blob = subprocess.run(["git", "show", f"{commit}:src/terse/pretrained/{name}/model.safetensors"],
                          capture_output=True, check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    return {k: v.float() for k, v in load(blob).items() if k.startswith("entropy.")}


def signals(modality: str) -> list[tuple[np.ndarray, int]]:
    from PIL import Image

    from terse.core.paths import data_path
    from terse.walloc.signals import read_audio
    from terse.walloc.training import HELD_OUT_AUDIO

    if modality == "image":
        return [(np.asarray(Image.open(p).convert("RGB")), 0)
                for p in sorted(Path(data_path("images", "kodak")).glob("*.png"))]
    return [read_audio(data_path("audio", "music", clip)) for clip in HELD_OUT_AUDIO]


def bench(name: str, commit: str) -> dict:
    from terse.walloc.codec import decompress, load_codec, read_wlc
    from terse.walloc.linear_context import LinearContextModel

    codec = load_codec(name)
    old = LinearContextModel(baseline_tables(name, commit), codec.net.bottleneck.max_int, codec.config.modality)
    row = dict.fromkeys(("context_bytes", "webp_bytes", "old_context_bytes", "context_file_bytes", "webp_file_bytes"), 0)
    times = dict.fromkeys(("compress_s", "decompress_s", "old_context_encode_s", "old_context_decode_s",
                           "latent_encode_s"), 0.0)
    items = signals(codec.config.modality)
    for signal, rate in items:
        t = time.perf_counter()
        blob = codec.compress(signal, sample_rate=rate)
        times["compress_s"] += time.perf_counter() - t
        t = time.perf_counter()
        out = decompress(blob, codec)
        times["decompress_s"] += time.perf_counter() - t
        webp = codec.compress(signal, sample_rate=rate, storage="webp")
        if not np.array_equal(decompress(webp, codec).data, out.data):
            raise SystemExit(f"{name}: context and WebP storage decode differently")
        t = time.perf_counter()
        latent, _ = codec.encode_latent(signal)
        times["latent_encode_s"] += time.perf_counter() - t
        t = time.perf_counter()
        old_payload = old.encode(latent)
        times["old_context_encode_s"] += time.perf_counter() - t
        t = time.perf_counter()
        if not np.array_equal(old.decode(old_payload, latent.shape), latent):
            raise SystemExit(f"{name}: old context model does not round-trip")
        times["old_context_decode_s"] += time.perf_counter() - t
        row["context_bytes"] += len(read_wlc(blob)[1])
        row["webp_bytes"] += len(read_wlc(webp)[1])
        row["old_context_bytes"] += len(old_payload)
        row["context_file_bytes"] += len(blob)
        row["webp_file_bytes"] += len(webp)
    row.update({k: round(v / len(items), 4) for k, v in times.items()})
    row["signals"] = len(items)
    row["context_model"] = type(codec.context).__name__
    row["saving_vs_webp"] = round(1 - row["context_bytes"] / row["webp_bytes"], 4)
    row["old_saving_vs_webp"] = round(1 - row["old_context_bytes"] / row["webp_bytes"], 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name in args.models:
        results[name] = bench(name, args.baseline)
        print(name, results[name], flush=True)
    write_json(RESULTS / "walloc" / "entropy.json", {"meta": meta(seed=0, torch_threads=1, baseline=args.baseline),
                                                     "per_signal_means_of_times": True, **results})


if __name__ == "__main__":
    main()
