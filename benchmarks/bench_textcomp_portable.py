"""Portable coding: what the integer M1 costs in ratio, and its speed on other kernels.

    python benchmarks/bench_textcomp_portable.py [--bytes 400000]

1. Quantization cost: bits/byte of each shipped M1 alone (no context mixing), float vs
   its integer version, on 64 lanes x 512 bytes of text/valid.
2. Speed of level 3 on an extract of book1 under several kernel sets (subprocesses with
   ATen/oneDNN/MKL/numba restricted as on another CPU), each next to that process's own
   GEMM throughput (fp32 and int8, 2 threads, 512x256x1024): roofline fraction =
   network FLOPs/byte x bytes/s / GEMM FLOP/s. Every run must give the same bytes.
3. A 10 KB file through the `terse` CLI (warm caches): wall seconds each way.

Writes results/textcomp/portable-<cpu>-<coder>.json (one file per CPU model and level-3
coder version, so runs on other machines add to the comparison) and the
`textcomp-portable` section of REPORT.md, built from every such file: the same level-3
bytes on every machine, per coder version, is the cross-machine check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, ROOT, meta, update_report_section, write_json  # noqa: E402

ENVIRONMENTS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "NUMBA_CPU_NAME": "haswell"},
    "sse4.1": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
               "NUMBA_CPU_NAME": "generic"},
}

SPEED_SCRIPT = r"""
import hashlib, json, sys, time, torch
from pathlib import Path
from terse.textcomp.compressor import compress, decompress
from terse.textcomp.model import load_integer_lm

def gemm(dtype):
    torch.set_num_threads(2)
    a = torch.randint(-127, 128, (512, 256)).to(dtype); b = torch.randint(-63, 64, (256, 1024)).to(dtype)
    f = (lambda: torch._int_mm(a, b)) if dtype == torch.int8 else (lambda: a @ b)
    for _ in range(5): f()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(20): f()
        best = min(best, (time.perf_counter() - t) / 20)
    return 2 * 512 * 256 * 1024 / best

