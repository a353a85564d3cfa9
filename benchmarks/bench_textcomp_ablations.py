"""Ablations behind the design choices of the neural text compressor (m1-default).

    python benchmarks/bench_textcomp_ablations.py

Writes results/textcomp/ablations.json and the `textcomp-ablations` section of
results/REPORT.md: (1) minimum segment length vs bits/byte on the first 200 kB of book1,
(2) the CRLF->LF frame transform on/off on the four prose files, (3) bf16 vs fp32 time of
one 256-lane coding step, (4) where a step's time goes (torch profiler, by operator).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

HEADER_NOTE = "payload bits/byte (file headers excluded, so parameter sets compare fairly)"

PROSE = ["canterbury_alice29.txt", "canterbury_asyoulik.txt", "canterbury_plrabn12.txt", "calgary_book1.txt"]


def step_time(lm, params, lanes: int = 256, steps: int = 40) -> float:
    """Seconds per coding step (model + CDF quantization), lanes all active."""
    import numpy as np

    from terse.textcomp.compressor import _code_lanes

    column = np.full(lanes, 101, dtype=np.uint8)
    lengths = np.full(lanes, steps, dtype=np.int64)
    start = time.perf_counter()
    _code_lanes(lm, params, lengths, lambda t, active, freqs: column, None)
    return (time.perf_counter() - start) / steps


def main() -> None:
    import numpy as np
    import torch
    from torch.profiler import profile

    from terse.core.paths import data_path
    from terse.nn.integer_gpt import torch_threads
    from terse.textcomp.compressor import CoderParams, _code_lanes, _compute_context, compress_frame
    from terse.textcomp.model import load_byte_lm

    def payload_bits(data: bytes, params: CoderParams) -> float:
        """Bits/byte of the coded payload of ``data`` as one frame (all inputs here < 1 MiB)."""
        with torch_threads(params.threads):
            return 8 * len(compress_frame(lm, params, data)[1]) / len(data)

    torch.set_num_threads(2)
    lm = load_byte_lm("m1-default")
    bench = data_path("text", "bench")
    base = CoderParams()

    book1 = (bench / "calgary_book1.txt").read_bytes()[:200_000]
    segments = {seg: payload_bits(book1, base.replace(min_segment_bytes=seg)) for seg in (512, 1024, 4096, 16384)}
    print("segments", segments, flush=True)

    eol = {}
    for flag in (True, False):
        files = {name: (bench / name).read_bytes() for name in PROSE}
        per_file = {name: payload_bits(data, base.replace(eol_transform=flag)) for name, data in files.items()}
        total = sum(per_file[n] * len(d) for n, d in files.items()) / sum(len(d) for d in files.values())
        eol["on" if flag else "off"] = {"prose_bits_per_byte": total, "files": per_file}
    print("eol", eol, flush=True)

    step_time(lm, base, steps=5)  # warm-up
    timing = {compute: step_time(lm, base.replace(compute=compute)) for compute in ("bf16", "fp32")}
    print("step seconds", timing, flush=True)

    lengths = np.full(256, 30, dtype=np.int64)
    column = np.full(256, 101, dtype=np.uint8)
    with _compute_context(base), profile() as prof:
        _code_lanes(lm, base, lengths, lambda t, active, freqs: column, None)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    ops = {e.key: e.self_cpu_time_total / total for e in events[:8]}
    print("profile", ops, flush=True)

    out = RESULTS / "textcomp" / "ablations.json"
    write_json(out, {"meta": meta(benchmark="textcomp-ablations", model=lm.model_id), "segment_bits_per_byte": segments,
                     "eol_transform": eol, "step_seconds_256_lanes": timing, "profile_self_cpu_share": ops})
    lines = ["### Ablations (`python benchmarks/bench_textcomp_ablations.py`, results/textcomp/ablations.json)", "",
             "| minimum segment (first 200 kB of book1) | " + " | ".join(f"{k} B" for k in segments) + " |",
             "|---|" + "---:|" * len(segments),
             "| " + HEADER_NOTE + " | " + " | ".join(f"{v:.3f}" for v in segments.values()) + " |", "",
             f"CRLF->LF frame transform, 4 prose files, {HEADER_NOTE}: on {eol['on']['prose_bits_per_byte']:.3f}, "
             f"off {eol['off']['prose_bits_per_byte']:.3f} bits/byte "
             f"(alice29 {eol['on']['files']['canterbury_alice29.txt']:.3f} vs "
             f"{eol['off']['files']['canterbury_alice29.txt']:.3f}, plrabn12 "
             f"{eol['on']['files']['canterbury_plrabn12.txt']:.3f} vs {eol['off']['files']['canterbury_plrabn12.txt']:.3f}).",
             "",
             f"One 256-lane coding step: bf16 {1e3 * timing['bf16']:.1f} ms, fp32 {1e3 * timing['fp32']:.1f} ms "
             f"({timing['fp32'] / timing['bf16']:.2f}x).", "",
             "Where a bf16 step's time goes (self CPU time, top operators): "
             + ", ".join(f"{k} {100 * v:.0f}%" for k, v in ops.items()) + "."]
    update_report_section("textcomp-ablations", "\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
