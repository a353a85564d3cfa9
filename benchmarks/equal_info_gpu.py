"""Flat vs two-level 65,536-token output for Equal-Info b16 M2s (one GPU run, or CPU --quick).

    python benchmarks/equal_info_gpu.py --cache runs/equal_info/cache --out results/equal_info [--device cuda]

Trains M2 sizes s and m on the cached Equal-Info b16 tokens of bench_equal_info.py (the
same 1 MB training sample; 2, 8 and 32 MB of text seen) with three outputs: v256 (two
tokens per window), v65k two-level (``M2TrainConfig(output="two-level")``: cheaper per
token, measured worse) and v65k flat softmax (the paper's, and terse's default), all with
the same plain loop, so they compare with each other (not with the CPU rows trained by
``train_lm``). Writes OUT/output_layer_gpu.json (committed: results/equal_info/).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from terse.nn.gpt import GPT, GPTConfig
from terse.nn.train_lm import TrainConfig, evaluate_loss, make_optimizer, sample_batch
from terse.textcomp.m2 import M2_SIZES

TRAIN_KEY, VALID_KEY = "4834c50cfe583f1d", "0badb3c946b7a896"  # example digests of the 1 MB sample / text/valid


def load_tokens(cache: Path, split: str):
    (path,) = cache.glob(f"equal_info_b16_v65536-*-{split}.npy")  # name-fingerprint-examples digest
    tokens = np.load(path, allow_pickle=False).astype(np.int64)
    return tokens, json.loads(path.with_suffix(".json").read_text())["num_bytes"]


def train_one(tokens, valid, valid_bytes, vocab, two_level, size, seen_bytes, bytes_per_token, device, quick):
    seq_len, batch = 128, 16
    steps = max(1, math.ceil(seen_bytes / bytes_per_token / (seq_len * batch)))
    if quick:
        steps = 3
    config = TrainConfig(seq_len=seq_len, batch_size=batch, max_steps=steps, learning_rate=3e-3,
                         warmup_steps=max(1, steps // 20), decay_fraction=0.25, mixed_precision="bf16")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, window=seq_len, two_level_vocab=two_level, **M2_SIZES[size])).to(device)
    optimizer = make_optimizer(model, config)
    span = len(tokens) - seq_len - 1
    start = time.perf_counter()
    for step in range(steps):
        rng = np.random.default_rng([0, step, 0])
        inputs, targets = sample_batch(tokens, rng.integers(0, span, batch), seq_len, None)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(step)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(inputs.to(device), targets.to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    val = evaluate_loss(model, valid, seq_len, 8 if quick else 256, bos=None, autocast=True)
    return {"size": size, "vocab": vocab, "two_level": two_level, "seen_bytes": seen_bytes, "steps": steps,
            "bits_per_byte": val / math.log(2) * len(valid) / valid_bytes, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="3 steps per run (a smoke test)")
    args = parser.parse_args()
    device = torch.device(args.device)
    wide, train_bytes = load_tokens(args.cache, TRAIN_KEY)
    wide_valid, valid_bytes = load_tokens(args.cache, VALID_KEY)
    narrow = np.stack((wide >> 8, wide & 255), axis=1).reshape(-1)
    narrow_valid = np.stack((wide_valid >> 8, wide_valid & 255), axis=1).reshape(-1)
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    info = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "torch": torch.__version__}
    for size, seen in (("s", 2_000_000), ("s", 8_000_000), ("m", 2_000_000), ("m", 8_000_000),
                       ("s", 32_000_000), ("m", 32_000_000)):
        for vocab, two_level, data, valid in ((256, False, narrow, narrow_valid), (65536, True, wide, wide_valid),
                                              (65536, False, wide, wide_valid)):
            row = train_one(data, valid, valid_bytes, vocab, two_level, size, seen, train_bytes / len(data),
                            device, args.quick)
            rows.append(row)
            print(json.dumps(row), flush=True)
            # written after every run, so a time limit still leaves the finished rows
            (args.out / "output_layer_gpu.json").write_text(json.dumps({"meta": info, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
