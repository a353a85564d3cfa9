"""Sizes now against the last full benchmark: one level on the 14 text/bench files.

    python benchmarks/bench_textcomp_sizes.py [--level 3] [--out sizes.json]

Compresses each file with the current terse and decompresses it again (must round-trip);
compares with the sizes of results/textcomp/bench.json (the last full run of
bench_textcomp.py) and with paq8px -8's sizes measured in that run (equal to the
published ones where those exist). For changes that only move sizes, between full runs
of the (hour-long) benchmark. Writes results/textcomp/OUT and the ``textcomp-sizes``
section of REPORT.md (``--note`` says what changed since the full run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, meta, update_report_section, write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--data", type=Path, default=None, help="text/bench folder (default: shared data)")
    parser.add_argument("--out", default="sizes.json")
    parser.add_argument("--note", default="", help="what changed since the full benchmark (for the report)")
    args = parser.parse_args()
    from terse.core.paths import data_path
    from terse.textcomp.compressor import load_compressor

    folder = args.data or data_path("text", "bench")
    bench = json.loads((RESULTS / "textcomp" / "bench.json").read_text())
    before, paq8px = bench["results"][f"terse -l{args.level}"], bench["results"].get("paq8px -8", {"files": {}})
    compressor = load_compressor(level=args.level)
    rows = []
    for name, old in sorted(before["files"].items()):
        data = (folder / name).read_bytes()
        t = time.perf_counter()
        blob = compressor.compress(data)
        seconds = time.perf_counter() - t
        if compressor.decompress(blob) != data:
            raise SystemExit(f"{name}: did not round-trip")
        paq = paq8px["files"].get(name, {}).get("bytes_out")
        rows.append({"file": name, "bytes_in": len(data), "container1_bytes": old["bytes_out"], "bytes_out": len(blob),
                     "paq8px_bytes": paq, "compress_s": seconds})
        print(rows[-1], flush=True)
    result = {"meta": meta(level=args.level, bench_json_date=bench["meta"].get("date"), note=args.note), "rows": rows}
    write_json(RESULTS / "textcomp" / args.out, result)
    lines = [f"Command: `python benchmarks/bench_textcomp_sizes.py --out {args.out}` (results/textcomp/{args.out}). "
             f"Level {args.level} now against results/textcomp/bench.json (last full run) and paq8px -8 as "
             f"measured in that run (`bench_textcomp.py --paq8px`). Every file round-tripped. {args.note}", "",
             "| file | bytes | full run | now | saved | vs paq8px -8 then | now |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        paq = r["paq8px_bytes"]
        ratio = (f"{r['container1_bytes'] / paq:.4f}x | **{r['bytes_out'] / paq:.4f}x**" if paq else "- | -")
        lines.append(f"| {r['file']} | {r['bytes_in']:,} | {r['container1_bytes']:,} | {r['bytes_out']:,} "
                     f"| {r['container1_bytes'] - r['bytes_out']} | {ratio} |")
    total_in = sum(r["bytes_in"] for r in rows)
    old, new = sum(r["container1_bytes"] for r in rows), sum(r["bytes_out"] for r in rows)
    lines.append(f"| **all {len(rows)}** | {total_in:,} | {old:,} ({8 * old / total_in:.4f} bits/byte) "
                 f"| {new:,} ({8 * new / total_in:.4f} bits/byte) | {old - new} | | |")
    wins = sum(r["bytes_out"] < r["paq8px_bytes"] for r in rows if r["paq8px_bytes"])
    lines += ["", f"Smaller than paq8px -8 on {wins} of {sum(1 for r in rows if r['paq8px_bytes'])} files."]
    update_report_section("textcomp-sizes", "\n".join(lines))


if __name__ == "__main__":
    main()
