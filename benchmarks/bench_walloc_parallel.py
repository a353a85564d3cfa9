"""WaLLoC whole-file speed and latent bytes: the parallel context model vs the wavefront one.

    python benchmarks/bench_walloc_parallel.py [--large 2]

For the shipped image codecs (walloc-rgb-16x, walloc-rgb-16x-hq: the same latents with a
larger decoder, walloc-rgb-4x), in one run (2 torch threads; every time is the fastest of 3
calls, the wavefront model's excepted; whole-file times: of 3 calls in each of 3 rounds):

1. Kodak (24 images, 0.39 MP, never trained on): latent payload bytes of the ``parallel``
   storage vs the wavefront ``context`` storage, and each one's entropy-coding time;
2. whole-file ``compress`` / ``decompress`` MP/s (the codec's public calls, end to end) on
   Kodak and on mosaics of Kodak images (2x2 = 1 MP and 3x3 = 2.4 MP), with the transform
   stages alone; the codecs are interleaved image by image, so that a slow spell of the
   shared machine falls on all of them;
3. identical latents elsewhere: every Kodak file is decoded again in a subprocess with
   ATen/oneDNN/MKL restricted to SSE4.1 and 1 thread (the latents' CRC32 must match);
4. the machine's fp32 GEMM throughput measured in the same run, named with the CPU;
5. the 16x codecs' Kodak whole-file speed with ATen/oneDNN/MKL held to AVX2 beside the native
   kernels and with glibc's allocator untuned (subprocesses, one after the other, 3 rounds in turn;
   ``--kernels-only`` measures this part again and keeps the rest of the last run's JSON).

Writes results/walloc/parallel.json and the ``walloc-parallel`` section of REPORT.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_walloc import shipped  # noqa: E402
from common import RESULTS, fastest_with_result, meta, update_report_section, write_json  # noqa: E402

MODELS = ("walloc-rgb-16x", "walloc-rgb-16x-hq", "walloc-rgb-4x")
REPEATS = 3  # whole-file stages: the fastest of 3 calls (a shared 2-core machine is noisy) ...
ROUNDS = 3   # ... in each of 3 rounds over all images, minutes apart
OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                 "TORCH_THREADS": "1"}
DECODE_SCRIPT = """
import hashlib, json, os, sys, torch
from pathlib import Path
from terse.walloc.codec import load_codec, read_wlc
torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
out = {}
for path in sorted(Path(sys.argv[1]).glob("*.wlc")):
    blob = path.read_bytes()
    header, payload = read_wlc(blob)
    codec = load_codec(header["model"])
    latent = codec.load_latent(payload, tuple(header["latent_shape"]), header["storage"])
    out[path.name] = hashlib.sha256(latent.astype("<i2").tobytes()).hexdigest()
print(json.dumps(out))
"""


AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
SPEED_SCRIPT = """
import json, sys, time, numpy as np, torch
from PIL import Image
from terse.walloc.codec import load_codec
torch.set_num_threads(2)
images = [np.array(Image.open(p).convert("RGB")) for p in sys.argv[2:]]
out = {}
for name in sys.argv[1].split(","):
    codec = load_codec(name)
    codec.compress(images[0][:64, :64])
    enc = dec = 0.0
    for img in images:
        blob = codec.compress(img)
        for which in ("enc", "dec"):
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                codec.compress(img) if which == "enc" else codec.decompress(blob)
                best = min(best, time.perf_counter() - start)
            enc, dec = (enc + best, dec) if which == "enc" else (enc, dec + best)
    mp = sum(img.shape[0] * img.shape[1] for img in images) / 1e6
    out[name] = {"compress_mp_s": mp / enc, "decompress_mp_s": mp / dec}