data = Path(sys.argv[1]).read_bytes()
load_integer_lm("m1-default"); compress(data[:3000], level=3)  # load and compile outside the timing
t = time.perf_counter(); blob = compress(data, level=3); tc = time.perf_counter() - t
t = time.perf_counter(); out = decompress(blob); td = time.perf_counter() - t
assert out == data
print(json.dumps({"compress_s": tc, "decompress_s": td, "bytes_out": len(blob),
                  "sha256": hashlib.sha256(blob).hexdigest(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                  "gemm_fp32_flops": gemm(torch.float32), "gemm_int8_ops": gemm(torch.int8)}))
"""


def network_flops_per_byte(config) -> float:
    """2 x MACs per coded byte: the linear layers and the head, plus attention over a full window."""
    d, h, hd = config.d_model, config.mlp_ratio * config.d_model, config.head_dim
    qkv = d + 2 * config.n_kv_heads * hd
    linear = config.n_layers * (d * qkv + d * d + 2 * d * h) + d * config.vocab_size
    attention = config.n_layers * 2 * config.n_heads * hd * config.window
    return 2.0 * (linear + attention)


def quantization_cost(valid: bytes, lanes: int = 64, length: int = 512) -> dict:
    import numpy as np
    import torch

    from terse.nn.quantize_gpt import code_length_bits
    from terse.textcomp.model import load_byte_lm, load_integer_lm

    starts = np.linspace(0, len(valid) - length - 1, lanes).astype(int)
    matrix = np.stack([np.frombuffer(valid[s:s + length], dtype=np.uint8) for s in starts])
    ids = torch.cat([torch.full((lanes, 1), 256), torch.from_numpy(matrix.astype(np.int64))], 1)
    rows = {}
    for name in ("m1-default", "m1-small", "m1-tiny"):
        model = load_byte_lm(name).model
        with torch.no_grad():
            logp = torch.log_softmax(model(ids[:, :-1])[..., :256].double(), -1).gather(-1, ids[:, 1:, None])
        float_bpb = float(-logp.sum() / math.log(2)) / matrix.size
        integer_bpb = code_length_bits(load_integer_lm(name).model, matrix) / matrix.size
        rows[name] = {"float_bits_per_byte": float_bpb, "integer_bits_per_byte": integer_bpb,
                      "cost_percent": 100 * (integer_bpb / float_bpb - 1)}
        print(f"  {name}: float {float_bpb:.4f}  integer {integer_bpb:.4f} bits/byte "
              f"({rows[name]['cost_percent']:+.2f}%)", flush=True)
    return {"lanes": lanes, "bytes_per_lane": length, "models": rows}


def cli_small_file(data: bytes) -> dict:
    terse = shutil.which("terse", path=str(Path(sys.executable).parent)) or "terse"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "small.txt"
        src.write_bytes(data)
        out = Path(tmp) / "small.txt.trs"
        back = Path(tmp) / "back.txt"
        subprocess.run([terse, "text", "compress", str(src), "-f", "-q"], check=True)  # warm the caches
        t = time.perf_counter()
        subprocess.run([terse, "text", "compress", str(src), "-f", "-q"], check=True)
        compress_s = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([terse, "text", "decompress", str(out), "-o", str(back), "-f", "-q"], check=True)
        decompress_s = time.perf_counter() - t
        assert back.read_bytes() == data
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    import_torch_s = time.perf_counter() - t
    return {"bytes": len(data), "compress_wall_s": compress_s, "decompress_wall_s": decompress_s,
            "import_torch_s": import_torch_s}


def machine_slug(cpu: str) -> str:
    """``AMD EPYC`` -> ``amd-epyc``: the file name of one CPU model's results."""
    words = "".join(c if c.isalnum() else " " for c in cpu.lower()).split()
    return "-".join(w for w in words if w not in ("r", "tm", "processor", "cpu"))[:40] or "unknown"


def coder_of(speed: dict) -> str:
    """The level-3 coder preset a run wrote (runs from before mixer 2 did not record it)."""
    return speed.get("coder", "exact-mixing")


def report(runs_by_machine: list[dict], command: str) -> str:
    lines = ["## Portable neural coding (integer M1)", "", f"`{command}` on each machine "
             "(results/textcomp/portable-*.json; the section lists every machine's file).", ""]
    for results in runs_by_machine:
        lines.append(f"- **{results['meta']['machine']['cpu']}** ({results['meta']['date'][:10]}): "
                     f"flags {', '.join(results['cpu_flags'])}")
    q = runs_by_machine[-1]["quantization"]
    lines += ["", f"Quantization cost, M1 alone on {q['lanes']} x {q['bytes_per_lane']} B of text/valid "
              f"({runs_by_machine[-1]['meta']['machine']['cpu']}):", "",
              "| model | float bits/byte | integer bits/byte | cost |", "|---|---:|---:|---:|"]
    for name, row in q["models"].items():
        lines.append(f"| {name} | {row['float_bits_per_byte']:.4f} | {row['integer_bits_per_byte']:.4f} | "
                     f"{row['cost_percent']:+.2f}% |")
    speeds = [r["speed"] for r in runs_by_machine]
    # Files of different coder versions differ by design: digests are compared per version.
    digests: dict[str, set] = {}
    for s in speeds:
        digests.setdefault(coder_of(s), set()).update(row["sha256"] for row in s["runs"].values())
    same_input = len({s["bytes"] for s in speeds}) == 1
    lines += ["", f"Level 3 on the first {speeds[-1]['bytes']:,} bytes of book1 "
              f"({speeds[-1]['flops_per_byte'] / 1e6:.2f} MFLOP/byte of network), each kernel set in its own "
              "process; for each coder version, the compressed file's sha256 is the same on every machine and "
              f"kernel set: **{same_input and all(len(d) == 1 for d in digests.values())}**.", "",
              "| CPU | coder | kernels | ATen | compress KB/s | decompress KB/s | GEMM fp32 GFLOP/s | GEMM int8 GOP/s "
              "| roofline fraction (fp32 / int8 GEMM) | sha256 |", "|---|---|---|---|---:|---:|---:|---:|---|---|"]
    for results in runs_by_machine:
        for env, row in results["speed"]["runs"].items():
            lines.append(f"| {results['meta']['machine']['cpu']} | {coder_of(results['speed'])} | {env} | "
                         f"{row['cpu_capability']} | "
                         f"{row['compress_kb_s']:.1f} | {row['decompress_kb_s']:.1f} | "
                         f"{row['gemm_fp32_flops'] / 1e9:.0f} | {row['gemm_int8_ops'] / 1e9:.0f} | "
                         f"{row['roofline_fp32']:.2f} / {row['roofline_int8']:.2f} | `{row['sha256'][:12]}` |")
    lines += ["", "A 10 KB file through the CLI (warm caches), wall seconds:", "",
              "| CPU | compress | decompress | `import torch` alone |", "|---|---:|---:|---:|"]
    for results in runs_by_machine:
        c = results["cli_small_file"]
        torch_s = f"{c['import_torch_s']:.2f}" if "import_torch_s" in c else "not measured"
        lines.append(f"| {results['meta']['machine']['cpu']} | {c['compress_wall_s']:.2f} | "
                     f"{c['decompress_wall_s']:.2f} | {torch_s} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from terse.core.paths import data_path
    from terse.textcomp.compressor import LEVELS, _params_to_header
    from terse.textcomp.model import load_byte_lm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bytes", type=int, default=400_000)
    parser.add_argument("--environments", default=",".join(ENVIRONMENTS))
    args = parser.parse_args(argv)
    valid = b"".join(p.read_bytes() for p in sorted(data_path("text", "valid").iterdir()))
    print("quantization cost", flush=True)
    quantization = quantization_cost(valid)
    book = (data_path("text", "bench") / "calgary_book1.txt").read_bytes()[: args.bytes]
    flops = network_flops_per_byte(load_byte_lm("m1-default").model.config)
    runs = {}
    with tempfile.NamedTemporaryFile(suffix=".txt") as extract:
        extract.write(book)
        extract.flush()
        for env in args.environments.split(","):
            print(f"speed: {env}", flush=True)
            out = subprocess.run([sys.executable, "-c", SPEED_SCRIPT, extract.name], env={**os.environ, **ENVIRONMENTS[env]},
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["compress_kb_s"] = len(book) / 1e3 / row["compress_s"]
            row["decompress_kb_s"] = len(book) / 1e3 / row["decompress_s"]
            slower = min(row["compress_kb_s"], row["decompress_kb_s"]) * 1e3
            row["roofline_fp32"] = flops * slower / row["gemm_fp32_flops"]
            row["roofline_int8"] = flops * slower / row["gemm_int8_ops"]
            runs[env] = row
            print(f"  {row['compress_kb_s']:.1f} / {row['decompress_kb_s']:.1f} KB/s", flush=True)
    small = (data_path("text", "valid") / "gutenberg_35_the_time_machine.txt").read_bytes()[:10_240]
    flags = sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f in
                    ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")})
    results = {"meta": meta(seed=None, benchmark="textcomp-portable"), "cpu_flags": flags,
               "quantization": quantization,
               "speed": {"bytes": len(book), "flops_per_byte": flops, "runs": runs,
                         "coder": _params_to_header(LEVELS[3].params),
                         "identical_bytes": len({r["sha256"] for r in runs.values()}) == 1},
               "cli_small_file": cli_small_file(small)}
    # one file per machine and coder version (files from before mixer 2 are portable-<machine>.json)
    json_path = (RESULTS / "textcomp"
                 / f"portable-{machine_slug(results['meta']['machine']['cpu'])}-{results['speed']['coder']}.json")
    write_json(json_path, results)
    every = sorted((json.loads(p.read_text()) for p in (RESULTS / "textcomp").glob("portable-*.json")),
                   key=lambda r: r["meta"]["date"])
    update_report_section("textcomp-portable", report(every, "python benchmarks/bench_textcomp_portable.py"))
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
