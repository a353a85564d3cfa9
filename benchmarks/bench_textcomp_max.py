"""The max-ratio level (level 4: SmolLM2-135M over its own tokens) against level 3.

    python benchmarks/bench_textcomp_max.py [--files alice29:0,book1:262144]

Each entry is ``name:bytes`` (0 = the whole file) of text/bench. For each input, level 4
compresses and decompresses (the output must equal the input), level 3 runs on the same
bytes, and the machine's float64 GEMM throughput is measured in the same process (level
4's matrix products run in float64 on integers: its roofline). Writes
results/textcomp/max_level.json and the ``textcomp-max`` section of REPORT.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

FILES = {"alice29": "canterbury_alice29.txt", "book1": "calgary_book1.txt", "paper1": "calgary_paper1.txt",
         "news": "calgary_news.txt", "bib": "calgary_bib.txt", "book2": "calgary_book2.txt"}
# ts_zip's published bits/byte (the targets for this level)
TS_ZIP = {"alice29": 1.142, "book1": 1.431}


def gemm_fp64_flops() -> float:
    import torch

    a = torch.randint(-32768, 32768, (64, 576)).double()
    b = torch.randint(-2047, 2048, (576, 3072)).double()
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * 64 * 576 * 3072 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", default="alice29:0,book1:262144")
    parser.add_argument("--data", type=Path, default=None, help="text/bench folder (default: shared data)")
    args = parser.parse_args()
    import torch

    from terse.core.paths import data_path
    from terse.textcomp.compressor import load_compressor
    from terse.textcomp.token_lm import load_token_lm

    torch.set_num_threads(2)
    folder = args.data or data_path("text", "bench")
    t = time.perf_counter()
    lm = load_token_lm()
    load_seconds = time.perf_counter() - t
    level4, level3 = load_compressor(level=4), load_compressor(level=3)
    level4.decompress(level4.compress(b"Warm-up: compile the kernels outside the timing."))
    rows = []
    for entry in args.files.split(","):
        name, _, limit = entry.partition(":")
        data = (folder / FILES[name]).read_bytes()
        if int(limit or 0):
            data = data[: int(limit)]
        t = time.perf_counter()
        blob = level4.compress(data)
        compress_s = time.perf_counter() - t
        t = time.perf_counter()
        back = level4.decompress(blob)
        decompress_s = time.perf_counter() - t
        if back != data:
            raise SystemExit(f"{name}: level 4 did not round-trip")
        t = time.perf_counter()
        blob3 = level3.compress(data)
        level3_s = time.perf_counter() - t
        row = {"file": name, "bytes": len(data), "whole_file": len(data) == (folder / FILES[name]).stat().st_size,
               "tokens": int(len(lm.tokenize(data))), "level4_bytes": len(blob),
               "level4_bits_per_byte": 8 * len(blob) / len(data), "level4_compress_kb_s": len(data) / compress_s / 1e3,
               "level4_decompress_kb_s": len(data) / decompress_s / 1e3, "level3_bytes": len(blob3),
               "level3_bits_per_byte": 8 * len(blob3) / len(data), "level3_compress_kb_s": len(data) / level3_s / 1e3,
               "ts_zip_bits_per_byte": TS_ZIP.get(name)}
        rows.append(row)
        print(row, flush=True)
    flops = gemm_fp64_flops()
    # network FLOPs per token: 2 x (linear layers + head) MACs; attention excluded
    s = lm.model.shape
    linear = s.layers * s.hidden * ((s.heads + 2 * s.kv_heads) * s.head_dim + s.heads * s.head_dim + 3 * s.intermediate)
    flops_per_token = 2 * (linear + s.hidden * s.vocab_size)
    for row in rows:
        tokens_s = row["tokens"] / (row["bytes"] / row["level4_decompress_kb_s"] / 1e3)
        row["level4_roofline_fraction"] = tokens_s * flops_per_token / flops
    result = {"meta": meta(model="smollm2 (SmolLM2-135M-Instruct Q4_1, exact network)", model_id=lm.model_id,
                           load_seconds=load_seconds, gemm_fp64_flops=flops, flops_per_token=flops_per_token),
              "rows": rows}
    write_json(RESULTS / "textcomp" / "max_level.json", result)
    lines = ["Command: `python benchmarks/bench_textcomp_max.py` (results/textcomp/max_level.json). Level 4 codes",
             "SmolLM2-135M-Instruct's own tokens with its exact network (lanes of 2,048 tokens); level 3 on the same",
             "bytes in the same run. Roofline: network FLOPs/s over this machine's float64 GEMM FLOP/s, measured",
             "in the same run.", "",
             "| input | bytes | level 4 bits/byte | level 3 bits/byte | ts_zip (published) | level 4 KB/s (c/d) "
             "| level 3 KB/s (c) | roofline |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        label = r["file"] if r["whole_file"] else f"{r['file']} (first {r['bytes']:,} B)"
        ts = f"{r['ts_zip_bits_per_byte']:.3f}" if r["ts_zip_bits_per_byte"] and r["whole_file"] else "-"
        lines.append(f"| {label} | {r['bytes']:,} | **{r['level4_bits_per_byte']:.3f}** | {r['level3_bits_per_byte']:.3f} "
                     f"| {ts} | {r['level4_compress_kb_s']:.2f} / {r['level4_decompress_kb_s']:.2f} "
                     f"| {r['level3_compress_kb_s']:.1f} | {r['level4_roofline_fraction']:.2f} |")
    update_report_section("textcomp-max", "\n".join(lines))


if __name__ == "__main__":
    main()