print(json.dumps(out))
"""


def kernel_speeds(names: list[str], paths: list[Path]) -> dict:
    """Kodak whole-file MP/s in subprocesses with the native kernels, with ATen / oneDNN / MKL
    held to AVX2 (a CPU without AVX-512 or bf16) and with glibc's allocator untuned, one right
    after the other, ``ROUNDS`` times in turn; each setting keeps its fastest round (compress
    and decompress apart), so that a slow spell of the machine does not fall on one setting."""
    runs: dict[str, dict] = {}
    # "native-untuned-malloc": glibc's allocator as it is (terse.core.memory off), the same kernels
    settings = (("native", {}), ("avx2", AVX2_KERNELS), ("native-untuned-malloc", {"TERSE_KEEP_FREED_MEMORY": "0"}))
    for _ in range(ROUNDS):
        for label, env in settings:
            out = subprocess.run([sys.executable, "-c", SPEED_SCRIPT, ",".join(names), *map(str, paths)],
                                 env={**os.environ, **env}, capture_output=True, text=True, check=True)
            for name, speeds in json.loads(out.stdout.strip().splitlines()[-1]).items():
                best = runs.setdefault(label, {}).setdefault(name, dict.fromkeys(speeds, 0.0))
                for key, value in speeds.items():
                    best[key] = max(best[key], value)
    return runs


def gemm_flops() -> float:
    a, b = torch.randn(512, 512), torch.randn(512, 2048)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * 512 * 512 * 2048 / best


def mosaic(images: list[np.ndarray], side: int, start: int) -> np.ndarray:
    """side x side Kodak images (landscape crops 512 x 768) tiled into one photo."""
    tiles = [images[(start + k) % len(images)][:512, :512] for k in range(side * side)]
    return np.concatenate([np.concatenate(tiles[r * side:(r + 1) * side], 1) for r in range(side)], 0)



def with_earlier_tables(codec):
    """``codec`` coding with its first earlier parallel table set (``parallel-<id>``, the tables
    it shipped before a refit), or None: the alternative measured beside the current tables."""
    import copy

    ids = list(codec.earlier_parallel_ids)
    if not ids:
        return None
    earlier = copy.copy(codec)
    earlier._parallel = (codec.parallel_reading(ids[0]), ids[0])
    return earlier


def bench_model(name: str, kodak: list[np.ndarray], keep: Path) -> dict:
    from terse.walloc.codec import load_codec

    codec = load_codec(name)
    earlier = with_earlier_tables(codec)
    codec.compress(kodak[0][:64, :64])  # load tables outside the timing
    # (label, codec, storage): the current parallel tables, the earlier ones, the wavefront model
    coders = [("parallel", codec, "parallel"), ("context", codec, "context")]
    if earlier is not None:
        earlier.compress(kodak[0][:64, :64])
        coders.insert(1, ("earlier_parallel", earlier, "parallel"))
    totals = {f"{label}_{what}": 0.0 for label, _, _ in coders for what in ("bytes", "encode_s", "decode_s")}
    for k, img in enumerate(kodak):
        latent, _ = codec.encode_latent(img)
        shape = tuple(latent.shape)
        for label, coder, storage in coders:
            repeats = REPEATS if storage == "parallel" else 1  # the wavefront model takes seconds per image
            payload, t_enc = fastest_with_result(coder.store_latent, latent, storage, repeats=repeats)
            back, t_dec = fastest_with_result(coder.load_latent, payload, shape, storage, repeats=repeats)
            if not np.array_equal(back, latent):
                raise SystemExit(f"{name}: {label} storage does not round-trip")
            totals[f"{label}_bytes"] += len(payload)
            totals[f"{label}_encode_s"] += t_enc
            totals[f"{label}_decode_s"] += t_dec
        (keep / f"{name}-kodak{k + 1:02d}.wlc").write_bytes(codec.compress(img))
    kodak_mp = sum(im.shape[0] * im.shape[1] for im in kodak) / 1e6
    totals["bytes_vs_context"] = totals["parallel_bytes"] / totals["context_bytes"]
    totals["network_flops_per_mp"] = context_flops_per_megapixel(codec)
    totals["layout"] = codec.parallel[0].version
    if earlier is not None:
        totals["earlier_id"], totals["earlier_layout"] = earlier.parallel[1], earlier.parallel[0].version
        totals["earlier_bytes_vs_context"] = totals["earlier_parallel_bytes"] / totals["context_bytes"]
    for label, _, _ in coders:
        totals[f"{label}_encode_mp_s"] = kodak_mp / totals[f"{label}_encode_s"]
        totals[f"{label}_decode_mp_s"] = kodak_mp / totals[f"{label}_decode_s"]
    return {"kodak": totals}


def whole_file_rows(names: list[str], kodak: list[np.ndarray], large: list[np.ndarray]) -> dict[str, list[dict]]:
    """Whole-file MP/s of every codec, measured image by image with the codecs interleaved, so
    that a slow spell of the shared machine falls on all of them alike; the whole schedule runs
    ``ROUNDS`` times and each (image, codec, stage) keeps its fastest call over all rounds, so
    that one slow spell does not decide an image's time."""
    from terse.walloc.codec import decompress, load_codec, read_wlc

    codecs = {name: load_codec(name) for name in names}
    earlier = with_earlier_tables(codecs[names[0]])  # the tables it shipped before its refit, interleaved too
    if earlier is not None:
        codecs[f"{names[0]} (earlier tables)"] = earlier
    names = list(codecs)
    stage_names = ("compress_s", "decompress_s", "transform_encode_s", "transform_decode_s")
    sets = (("kodak", kodak), *(("mosaic", [im]) for im in large))
    best: dict[tuple, float] = {}   # (set index, image index, codec, stage) -> fastest seconds
    for _ in range(ROUNDS):
        for s, (_, images) in enumerate(sets):
            for i, img in enumerate(images):
                for name, codec in codecs.items():
                    blob, t_compress = fastest_with_result(codec.compress, img, repeats=REPEATS)
                    out, t_decompress = fastest_with_result(decompress, blob, codec, repeats=REPEATS)
                    (latent, sizes), t_encode = fastest_with_result(codec.encode_latent, img, repeats=REPEATS)
                    _, t_decode = fastest_with_result(codec.decode_latent, latent, sizes, repeats=REPEATS)
                    if read_wlc(blob)[0]["storage"] != "parallel" or out.data.shape != img.shape:
                        raise SystemExit(f"{name}: unexpected default storage or shape")
                    for stage, t in zip(stage_names, (t_compress, t_decompress, t_encode, t_decode), strict=True):
                        key = (s, i, name, stage)
                        best[key] = min(best.get(key, float("inf")), t)
    rows: dict[str, list[dict]] = {name: [] for name in names}
    for s, (label, images) in enumerate(sets):
        mp = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
        for name in names:
            stage = {st: sum(best[(s, i, name, st)] for i in range(len(images))) for st in stage_names}
            rows[name].append({"set": label, "images": len(images), "megapixels": mp,
                               "size": f"{images[0].shape[1]}x{images[0].shape[0]}", **stage,
                               "compress_mp_s": mp / stage["compress_s"], "decompress_mp_s": mp / stage["decompress_s"],
                               "transform_encode_mp_s": mp / stage["transform_encode_s"],
                               "transform_decode_mp_s": mp / stage["transform_decode_s"]})
    return rows


