"""terse levels vs classical and context-mixing compressors on the 14 text/bench files.

    python benchmarks/bench_textcomp.py [--levels 0,1,2,3] [--files ...] [--paq8px]
    python benchmarks/bench_textcomp.py --set valid   # text the models never trained on

Writes results/textcomp/bench.json, results/textcomp/frontier.png,
results/textcomp/per_file.png and the `textcomp` section of results/REPORT.md (with
``--set valid``: unseen.json, unseen_frontier.png, unseen_per_file.png and the
`textcomp-unseen` section).
Every terse result is round-trip checked (decompressed in this process from the file
alone); the default level is also checked for determinism (compressing twice gives
identical bytes). All numbers come from one run on this machine, peers included: gzip,
bzip2, xz, zstd and brotli through their Python bindings (the same C libraries as the
command-line tools, without process start-up), 7-Zip's PPMd order 16 and zpaq -m5
(Debian packages ``7zip`` and ``zpaq``) and, with ``--paq8px``, paq8px -8 built from its
public source by ``benchmarks/peers/build_paq8px.sh`` as timed subprocesses.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_textcomp_mixed import in_process, lscpu, peers  # noqa: E402
from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

PROSE = ["canterbury_alice29.txt", "canterbury_asyoulik.txt", "canterbury_plrabn12.txt", "calgary_book1.txt"]
# The 10 files with published paq8px and cmix sizes (the files here are the originals, byte for byte).
PUBLISHED_SOURCE = "paq8px README (github.com/hxim/paq8px at 29237fb), Calgary and Canterbury tables"
PUBLISHED = {  # file -> (original bytes, paq8px v216 -8, cmix v21 with its dictionary), compressed bytes
    "canterbury_alice29.txt": (152089, 33070, 31076), "canterbury_asyoulik.txt": (125179, 31515, 29434),
    "canterbury_plrabn12.txt": (481861, 117450, 112263), "canterbury_lcet10.txt": (426754, 79110, 73365),
    "calgary_book1.txt": (768771, 183306, 173709), "calgary_book2.txt": (610856, 113966, 105918),
    "calgary_paper1.txt": (53161, 12365, 10831), "calgary_paper2.txt": (82199, 19540, 17169),
    "calgary_news.txt": (377109, 83027, 76389), "calgary_bib.txt": (111261, 19598, 17180),
}


def classical() -> dict:
    """In-process peers: name -> codec (compress, decompress), each returning (bytes, seconds)."""
    import brotli
    import zstandard

    zc, zd = zstandard.ZstdCompressor(level=22), zstandard.ZstdDecompressor()
    return {
        "gzip -9": in_process(lambda d: gzip.compress(d, 9, mtime=0), gzip.decompress),
        "bzip2 -9": in_process(lambda d: bz2.compress(d, 9), bz2.decompress),
        "xz -9e": in_process(lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
        "zstd --ultra -22": in_process(zc.compress, zd.decompress),
        "brotli -q 11": in_process(lambda d: brotli.compress(d, quality=11), brotli.decompress),
    }


def command_line_peers(paq8px: bool) -> dict:
    """7-Zip PPMd o16, zpaq -m5 and (optionally) paq8px -8, where installed."""
    wanted = ("7z PPMd o16", "zpaq -m5", "paq8px -8")
    out = {}
    for name, info in peers(paq8px=paq8px).items():
        if name not in wanted:
            continue
        if info["available"]:
            out[name] = info["codec"]
        else:
            print(f"{name}: unavailable ({info['reason']})", flush=True)
    return out


def measure(name: str, codec, files: dict[str, bytes], check_determinism: bool = False) -> dict:
    comp, decomp = codec
    rows = {}
    for fname, data in files.items():
        blob, t_c = comp(data)
        restored, t_d = decomp(blob)
        if restored != data:
            raise SystemExit(f"{name}: round trip FAILED on {fname}")
        row = {"bytes_in": len(data), "bytes_out": len(blob), "bits_per_byte": 8 * len(blob) / len(data),
               "compress_s": t_c, "decompress_s": t_d}
        if check_determinism:
            row["deterministic"] = comp(data)[0] == blob
            if not row["deterministic"]:
                raise SystemExit(f"{name}: compressing twice gave different bytes on {fname}")
        rows[fname] = row
        print(f"  {name:<18} {fname:<28} {row['bits_per_byte']:.3f} bits/byte  "
              f"{len(data) / 1e3 / t_c:8.1f} / {len(data) / 1e3 / t_d:8.1f} KB/s", flush=True)
    return {"files": rows, "total": summarize(rows, list(rows)), "prose": summarize(rows, [f for f in PROSE if f in rows]),
            "published_10": summarize(rows, [f for f in PUBLISHED if f in rows]) if set(PUBLISHED) <= set(rows) else {}}


def summarize(rows: dict, names: list[str]) -> dict:
    if not names:
        return {}
    n_in = sum(rows[f]["bytes_in"] for f in names)
    n_out = sum(rows[f]["bytes_out"] for f in names)
    t_c = sum(rows[f]["compress_s"] for f in names)
    t_d = sum(rows[f]["decompress_s"] for f in names)
    return {"bytes_in": n_in, "bytes_out": n_out, "bits_per_byte": 8 * n_out / n_in,
            "compress_kb_s": n_in / 1e3 / t_c, "decompress_kb_s": n_in / 1e3 / t_d}


def plots(results: dict, out_dir: Path, prefix: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "total"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, res in results.items():
        p = res[key]
        neural = name.startswith("terse")
        ax.scatter(p["compress_kb_s"], p["bits_per_byte"], marker="o" if neural else "s",
                   color="tab:red" if neural else "tab:blue")
        ax.annotate(name, (p["compress_kb_s"], p["bits_per_byte"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    neural = sorted((r[key]["compress_kb_s"], r[key]["bits_per_byte"]) for n, r in results.items()
                    if n.startswith("terse"))
    if len(neural) > 1:
        ax.plot(*zip(*neural, strict=True), color="tab:red", alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("compress speed on 2 cores (KB/s, log)")
    ax.set_ylabel("bits/byte (all files measured)")
    ax.set_title("Speed/ratio frontier: terse levels vs other compressors")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / f"{prefix}frontier.png", dpi=120)
    plt.close(fig)

    names = list(next(iter(results.values()))["files"])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(results)
    for i, (name, res) in enumerate(results.items()):
        ax.bar([j + i * width for j in range(len(names))], [res["files"][f]["bits_per_byte"] for f in names],
               width=width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels([n.replace(".txt", "") for n in names], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("bits/byte")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Per-file bits/byte on text/bench")
    fig.tight_layout()
    fig.savefig(out_dir / f"{prefix}per_file.png", dpi=120)
    plt.close(fig)


def published_bits(column: int, names: list[str]) -> float:
    return 8 * sum(PUBLISHED[f][column] for f in names) / sum(PUBLISHED[f][0] for f in names)


def report(results: dict, model_info: dict, json_path: Path, default_level: int, unseen: bool = False) -> str:
    names = list(next(iter(results.values()))["files"])
    cols = list(results)
    ours = [c for c in cols if c.startswith("terse")]
    theirs = [c for c in cols if not c.startswith("terse")]
    default = f"terse -l{default_level}"
    published = [] if unseen else [("paq8px -8 (published)", 1), ("cmix v21 + dict (published)", 2)]
    title = ("## Text compression on unseen text (text/valid: 4 books M1 never trained on)" if unseen
             else "## Neural text compression (`terse text compress`)")
    command = "python benchmarks/bench_textcomp.py" + (" --set valid" if unseen else "")
    prefix = "unseen_" if unseen else ""
    lines = [title, "",
             f"Measured in one run by `{command}` ({json_path.relative_to(RESULTS.parent)}); "
             "bits/byte from the real output bytes (headers included); speed = input bytes / wall time on this "
             "2-core machine. Every terse file round-tripped byte-exactly; the default level was checked for "
             "determinism (same bytes twice). Levels: " + "; ".join(
                 f"`-l{results[c]['level']}` {results[c]['summary']}" for c in ours) + ".", "",
             *([] if unseen else [f"Published sizes ({PUBLISHED_SOURCE}) are converted to bits/byte; "
                                   "they were not measured here.", ""]),
             "| file | " + "".join(f"{c} | " for c in [*cols, *(p for p, _ in published)])
             + f"{default} vs best measured peer |", "|---|" + "---:|" * (len(cols) + len(published) + 1)]

    def published_cells(files: list[str]) -> str:
        """The published columns' cells, each followed by ' | '."""
        if not set(files) <= set(PUBLISHED):
            return " | " * len(published)
        return "".join(f"{published_bits(col, files):.3f} | " for _, col in published)

    for f in names:
        vals = [results[c]["files"][f]["bits_per_byte"] for c in cols]
        best = min(vals)
        best_peer = min(results[c]["files"][f]["bits_per_byte"] for c in theirs) if theirs else float("nan")
        ratio = results[default]["files"][f]["bits_per_byte"] / best_peer if default in results else float("nan")
        lines.append(f"| {f.replace('.txt', '')} | " + " | ".join(
            (f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in vals) + f" | {published_cells([f])}{ratio:.3f}x |")
    groups = [("prose", "4 prose files", PROSE), ("published_10", "10 files with published sizes", list(PUBLISHED)),
              ("total", f"all {len(names)} files", names)]
    for key, label, files in groups:
        if not all(results[c].get(key) for c in cols):
            continue
        lines.append(f"| **{label}** | " + " | ".join(f"**{results[c][key]['bits_per_byte']:.3f}**" for c in cols)
                     + f" | {published_cells(files)} |")
    blank = " | " * (len(published) + 1) + "|"  # empty published and ratio cells
    lines.append("| compress KB/s (all) | " + " | ".join(f"{results[c]['total']['compress_kb_s']:.1f}" for c in cols)
                 + blank)
    lines.append("| decompress KB/s (all) | " + " | ".join(f"{results[c]['total']['decompress_kb_s']:.1f}" for c in cols)
                 + blank)
    lines += ["", "M1 models used by the levels:", "", "| model | params | non-embedding | valid bits/byte | training |",
              "|---|---:|---:|---:|---|"]
    for name, info in model_info.items():
        lines.append(f"| {name} | {info['params']:,} | {info['non_embedding']:,} | {info.get('valid_bits_per_byte')} | "
                     f"{info.get('steps')} steps, {info.get('tokens_seen', 0) / 1e6:.0f}M bytes |")
    lines += ["", f"![frontier](textcomp/{prefix}frontier.png)", "", f"![per file](textcomp/{prefix}per_file.png)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import torch

    from terse.core.paths import data_path
    from terse.textcomp.compressor import DEFAULT_LEVEL, LEVELS, load_compressor
    from terse.textcomp.model import load_byte_lm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="0,1,2,3")
    parser.add_argument("--files", default="", help="comma-separated subset of the set's files (default: all)")
    parser.add_argument("--set", choices=("bench", "valid"), default="bench",
                        help="text/bench (the 14 Calgary/Canterbury files) or text/valid (books M1 never trained on)")
    parser.add_argument("--out", default=str(RESULTS / "textcomp"))
    parser.add_argument("--paq8px", action="store_true",
                        help="also paq8px -8 (benchmarks/peers/build_paq8px.sh builds it; ~3 KB/s each way)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    bench = data_path("text", args.set)
    unseen = args.set == "valid"
    wanted = [f for f in args.files.split(",") if f]
    files = {p.name: p.read_bytes() for p in sorted(bench.iterdir()) if not wanted or p.name in wanted}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, model_info = {}, {}
    for level in [int(v) for v in args.levels.split(",") if v]:
        chosen = LEVELS[level]
        if chosen.model is not None and chosen.model not in model_info:
            lm = load_byte_lm(chosen.model)
            model_info[chosen.model] = {
                "id": lm.model_id, "params": sum(p.numel() for p in lm.model.parameters()),
                "non_embedding": lm.model.config.non_embedding_params(), "config": lm.model.config.to_dict(),
                **{k: lm.info.get(k) for k in ("steps", "tokens_seen", "valid_bits_per_byte", "train_seconds")}}
        name = f"terse -l{level}"
        print(f"{name}: {chosen.summary}", flush=True)
        compressor = load_compressor(level)
        compressor.compress(b"warm-up, not measured\n" * 64)  # model load and JIT compilation
        results[name] = measure(name, in_process(compressor.compress, compressor.decompress), files,
                                check_determinism=level == DEFAULT_LEVEL)
        results[name].update(level=level, model=chosen.model, params=chosen.params.to_dict(), summary=chosen.summary)
    for name, codec in {**classical(), **command_line_peers(args.paq8px)}.items():
        print(name, flush=True)
        results[name] = measure(name, codec, files)
    json_path = out_dir / ("unseen.json" if unseen else "bench.json")
    write_json(json_path, {"meta": meta(seed=None, benchmark="textcomp", bench_dir=str(bench), lscpu=lscpu()),
                           "models": model_info, "results": results})
    plots(results, out_dir, "unseen_" if unseen else "")
    if not wanted:
        update_report_section("textcomp-unseen" if unseen else "textcomp",
                              report(results, model_info, json_path, DEFAULT_LEVEL, unseen))
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
