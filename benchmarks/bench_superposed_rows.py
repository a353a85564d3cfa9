"""What a decoding row costs on this CPU: why k exact drafts cost more than one superposed row.

    python benchmarks/bench_superposed_rows.py [--threads 2]

For SmolLM2-135M's layer shapes, times an fp32 matrix product with 1, 3 and 5 rows (the
hidden states of 1, 3 or 5 drafts) the way the model computes it (``F.linear``, x @ W^T)
and as ``W @ x^T`` (what ``terse.superposed.decoding.output_logits`` uses for the LM
head), and one whole decode step (HF forward with a KV cache after a 15-token prompt) at
1, 3 and 5 rows. Writes results/superposed/rows.json and the ``superposed-rows`` section of
results/REPORT.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from common import RESULTS, fastest, meta, update_report_section, write_json  # noqa: E402

ROWS = (1, 3, 5)


def main(argv: list[str] | None = None) -> None:
    import torch

    from terse.superposed.decoding import cache_argument, returned_cache
    from terse.superposed.models import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tok = load_model()
    cfg = model.config
    kv = cfg.num_key_value_heads * cfg.hidden_size // cfg.num_attention_heads
    shapes = {"q/o proj": (cfg.hidden_size, cfg.hidden_size), "k/v proj": (kv, cfg.hidden_size),
              "mlp up/gate": (cfg.intermediate_size, cfg.hidden_size), "mlp down": (cfg.hidden_size, cfg.intermediate_size),
              "lm head": (cfg.vocab_size, cfg.hidden_size)}
    gemm = {}
    with torch.inference_mode():
        for name, (n, k) in shapes.items():
            w = torch.randn(n, k)
            reps = max(5, int(2e7 / (n * k)))
            row = {}
            for m in ROWS:
                x = torch.randn(m, k)
                linear = fastest(lambda x=x, w=w, r=reps: [torch.nn.functional.linear(x, w) for _ in range(r)],
                                 warmup=1) / reps
                wxt = fastest(lambda x=x, w=w, r=reps: [torch.mm(w, x.t()) for _ in range(r)], warmup=1) / reps
                row[m] = {"linear_ms": 1e3 * linear, "w_xt_ms": 1e3 * wxt}
            for m in ROWS:
                row[m]["linear_x_one_row"] = row[m]["linear_ms"] / row[1]["linear_ms"]
            gemm[name] = {"shape": [n, k], "rows": row}

        ids = tok("The old house stood at the end of the lane, and nobody had", add_special_tokens=False)["input_ids"]
        cache_kw = cache_argument(model)
        step = {}
        for m in ROWS:
            out = model(input_ids=torch.tensor([ids] * m), use_cache=True, logits_to_keep=1)
            past, nxt = returned_cache(out), out.logits[:, -1:].argmax(-1)

            def one_step(past=past, nxt=nxt):
                model(input_ids=nxt, use_cache=True, **{cache_kw: past})
                past.crop(-1)  # the same cache length for every timed call

            step[m] = {"ms": 1e3 * fastest(one_step, repeats=10, warmup=2)}
        for m in ROWS:
            step[m]["x_one_row"] = step[m]["ms"] / step[1]["ms"]

    path = RESULTS / "superposed" / "rows.json"
    write_json(path, {"meta": meta(benchmark="superposed-rows", threads=args.threads,
                                   model="SmolLM2-135M-Instruct (fp32)"), "gemm": gemm, "decode_step": step})
    for name, g in gemm.items():
        print(name, g["shape"], " ".join(f"{m} rows {r['linear_ms']:.3f} ms ({r['linear_x_one_row']:.2f}x), "
                                         f"W@x^T {r['w_xt_ms']:.3f} ms;" for m, r in g["rows"].items()))
    print("decode step", " ".join(f"{m} rows {s['ms']:.1f} ms ({s['x_one_row']:.2f}x);" for m, s in step.items()))
    lines = ["### Superposed Decoding: what a row costs (`python benchmarks/bench_superposed_rows.py`)", "",
             f"fp32, {args.threads} threads, {meta()['machine']['cpu']}; milliseconds per product, and per decode step "
             "(HF forward, KV cache, 15-token prompt). results/superposed/rows.json.", "",
             "| | shape | " + " | ".join(f"{m} rows" for m in ROWS) + " | " + " | ".join(f"W@x^T, {m} rows" for m in ROWS)
             + " |", "|---|---|" + "---:|" * (2 * len(ROWS))]
    for name, g in gemm.items():
        lines.append(f"| {name} | {g['shape'][0]}x{g['shape'][1]} | "
                     + " | ".join(f"{r['linear_ms']:.3f} ({r['linear_x_one_row']:.2f}x)" for r in g["rows"].values())
                     + " | " + " | ".join(f"{r['w_xt_ms']:.3f}" for r in g["rows"].values()) + " |")
    lines.append("| decode step | | " + " | ".join(f"{s['ms']:.1f} ({s['x_one_row']:.2f}x)" for s in step.values())
                 + " | " + " | ".join("-" for _ in ROWS) + " |")
    update_report_section("superposed-rows", "\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