def context_flops_per_megapixel(codec) -> float:
    """Multiply-adds x 2 of the parallel context network per image megapixel (one evaluation per
    latent position; the latent has one position per block x block pixels)."""
    model = codec.parallel[0]
    width, hidden, channels = 2 * model.channels * 12, model.hidden, model.channels
    per_position = 2 * (width * hidden + hidden * hidden + hidden * 2 * channels + width // 2 * channels)
    return per_position * 1e6 / codec.config.block ** 2


def cross_environment(keep: Path) -> dict:
    runs = {}
    for label, env in (("native-2-threads", {}), ("sse4.1-1-thread", OTHER_KERNELS)):
        out = subprocess.run([sys.executable, "-c", DECODE_SCRIPT, str(keep)], env={**os.environ, **env},
                             capture_output=True, text=True, check=True)
        runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
    files = sorted(runs["native-2-threads"])
    identical = all(len({runs[r][f] for r in runs}) == 1 for f in files)
    digest = hashlib.sha256("".join(runs["native-2-threads"][f] for f in files).encode()).hexdigest()[:16]
    return {"files": len(files), "environments": list(runs), "identical_latents": identical, "digest": digest}


def report(results: dict, command: str) -> str:
    m = results["meta"]["machine"]
    lines = ["## WaLLoC: parallel context model, whole-file speed", "",
             f"`{command}` (results/walloc/parallel.json). CPU: {m['cpu']} ({', '.join(results['cpu_flags'])}), "
             f"2 torch threads; fp32 GEMM {results['gemm_fp32_flops'] / 1e9:.0f} GFLOP/s in the same run.", "",
             "Latent payload on the 24 Kodak images (the parallel tables were fitted on BSDS500 only):", "",
             "| codec | parallel bytes | wavefront bytes | parallel / wavefront | parallel enc / dec MP/s "
             "| wavefront enc / dec MP/s | parallel encode as a fraction of fp32 GEMM |", "|---|---:|---:|---:|---:|---:|---:|"]
    models = [name for name in MODELS if name in results]
    for name in models:
        k = results[name]["kodak"]
        rows = [(f"{name} (layout {k.get('layout', 1)} tables)", "parallel")]
        if "earlier_parallel_bytes" in k:
            rows.append((f"{name}, earlier tables {k['earlier_id']} (layout {k['earlier_layout']})", "earlier_parallel"))
        for label, key in rows:
            lines.append(f"| {label} | {k[key + '_bytes']:,.0f} | {k['context_bytes']:,.0f} | "
                         f"{k[key + '_bytes'] / k['context_bytes']:.4f} | "
                         f"{k[key + '_encode_mp_s']:.1f} / {k[key + '_decode_mp_s']:.1f} | "
                         f"{k['context_encode_mp_s']:.2f} / {k['context_decode_mp_s']:.2f} | "
                         f"{k['network_flops_per_mp'] * k[key + '_encode_mp_s'] / results['gemm_fp32_flops']:.3f} |")
    for name in models:
        k = results[name]["kodak"]
        if "earlier_parallel_bytes" in k:
            speed_up = (k["earlier_parallel_encode_s"] / k["parallel_encode_s"],
                        k["earlier_parallel_decode_s"] / k["parallel_decode_s"])
            lines += ["", f"{name}: the current tables code Kodak's latents {speed_up[0]:.2f}x "
                      f"/ {speed_up[1]:.2f}x as fast as its earlier tables "
                      f"(encode / decode, same run, interleaved), in {k['parallel_bytes'] / k['earlier_parallel_bytes']:.4f}x "
                      "their bytes."]
    lines += ["", "Whole files through `compress` / `decompress` (default storage = parallel), MP/s, with the "
              "transform stages alone (network + WPT; the rest is entropy coding); codecs interleaved image by image, "
              "fastest of 3 calls in each of 3 rounds over all images (per image and stage, the fastest of the 9). "
              "Targets (issue 16): compress >= 20, decompress >= 10 MP/s for walloc-rgb-16x:", "",
              "| codec | set | size | compress | decompress | transform encode | transform decode |",
              "|---|---|---|---:|---:|---:|---:|"]
    for name in [name for name in results if isinstance(results[name], dict) and "whole_file" in results[name]]:
        for row in results[name]["whole_file"]:
            lines.append(f"| {name} | {row['set']} ({row['images']}) | {row['size']} | {row['compress_mp_s']:.2f} | "
                         f"{row['decompress_mp_s']:.2f} | {row['transform_encode_mp_s']:.1f} | "
                         f"{row['transform_decode_mp_s']:.1f} |")
    speeds = results.get("kernel_speeds")
    if speeds:
        untuned = "native-untuned-malloc" in speeds
        lines += ["", "Kodak whole files with the native kernels and with ATen / oneDNN / MKL held to AVX2 (as on a CPU "
                  "without AVX-512 or bf16)" + (", and with glibc's allocator left untuned (`TERSE_KEEP_FREED_MEMORY=0`: "
                  "every large tensor page-faulted afresh, see terse/core/memory.py)" if untuned else "")
                  + ", each in a subprocess, one right after the other, 3 rounds in turn (the fastest round of each), "
                  "MP/s" + (" (measured again by `--kernels-only`, after the rest)" if "kernel_speeds_meta" in results
                            else "") + ":", "",
                  "| codec | native compress / decompress | AVX2 compress / decompress |"
                  + (" native, allocator untuned |" if untuned else ""), "|---|---:|---:|" + ("---:|" if untuned else "")]
        for name in speeds["native"]:
            cells = [speeds[label][name] for label in ("native", "avx2", "native-untuned-malloc") if label in speeds]
            lines.append(f"| {name} | " + " | ".join(f"{c['compress_mp_s']:.1f} / {c['decompress_mp_s']:.1f}"
                                                    for c in cells) + " |")
    x = results["cross_environment"]
    lines += ["", f"Latents of {x['files']} files decoded again in subprocesses ({', '.join(x['environments'])}): "
              f"identical: **{x['identical_latents']}** (digest `{x['digest']}`)."]
    return "\n".join(lines)


def main() -> None:
    from terse.core.paths import data_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", type=int, default=2, help="mosaics of each size (2x2 and 3x3 Kodak tiles)")
    parser.add_argument("--kernels-only", action="store_true",
                        help="measure part 5 (kernel and allocator settings) again and keep the rest of the last "
                             "run's results/walloc/parallel.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    kodak_paths = sorted(data_path("images", "kodak").glob("*.png"))
    path = RESULTS / "walloc" / "parallel.json"
    names = [name for name in MODELS if shipped(name)]
    if args.kernels_only:   # parts 1-4 stay as the last run measured them
        results = json.loads(path.read_text())
        results["kernel_speeds_meta"] = meta(seed=None, benchmark="walloc-parallel --kernels-only")
    else:
        results = full_run(names, kodak_paths, args.large)
    results["kernel_speeds"] = kernel_speeds([n for n in names if n.startswith("walloc-rgb-16x")], kodak_paths)
    write_json(path, results)
    update_report_section("walloc-parallel", report(results, "python benchmarks/bench_walloc_parallel.py"))
    print(f"wrote {path}" + (" (part 5 measured again)" if args.kernels_only else ""))


def full_run(names: list[str], kodak_paths: list[Path], mosaics: int) -> dict:
    """Parts 1-4 of the module docstring."""
    kodak = [np.array(Image.open(p).convert("RGB")) for p in kodak_paths]
    landscape = [im for im in kodak if im.shape[0] < im.shape[1]]
    large = [mosaic(landscape, side, start=3 * k) for side in (2, 3) for k in range(mosaics)]
    flags = sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f in
                    ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni")})
    results = {"meta": meta(seed=None, benchmark="walloc-parallel"), "cpu_flags": flags, "gemm_fp32_flops": gemm_flops()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(name, flush=True)
            results[name] = bench_model(name, kodak, Path(tmp))
            print(json.dumps(results[name]["kodak"], indent=1), flush=True)
        for name, rows in whole_file_rows(names, kodak, large).items():
            results.setdefault(name, {})["whole_file"] = rows
        results["cross_environment"] = cross_environment(Path(tmp))
    return results


if __name__ == "__main__":
    main()
