"""Equal-Info Windows and M2 over compressed text (Lester et al. 2024, Tables 2 and 15, small scale).

    python benchmarks/bench_equal_info.py [--stage tokenize|extras|train|generate|report|all]

Stages (each resumable: tokenizations and M2 runs are cached under runs/equal_info/):
  tokenize  train/valid examples, SentencePiece, every tokenization M2 is trained on
  extras    compression ratios of b64/b128 and of the greedy rule, greedy mismatch rate,
            round trips of every file of text/valid and of 10,000 random Unicode strings
  train     M2 (sizes s and m) over each tokenization, same number of training bytes
  scaling   some of those M2s again with 4x the training bytes (8 MB seen)
  generate  sampling speed: byte-level M2 vs Equal-Info b16/v65k M2
  report    results/equal_info/*.json, plots, the `equal-info` REPORT.md section

M1 is the shipped m1-small (its own bits/byte on text/valid is reported). Timings are on
the benchmark machine's CPU with one thread per process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, ROOT, meta, update_report_section, write_json  # noqa: E402

WORK = ROOT / "runs" / "equal_info"
CACHE = WORK / "cache"
OUT = RESULTS / "equal_info"
M1_NAME = "m1-small"
TRAIN_BYTES = 1_000_000  # distinct training text (seeded sample of text/train examples)
SEEN_BYTES = 2_000_000  # bytes every M2 sees in training
M2_METHODS = ["bytes", "sentencepiece_v8192", "equal_info_b16_v256", "equal_info_b16_v65536",
              "equal_info_b32_v256", "equal_info_b32_v65536", "ac_v256", "static_ac_v256", "gzip_v256"]
CR_METHODS = M2_METHODS + ["ac_v65536", "static_ac_v65536", "gzip_v65536", "equal_info_b64_v256",
                           "equal_info_b64_v65536", "equal_info_b128_v256", "equal_info_b128_v65536"]
SIZES = ["s", "m"]
SCALING_BYTES = 8_000_000  # the data-scaling runs: same 1 MB sample, 4x the epochs
SCALING = {"s": ["bytes", "sentencepiece_v8192", "equal_info_b16_v256", "equal_info_b16_v65536",
                 "equal_info_b32_v65536", "ac_v256"],
           "m": ["bytes", "equal_info_b16_v256", "equal_info_b16_v65536"]}
SEGMENT_BYTES = 4096  # = the example size: every example is one Equal-Info segment
RANDOM_STRINGS = 10_000


def log(*args) -> None:
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def examples():
    from terse.core.paths import data_path
    from terse.textcomp.m2 import sample_examples, text_examples

    train_all = text_examples(data_path("text", "train"))
    valid = text_examples(data_path("text", "valid"))
    return train_all, sample_examples(train_all, TRAIN_BYTES, seed=0), valid


def sentencepiece(train_all):
    from terse.textcomp.tokenizers import SentencePieceTokenizer, load_tokenizer

    folder = WORK / "sentencepiece_v8192"
    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(folder)
    log("training SentencePiece (unigram, 8192) on text/train")
    tok = SentencePieceTokenizer.train(train_all, vocab_size=8192)
    tok.save_pretrained(folder)
    return tok


def build(name: str, train_all):
    """A tokenizer by benchmark name."""
    from terse.textcomp.equal_info import EqualInfoConfig, EqualInfoTokenizer
    from terse.textcomp.model import load_byte_lm
    from terse.textcomp.tokenizers import ArithmeticTokenizer, ByteTokenizer, GzipTokenizer

    if name == "bytes":
        return ByteTokenizer()
    if name.startswith("sentencepiece"):
        return sentencepiece(train_all)
    vocab = int(name.rsplit("_v", 1)[1])
    token_bits = 8 if vocab == 256 else 16
    if name.startswith("gzip"):
        return GzipTokenizer(token_bits)
    if name.startswith("static_ac"):
        return ArithmeticTokenizer.static_from_corpus("".join(train_all).encode(), token_bits)
    if name.startswith("ac"):
        return ArithmeticTokenizer(token_bits, m1=load_byte_lm(M1_NAME))
    if name.startswith("equal_info"):
        bits = int(name.split("_b")[1].split("_")[0])
        rule = "greedy" if name.endswith("greedy") else "delay"
        return EqualInfoTokenizer(load_byte_lm(M1_NAME), EqualInfoConfig(window_bits=bits, token_bits=token_bits,
                                                                         rule=rule, segment_bytes=SEGMENT_BYTES))
    raise ValueError(name)


def tokenized(name: str, split_examples, train_all):
    """Cached tokenization; Equal-Info v256 reuses the v65536 windows (same windows)."""
    import numpy as np

    from terse.textcomp.m2 import TokenizedText, tokenize_examples

    if name.startswith("equal_info") and name.endswith("_v256"):
        wide = tokenized(name.replace("_v256", "_v65536"), split_examples, train_all)
        per = wide.tokens  # each 16-bit token is two 8-bit tokens, most significant first
        return TokenizedText(np.stack((per >> 8, per & 255), axis=1).reshape(-1), wide.num_bytes, wide.seconds)
    tok = build(name, train_all)
    start = time.perf_counter()
    data = tokenize_examples(tok, split_examples, cache_dir=CACHE)
    if time.perf_counter() - start > 1:
        log(f"tokenized {name}: {data.num_bytes} bytes -> {len(data.tokens)} tokens in {data.seconds:.0f}s")
    return data


def stage_tokenize():
    train_all, train, valid = examples()
    sentencepiece(train_all)
    for name in M2_METHODS:
        for split in (valid, train):
            tokenized(name, split, train_all)


def random_unicode(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pools = [(0x20, 0x7E), (0xA0, 0x2FF), (0x370, 0x52F), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF), (0x0, 0x10FFFF)]
    out = []
    for _ in range(count):
        chars = []
        for _ in range(rng.randint(0, 40)):
            lo, hi = rng.choice(pools)
            code = rng.randint(lo, hi)
            if 0xD800 <= code <= 0xDFFF:
                code = 0xFFFD
            chars.append(chr(code))
        out.append("".join(chars))
    return out


def stage_extras():
    """CR of b64/b128 (valid), greedy vs delay, round trips."""
    from terse.textcomp.equal_info import EqualInfoConfig, EqualInfoTokenizer, tokens_to_windows, windows_to_tokens
    from terse.textcomp.model import load_byte_lm

    train_all, _, valid = examples()
    m1 = load_byte_lm(M1_NAME)
    extras = {}
    path = WORK / "extras.json"
    if path.is_file():
        extras = json.loads(path.read_text())
    for name in CR_METHODS:
        if name not in M2_METHODS:
            tokenized(name, valid, train_all)
    # Greedy vs delay on 64 examples of text/valid: ratio cost and how often greedy breaks,
    # under the paper's longest-match decoder and under the shortest-match (delay) decoder.
    if "greedy" not in extras or "greedy_first_match" not in extras:
        subset = valid[:: max(1, len(valid) // 64)]
        total = sum(len(e.encode()) for e in subset)
        rows, first_match = {}, {}
        for bits in (16, 32):
            for rule in ("delay", "greedy"):
                config = EqualInfoConfig(window_bits=bits, token_bits=16, rule=rule, segment_bytes=SEGMENT_BYTES)
                windows, lengths = EqualInfoTokenizer(m1, config).encode_windows_batch(subset)
                flat = [v for w in windows for v in w]
                truth = [e.encode()[p - n:p] for e, lens in zip(subset, lengths, strict=True)
                         for p, n in zip(itertools.accumulate(lens), lens, strict=True)]
                for decoder_rule, table in ((rule, rows), ("delay", first_match)):
                    decoder = EqualInfoTokenizer(m1, config.replace(rule=decoder_rule))
                    wrong = sum(d != t for d, t in zip(decoder.decode_window_values(flat), truth, strict=True))
                    table[f"b{bits}_{rule}"] = {"bytes": total, "windows": len(flat),
                                                "bytes_per_window": total / len(flat), "windows_decoded_wrong": wrong,
                                                "wrong_fraction": wrong / len(flat)}
                log("greedy/delay", bits, rule, rows[f"b{bits}_{rule}"], "first match:",
                    first_match[f"b{bits}_{rule}"]["wrong_fraction"])
        extras["greedy"], extras["greedy_first_match"] = rows, first_match
        write_json(path, extras)
    # Round trips: every file of text/valid, every window size (token size only regroups bits).
    if "round_trip_valid" not in extras:
        rows = {}
        for bits in (16, 32, 64, 128):
            tok = EqualInfoTokenizer(m1, EqualInfoConfig(window_bits=bits, token_bits=16, segment_bytes=SEGMENT_BYTES))
            data = tokenized(f"equal_info_b{bits}_v65536", valid, train_all)
            windows = tokens_to_windows(data.tokens, tok.config)
            narrow = EqualInfoConfig(window_bits=bits, token_bits=8)
            regroup_ok = tokens_to_windows(windows_to_tokens(windows, narrow), narrow) == windows
            start = time.perf_counter()
            decoded = tok.decode_window_values(windows)
            seconds = time.perf_counter() - start
            ok = None not in decoded and b"".join(decoded) == "".join(valid).encode()
            rows[f"b{bits}"] = {"exact": bool(ok), "v256_regrouping_exact": regroup_ok, "windows": len(windows),
                                "decode_seconds": round(seconds, 1), "bytes": data.num_bytes}
            log("round trip valid", bits, rows[f"b{bits}"])
        extras["round_trip_valid"] = rows
        write_json(path, extras)
    if "round_trip_random" not in extras:
        strings = random_unicode(RANDOM_STRINGS)
        rows = {}
        for bits in (16, 32, 64, 128):
            for token_bits in (8, 16):
                tok = EqualInfoTokenizer(m1, EqualInfoConfig(window_bits=bits, token_bits=token_bits,
                                                                    segment_bytes=SEGMENT_BYTES))
                ids = tok.encode_batch(strings)
                flat = [i for x in ids for i in x.tolist()]
                windows = tokens_to_windows(flat, tok.config)
                decoded = tok.decode_window_values(windows)
                k, failures = 0, 0
                for s, x in zip(strings, ids, strict=True):
                    n = len(x) // tok.config.tokens_per_window
                    parts = decoded[k:k + n]
                    k += n
                    if None in parts or b"".join(parts).decode("utf-8") != s:
                        failures += 1
                rows[f"b{bits}_v{1 << token_bits}"] = {"strings": len(strings), "failures": failures}
                log("round trip random", bits, token_bits, failures)
        extras["round_trip_random"] = rows
        write_json(path, extras)


def run_name(name: str, size: str, seen: int) -> str:
    return f"{name}-{size}" if seen == SEEN_BYTES else f"{name}-{size}-seen{seen // 1_000_000}MB"


def stage_train(sizes, methods, seen: int = SEEN_BYTES):
    from terse.textcomp.m2 import M2TrainConfig, train_m2

    train_all, train, valid = examples()
    for size in sizes:
        for name in methods:
            run = WORK / "m2" / run_name(name, size, seen)
            if (run / "result.json").is_file():
                continue
            log("training M2", size, name)
            tok = build(name, train_all)  # Equal-Info v256 tokens are the v65536 windows regrouped
            result = train_m2(tok, tokenized(name, train, train_all), tokenized(name, valid, train_all),
                              M2TrainConfig(size=size, train_bytes=seen, output="two-level"), run)
            result["seen_bytes_budget"] = seen
            write_json(run / "result.json", result)
            log(f"  {name}-{size}: {result['bits_per_byte']:.3f} bits/byte in {result['train_seconds']:.0f}s")


def stage_generate():
    from terse.textcomp.m2 import generate, load_m2

    _, _, valid = examples()
    prompt = valid[3][:64]
    rows = {}
    for name in ("bytes", "equal_info_b16_v65536"):
        model, tok, _ = load_m2(WORK / "m2" / f"{name}-m" / "model")
        tokens = 384 if name == "bytes" else 96
        gens = [generate(model, tok, tokens, prompt=prompt, temperature=1.0, seed=seed) for seed in range(3)]
        steps, nbytes = sum(g.steps for g in gens), sum(g.num_bytes for g in gens)
        seconds, invalid = sum(g.seconds for g in gens), sum(g.invalid_units for g in gens)
        windows = steps // (tok.config.tokens_per_window if hasattr(tok, "config") else 1)
        rows[name] = {"tokens": steps, "decoded_bytes": nbytes, "seconds": round(seconds, 2),
                      "steps_per_byte": steps / max(1, nbytes), "seconds_per_byte": seconds / max(1, nbytes),
                      "invalid_windows": invalid, "valid_window_fraction": 1 - invalid / windows if windows else None,
                      "samples": [g.text[:200] for g in gens]}
        log("generate", name, {k: v for k, v in rows[name].items() if k != "samples"})
    extras_path = WORK / "generation.json"
    write_json(extras_path, rows)


def stage_report():
    from terse.textcomp.model import load_byte_lm

    train_all, train, valid = examples()
    extras = json.loads((WORK / "extras.json").read_text()) if (WORK / "extras.json").is_file() else {}
    generation = json.loads((WORK / "generation.json").read_text()) if (WORK / "generation.json").is_file() else {}
    ratios = {}
    for name in CR_METHODS:
        data = tokenized(name, valid, train_all)
        ratios[name] = {"bytes_per_token": data.bytes_per_token, "tokens": int(len(data.tokens)),
                        "bytes": data.num_bytes, "tokenize_seconds": round(data.seconds, 1)}
    trivial = {name: trivial_models(name, tokenized(name, train, train_all), tokenized(name, valid, train_all))
               for name in M2_METHODS}
    m1 = load_byte_lm(M1_NAME)
    m1_rate = 8 / ratios["ac_v256"]["bytes_per_token"]
    runs, scaling = [], []
    for path in sorted((WORK / "m2").glob("*/result.json")):
        row = json.loads(path.read_text())
        (runs if row.get("seen_bytes_budget", SEEN_BYTES) == SEEN_BYTES else scaling).append(row)
    OUT.mkdir(parents=True, exist_ok=True)
    info = meta(seed=0, m1=M1_NAME, m1_id=m1.model_id, m1_non_embedding_params=m1.model.config.non_embedding_params(),
                train_bytes_distinct=TRAIN_BYTES, train_bytes_seen=SEEN_BYTES)
    write_json(OUT / "compression_ratios.json", {"meta": info, "m1_bits_per_byte_valid": m1_rate, "ratios": ratios,
                                                 "trivial_models": trivial})
    write_json(OUT / "m2.json", {"meta": info, "runs": runs, "data_scaling": scaling})
    write_json(OUT / "tokenizer_checks.json", {"meta": info, **extras, "generation": generation})
    plot(runs)
    report(ratios, m1_rate, runs, extras, generation, trivial, scaling)


def trivial_models(name, train, valid) -> dict:
    """The paper's Table 3: bits/byte of a uniform and of a unigram model (fit on the
    training tokens, add-0.5 smoothing) on the validation tokens."""
    import numpy as np

    vocab = 8192 if name.startswith("sentencepiece") else (65536 if name.endswith("65536") else 256)
    counts = np.bincount(train.tokens, minlength=vocab).astype(np.float64) + 0.5
    logp = np.log2(counts / counts.sum())
    unigram_bits = -logp[valid.tokens].mean()
    seen = np.bincount(train.tokens, minlength=vocab) > 0
    return {"uniform_bits_per_byte": math.log2(vocab) / valid.bytes_per_token,
            "unigram_bits_per_byte": unigram_bits / valid.bytes_per_token,
            "distinct_train_tokens": int(seen.sum()),
            "valid_tokens_unseen_in_train": float((~seen[valid.tokens]).mean())}


def plot(runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in sorted({r["method"] for r in runs}):
        rows = sorted((r for r in runs if r["method"] == method), key=lambda r: r["flops_per_byte"])
        ax.plot([r["flops_per_byte"] for r in rows], [r["bits_per_byte"] for r in rows], marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("inference FLOPs / byte (M2 + M1)")
    ax.set_ylabel("bits / byte on text/valid")
    ax.set_title("M2 over tokenizations (sizes s, m; same training bytes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "bits_vs_flops.png", dpi=120)
    plt.close(fig)


def report(ratios, m1_rate, runs, extras, generation, trivial, scaling):
    lines = ["## Equal-Info Windows and M2 over compressed text",
             "", "`python benchmarks/bench_equal_info.py` (results/equal_info/*.json, bits_vs_flops.png). "
             f"M1 = `{M1_NAME}`: {m1_rate:.3f} bits/byte on text/valid (plain AC, whole 4,096-char examples).", "",
             "Compression ratio on text/valid (bytes per token; the paper's Table 2 analogue):", "",
             "| method | bytes/token | tokens | tokenize KB/s (1 thread, shared machine) |", "|---|---:|---:|---:|"]
    for name, row in ratios.items():
        speed = f"{row['bytes'] / row['tokenize_seconds'] / 1e3:.1f}" if row["tokenize_seconds"] >= 1 else "fast"
        lines.append(f"| {name} | {row['bytes_per_token']:.2f} | {row['tokens']:,} | {speed} |")
    lines += ["", "Trivial models on text/valid tokens (the paper's Table 3; unigram fit on the training tokens):", "",
              "| method | uniform bits/byte | unigram bits/byte | distinct train tokens | valid tokens unseen in train |",
              "|---|---:|---:|---:|---:|"]
    for name, row in trivial.items():
        lines.append(f"| {name} | {row['uniform_bits_per_byte']:.3f} | {row['unigram_bits_per_byte']:.3f} | "
                     f"{row['distinct_train_tokens']:,} | {100 * row['valid_tokens_unseen_in_train']:.2f}% |")
    greedy = extras.get("greedy", {})
    if greedy:
        first = extras.get("greedy_first_match", {})
        lines += ["", "terse's decodable rule (delay) vs the paper's greedy rule, on 64 examples (290 KB) of "
                  "text/valid. Greedy windows are decoded with the paper's longest-match decoder (App. D.5) and, "
                  "for comparison, with the shortest-match decoder that the delay rule makes exact:", "",
                  "| window | rule | bytes/window | CR cost of delay | windows decoded wrong (longest match) | "
                  "(shortest match) |", "|---|---|---:|---:|---:|---:|"]
        for key, row in greedy.items():
            bits, rule = key.split("_")
            cost = ""
            if rule == "delay" and f"{bits}_greedy" in greedy:
                cost = f"{100 * (1 - row['bytes_per_window'] / greedy[f'{bits}_greedy']['bytes_per_window']):.1f}%"
            short = first.get(key)
            short_text = f"{100 * short['wrong_fraction']:.1f}%" if short else ""
            lines.append(f"| {bits} | {rule} | {row['bytes_per_window']:.3f} | {cost} | {row['windows_decoded_wrong']:,} / "
                         f"{row['windows']:,} ({100 * row['wrong_fraction']:.1f}%) | {short_text} |")
    if runs:
        lines += ["", f"M2 bits/byte on text/valid, every model trained on {SEEN_BYTES / 1e6:.0f} MB of text "
                  "(the Table 15 analogue; FLOPs/byte include M1; on CPU the 65,536-token M2s use the two-level "
                  "output, which the GPU table below shows is the weaker choice):", "",
                  "| method | size | non-emb params | bits/byte | uniform | FLOPs/byte | steps/byte | train s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(runs, key=lambda r: (r["size"], r["method"])):
            lines.append(f"| {r['method']} | {r['size']} | {r['non_embedding_params']:,} | {r['bits_per_byte']:.3f} | "
                         f"{r['uniform_bits_per_byte']:.3f} | {r['flops_per_byte'] / 1e6:.2f}M | "
                         f"{r['steps_per_byte']:.3f} | {r['train_seconds']:.0f} |")
    if scaling:
        base = {(r["method"], r["size"]): r for r in runs}
        lines += ["", "More training data (the same distinct 1 MB sample, more epochs):", "",
                  "| method | size | bits/byte at 2 MB seen | at 8 MB seen | gain | train s at 8 MB |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in sorted(scaling, key=lambda r: (r["size"], r["method"])):
            b = base.get((r["method"], r["size"]))
            if b:
                lines.append(f"| {r['method']} | {r['size']} | {b['bits_per_byte']:.3f} | {r['bits_per_byte']:.3f} | "
                             f"{b['bits_per_byte'] - r['bits_per_byte']:.3f} | {r['train_seconds']:.0f} |")
    output_layer = RESULTS / "equal_info" / "output_layer_gpu.json"
    if output_layer.is_file():
        data = json.loads(output_layer.read_text())
        rows = {(r["size"], r["seen_bytes"], r["vocab"], r["two_level"]): r["bits_per_byte"] for r in data["runs"]}
        lines += ["", f"Output layer of the Equal-Info b16 M2 ({data['meta']['device']}, one run of "
                  "`benchmarks/equal_info_gpu.py`; the same tokens and a plain training loop for all three, so they "
                  "compare with each other; 32 MB rows cut by the time limit are absent). The flat 65,536-way "
                  "softmax (the paper's) beats both the v256 model and terse's CPU-cheap two-level output:", "",
                  "| size | text seen | v256 | v65k two-level | v65k flat |", "|---|---:|---:|---:|---:|"]
        for size, seen in sorted({(k[0], k[1]) for k in rows}):
            cells = [rows.get((size, seen, v, t)) for v, t in ((256, False), (65536, True), (65536, False))]
            lines.append(f"| {size} | {seen / 1e6:.0f} MB | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells)
                         + " |")
    if generation:
        lines += ["", "Generation (size m, 3 samples of 384 byte tokens / 96 Equal-Info tokens after a 64-character "
                  "text/valid prompt, temperature 1, 1 thread, sampling + decoding; bytes count only decoded windows):", "",
                  "| M2 | tokens | decoded bytes | steps/byte | ms/byte | invalid windows |", "|---|---:|---:|---:|---:|---:|"]
        for name, row in generation.items():
            lines.append(f"| {name} | {row['tokens']} | {row['decoded_bytes']} | {row['steps_per_byte']:.3f} | "
                         f"{1000 * row['seconds_per_byte']:.1f} | {row['invalid_windows']} |")
    rt = extras.get("round_trip_valid", {})
    rr = extras.get("round_trip_random", {})
    if rt or rr:
        lines += ["", "Round trips (delay rule): text/valid "
                  + ", ".join(f"{k} {'exact' if v['exact'] else 'FAILED'}" for k, v in rt.items())
                  + f"; {RANDOM_STRINGS:,} random Unicode strings: "
                  + ", ".join(f"{k} {v['failures']} failures" for k, v in rr.items()) + "."]
    update_report_section("equal-info", "\n".join(lines))


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="all",
                        choices=["tokenize", "extras", "train", "scaling", "generate", "report", "all"])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--methods", default=",".join(M2_METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seen-bytes", type=int, default=SEEN_BYTES, help="training bytes per M2 (train stage)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stages = ["tokenize", "train", "scaling", "extras", "generate", "report"] if args.stage == "all" else [args.stage]
    for stage in stages:
        if stage == "tokenize":
            stage_tokenize()
        elif stage == "extras":
            stage_extras()
        elif stage == "train":
            stage_train(args.sizes.split(","), args.methods.split(","), args.seen_bytes)
        elif stage == "scaling":
            for size, methods in SCALING.items():
                stage_train([size], methods, SCALING_BYTES)
        elif stage == "generate":
            stage_generate()
        else:
            stage_report()


if __name__ == "__main__":
    main()
