"""The max-ratio level (level 4: SmolLM2-135M over its own tokens) against level 3.

    python benchmarks/bench_textcomp_max.py [--files paper1,papers/walloc.md,alice29,book1:262144:c]

Each entry is ``name[:bytes[:c]]``: a text/bench file (or a path), its first ``bytes``
(0 or none = all), and ``c`` to compress only (level 4 runs at < 1 KB/s each way). For
each input level 4 compresses and, unless ``c``, decompresses (the output must equal the
input); level 3 runs on the same bytes; the machine's float64 GEMM throughput is measured
in the same process (level 4's matrix products are float64 on integers: its roofline).
``papers/walloc.md`` (the shared folder's technical notes, written in 2026) is text SmolLM2
(released 2024) cannot have seen; the benchmark files are famous and may be in its
training data.
Writes results/textcomp/max_level.json (rows of earlier runs for other inputs are kept,
each with its commit and date) and the ``textcomp-max`` section of REPORT.md
after every input.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--files", default="paper1,papers/walloc.md,alice29,book1:262144:c")
    parser.add_argument("--data", type=Path, default=None, help="text/bench folder (default: shared data)")
    parser.add_argument("--report", action="store_true", help="only rewrite the REPORT section from the JSON")
    args = parser.parse_args()
    if args.report:
        saved = json.loads((RESULTS / "textcomp" / "max_level.json").read_text())
        update_report_section("textcomp-max", _section(saved["rows"]))
        return
    import torch

    from terse.core.paths import data_path, data_root
    from terse.textcomp.compressor import load_compressor
    from terse.textcomp.token_lm import load_token_lm

    torch.set_num_threads(2)
    folder = args.data or data_path("text", "bench")
    t = time.perf_counter()
    lm = load_token_lm()
    load_seconds = time.perf_counter() - t
    level4, level3 = load_compressor(level=4), load_compressor(level=3)
    level4.decompress(level4.compress(b"Warm-up: compile the kernels outside the timing."))
    flops = gemm_fp64_flops()
    # network FLOPs per token: 2 x (linear layers + head) MACs; attention excluded
    s = lm.model.shape
    linear = s.layers * s.hidden * ((s.heads + 2 * s.kv_heads) * s.head_dim + s.heads * s.head_dim + 3 * s.intermediate)
    flops_per_token = 2 * (linear + s.hidden * s.vocab_size)
    # rows of earlier runs for other inputs are kept (each row names its run's commit)
    previous = RESULTS / "textcomp" / "max_level.json"
    names = [e.split(":")[0] for e in args.files.split(",")]
    names = [Path(n).name if n not in FILES else n for n in names]
    rows = [r for r in json.loads(previous.read_text())["rows"] if r["file"] not in names] if previous.exists() else []
    run = meta()
    for entry in args.files.split(","):
        name, limit, mode = (entry.split(":") + ["", ""])[:3]
        path = folder / FILES[name] if name in FILES else Path(name)
        if name.startswith("papers/"):  # the project's paper notes (2026) beside the shared data
            path = data_root().parent / name
        data = path.read_bytes()
        if int(limit or 0):
            data = data[: int(limit)]
        t = time.perf_counter()
        blob = level4.compress(data)
        compress_s = time.perf_counter() - t
        decompress_s = None
        if mode != "c":
            t = time.perf_counter()
            back = level4.decompress(blob)
            decompress_s = time.perf_counter() - t
            if back != data:
                raise SystemExit(f"{name}: level 4 did not round-trip")
        t = time.perf_counter()
        blob3 = level3.compress(data)
        level3_s = time.perf_counter() - t
        tokens = int(len(lm.tokenize(data.replace(b"\r\n", b"\n") if b"\r\n" in data else data)))
        row = {"file": path.name if name not in FILES else name, "bytes": len(data),
               "whole_file": len(data) == path.stat().st_size,
               "tokens": tokens, "level4_bytes": len(blob),
               "level4_bits_per_byte": 8 * len(blob) / len(data), "level4_compress_kb_s": len(data) / compress_s / 1e3,
               "level4_decompress_kb_s": len(data) / decompress_s / 1e3 if decompress_s else None,
               "level4_roofline_fraction": tokens / compress_s * flops_per_token / flops, "level3_bytes": len(blob3),
               "level3_bits_per_byte": 8 * len(blob3) / len(data), "level3_compress_kb_s": len(data) / level3_s / 1e3,
               "ts_zip_bits_per_byte": TS_ZIP.get(name), "git": run.get("git_sha"), "date": run.get("date"),
               "gemm_fp64_flops": flops}
        rows.append(row)
        print(row, flush=True)
        _write(rows, lm, load_seconds, flops, flops_per_token)


def _write(rows, lm, load_seconds, flops, flops_per_token) -> None:
    result = {"meta": meta(model="smollm2 (SmolLM2-135M-Instruct Q4_1, exact network)", model_id=lm.model_id,
                           load_seconds=load_seconds, gemm_fp64_flops=flops, flops_per_token=flops_per_token),
              "rows": rows}
    write_json(RESULTS / "textcomp" / "max_level.json", result)
    update_report_section("textcomp-max", _section(rows))


def _section(rows) -> str:
    lines = ["Command: `python benchmarks/bench_textcomp_max.py` (results/textcomp/max_level.json). Level 4 codes",
             "SmolLM2-135M-Instruct's own tokens with its exact network (lanes of up to 8,192 tokens); level 3",
             "on the same bytes in the same run. Roofline: the network's linear-layer FLOPs/s while compressing",
             "over this machine's float64 GEMM FLOP/s, measured in the same run. walloc.md is the shared folder's",
             "technical note (written 2026), unseen by SmolLM2; the benchmark files may be in its training data.", "",
             "| input | bytes | level 4 bits/byte | level 3 bits/byte | ts_zip (published) | level 4 KB/s (c/d) "
             "| level 3 KB/s (c) | roofline |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        label = r["file"] if r["whole_file"] else f"{r['file']} (first {r['bytes']:,} B)"
        ts = f"{r['ts_zip_bits_per_byte']:.3f}" if r["ts_zip_bits_per_byte"] and r["whole_file"] else "-"
        dec = f"{r['level4_decompress_kb_s']:.2f}" if r["level4_decompress_kb_s"] else "not run"
        lines.append(f"| {label} | {r['bytes']:,} | **{r['level4_bits_per_byte']:.3f}** | {r['level3_bits_per_byte']:.3f} "
                     f"| {ts} | {r['level4_compress_kb_s']:.2f} / {dec} "
                     f"| {r['level3_compress_kb_s']:.1f} | {r['level4_roofline_fraction']:.2f} |")
    lines += ["", "Rows come from separate runs (each row's commit and date are in the JSON); KB/s depend "
              "on what else the machine ran. `c` entries were compressed only (decoding runs at the same "
              "speed: hours for book1); the round trip is checked on the other rows and by the tests. "
              "Level 4 steps all lanes of a frame together, so a frame's speed grows with its lanes "
              "(files under ~30 kB have one lane)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
