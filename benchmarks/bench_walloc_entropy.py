"""Latent storage of the shipped WaLLoC codecs: context-model payload bytes vs lossless-WebP
latents vs the per-channel linear context model (the first release's model, refitted here on
the codec's training data), on the 24 Kodak images and the 3 held-out music clips, with
end-to-end compress / decompress times (1 torch thread). Reads only the working tree and the
data folder.

    python benchmarks/bench_walloc_entropy.py            # -> results/walloc/entropy.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, meta, write_json  # noqa: E402

MODELS = ("walloc-rgb-16x", "walloc-rgb-4x", "walloc-stereo-5x")


def linear_tables(codec) -> dict[str, torch.Tensor]:
    """The linear context model fitted on the codec's training latents (as the first release did)."""
    from terse.core.paths import data_path
    from terse.walloc.linear_context import fit_linear_context_model
    from terse.walloc.training import entropy_fit_signals, make_dataset

    if "entropy.mean_weights" in codec.tables:  # the codec's own model already is the linear one
        return codec.tables
    data = make_dataset("image", data_path("images", "train", "bsds500"), 64, 0)
    with torch.no_grad():
        latents = [codec.net.encode(x)[0] for x in entropy_fit_signals(data, codec.config)]
    return fit_linear_context_model(latents, codec.config)


def signals(modality: str) -> list[tuple[np.ndarray, int]]:
    from PIL import Image

    from terse.core.paths import data_path
    from terse.walloc.signals import read_audio
    from terse.walloc.training import HELD_OUT_AUDIO

    if modality == "image":
        return [(np.asarray(Image.open(p).convert("RGB")), 0)
                for p in sorted(Path(data_path("images", "kodak")).glob("*.png"))]
    return [read_audio(data_path("audio", "music", clip)) for clip in HELD_OUT_AUDIO]


def bench(name: str) -> dict:
    from terse.walloc.codec import decompress, load_codec, read_wlc
    from terse.walloc.linear_context import LinearContextModel

    codec = load_codec(name)
    linear = LinearContextModel(linear_tables(codec), codec.net.bottleneck.max_int, codec.config.modality)
    row = dict.fromkeys(("context_bytes", "webp_bytes", "linear_context_bytes", "context_file_bytes", "webp_file_bytes"), 0)
    times = dict.fromkeys(("compress_s", "decompress_s", "linear_context_encode_s", "linear_context_decode_s",
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
        linear_payload = linear.encode(latent)
        times["linear_context_encode_s"] += time.perf_counter() - t
        t = time.perf_counter()
        if not np.array_equal(linear.decode(linear_payload, latent.shape), latent):
            raise SystemExit(f"{name}: linear context model does not round-trip")
        times["linear_context_decode_s"] += time.perf_counter() - t
        row["context_bytes"] += len(read_wlc(blob)[1])
        row["webp_bytes"] += len(read_wlc(webp)[1])
        row["linear_context_bytes"] += len(linear_payload)
        row["context_file_bytes"] += len(blob)
        row["webp_file_bytes"] += len(webp)
    row.update({k: round(v / len(items), 4) for k, v in times.items()})
    row["signals"] = len(items)
    row["context_model"] = type(codec.context).__name__
    row["saving_vs_webp"] = round(1 - row["context_bytes"] / row["webp_bytes"], 4)
    row["linear_saving_vs_webp"] = round(1 - row["linear_context_bytes"] / row["webp_bytes"], 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name in args.models:
        results[name] = bench(name)
        print(name, results[name], flush=True)
    write_json(RESULTS / "walloc" / "entropy.json", {"meta": meta(seed=0, torch_threads=1, linear_context="refitted"),
                                                     "per_signal_means_of_times": True, **results})


if __name__ == "__main__":
    main()
