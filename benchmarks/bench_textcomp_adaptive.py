"""What each adaptive component buys: context-mixing ablations on the 14 text/bench files.

    python benchmarks/bench_textcomp_adaptive.py [--files ...]

M1 (m1-default, the model of the default level) runs once per file and its per-step
frequency tables are recorded; every ablation then replays them through the context
mixer with one component switched off, so all rows see identical network outputs.
Reported: payload bits/byte (headers excluded) per file and in total, for the static
coder (level 0's ideal code length from the same frequencies), the full mixer (level 3)
and the mixer without each component. Writes results/textcomp/adaptive_ablations.json,
results/textcomp/adaptive_ablations.png and the `textcomp-adaptive` REPORT.md section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, meta, update_report_section, write_json  # noqa: E402


def record_frequencies(lm, params, frame: bytes):
    """Lane lengths, lane matrix and M1's (steps, lanes, 256) uint16 frequency tables."""
    import numpy as np

    from terse.nn.integer_gpt import torch_threads
    from terse.textcomp.compressor import _code_lanes, _lane_matrix, segment_lengths

    lengths = segment_lengths(len(frame), params.lanes_for(len(frame)))
    matrix = _lane_matrix(frame, lengths)
    recorded = np.zeros((matrix.shape[1], len(lengths), 256), dtype=np.uint16)

    def column(t, active, freqs):
        recorded[t] = freqs
        return matrix[:, t]

    with torch_threads(params.threads):
        _code_lanes(lm, params, lengths, column, None)
    return lengths, matrix, recorded


def static_bits(matrix, lengths, recorded) -> float:
    """Ideal code length (bits) of the frame under M1 alone: level 0's payload, exactly
    what a range coder reaches up to a few bytes."""
    import numpy as np

    total = 0.0
    for lane, n in enumerate(lengths):
        freqs = recorded[np.arange(n), lane, matrix[lane, :n]].astype(np.float64)
        total += float(np.sum(16 - np.log2(freqs)))
    return total


def main(argv: list[str] | None = None) -> None:
    import torch

    from terse.core.paths import data_path
    from terse.textcomp.compressor import CODER_PRESETS, LEVELS, _mix_frame, prepare_frame
    from terse.textcomp.context_mixing import COMPONENTS
    from terse.textcomp.model import load_byte_lm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="", help="comma-separated subset of text/bench (default: all 14)")
    parser.add_argument("--variants", default="",
                        help="comma-separated row labels to re-measure, merged into the existing JSON")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for recording M1 (sizes barely move)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    level = LEVELS[3]
    level = dataclasses.replace(level, params=level.params.replace(threads=args.threads))
    lm = load_byte_lm(level.model)
    bench = data_path("text", "bench")
    wanted = [f for f in args.files.split(",") if f]
    frames = {}
    for path in sorted(bench.iterdir()):
        if wanted and path.name not in wanted:
            continue
        frames[path.name] = prepare_frame(level.params, path.read_bytes())[1]  # what the coder codes
    recorded = {}
    for name, frame in frames.items():
        start = time.perf_counter()
        recorded[name] = record_frequencies(lm, level.params, frame)
        print(f"recorded M1 on {name} in {time.perf_counter() - start:.1f}s", flush=True)

    # earlier mixers as levels 1-3 wrote them (their coder presets)
    variants = {"static M1 (level 0)": None, "full mixer (level 3)": "", "mixer 1 (level 3 before mixer 2)": "exact-mixing",
                "mixer 3 (the previous level 3)": "exact-mixing-3"}
    variants.update({f"without {component}": component for component in COMPONENTS})
    out = RESULTS / "textcomp" / "adaptive_ablations.json"
    rows = {}
    if args.variants:  # re-measure some rows of an earlier full run, keep the others
        unknown = set(args.variants.split(",")) - set(variants)
        if unknown or not out.is_file():
            raise SystemExit(f"--variants needs an earlier full run and labels from {list(variants)}; got {unknown}")
        rows = json.loads(out.read_text())["rows"]
        variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
    for label, disable in variants.items():
        per_file, seconds = {}, 0.0
        for name, (lengths, matrix, freqs) in recorded.items():
            start = time.perf_counter()
            if disable is None:
                bits = static_bits(matrix, lengths, freqs)
            else:
                earlier = CODER_PRESETS.get(disable)
                params = (level.params.replace(mixer=earlier.mixer, mixer_rate=earlier.mixer_rate) if earlier
                          else level.params.replace(disable=disable))
                bits = 8 * len(_mix_frame(lm, params, matrix.copy(), lengths, None, None, replay=freqs))
            seconds += time.perf_counter() - start
            per_file[name] = bits / len(frames[name])
        n_bytes = sum(len(f) for f in frames.values())
        total = sum(per_file[n] * len(frames[n]) for n in frames) / n_bytes
        rows[label] = {"files": per_file, "total_bits_per_byte": total, "mixer_seconds": seconds}
        print(f"{label:<28} {total:.4f} bits/byte  ({seconds:.1f}s)", flush=True)

    write_json(out, {"meta": meta(benchmark="textcomp-adaptive", model=lm.model_id, params=level.params.to_dict(),
                                  threads=args.threads),
                     "rows": rows})
    full = rows["full mixer (level 3)"]["total_bits_per_byte"]
    plot(rows, full, out.with_suffix(".png"))
    names = list(frames)
    lines = ["### What each adaptive component buys "
             "(`python benchmarks/bench_textcomp_adaptive.py`, results/textcomp/adaptive_ablations.json)", "",
             "Payload bits/byte (headers excluded), M1 = m1-default outputs replayed identically in every row; "
             "Δ = total change when the component is switched off (positive = the component helps).", "",
             "| variant | total | Δ total | " + " | ".join(n.replace(".txt", "").split("_")[1] for n in names) + " |",
             "|---|---:|---:|" + "---:|" * len(names)]
    for label, row in rows.items():
        delta = row["total_bits_per_byte"] - full
        lines.append(f"| {label} | {row['total_bits_per_byte']:.3f} | {delta:+.3f} | "
                     + " | ".join(f"{row['files'][n]:.3f}" for n in names) + " |")
    lines += ["", "![ablations](textcomp/adaptive_ablations.png)"]
    if not wanted:  # a subset of files must not replace the report's full table
        update_report_section("textcomp-adaptive", "\n".join(lines))
    print(f"wrote {out}")


def plot(rows: dict, full: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [k for k in rows if k.startswith("without") or k.startswith("mixer ")]
    deltas = [rows[k]["total_bits_per_byte"] - full for k in labels]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh([k.replace("without ", "").split(" (")[0] for k in labels], deltas, color="tab:red")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("bits/byte lost when switched off (all 14 files)")
    ax.set_title(f"Context-mixing ablations (full mixer: {full:.3f} bits/byte)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
