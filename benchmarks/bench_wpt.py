"""Speed of the 2-D wavelet packet transform and of WaLLoC's encoder: block form vs level form.

Both forms compute the same linear map (tests check agreement to 1e-12 in float64):

* level form: J levels of 2-band polyphase filtering (``_wpt2d_levels`` / ``_iwpt2d_levels``);
* block form: one strided convolution per axis with the J-level filters (``wpt2d`` / ``iwpt2d``
  for J <= 4), and for the encoder the 1x1 projection folded into the second convolution
  (``wpt2d_project``).

Also records the float32 round-trip error of both forms and their float64 difference.
Timed on a 768x512 RGB image (Kodak's size; timings do not depend on the content), J = 3,
the shipped walloc-rgb-16x / 4x projections; fastest of ``--repeats`` calls, 1 and 2 threads,
in one run. Writes ``results/walloc/wpt_speed.json`` and the REPORT section ``walloc-wpt``.

    python benchmarks/bench_wpt.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, fastest, meta, update_report_section, write_json  # noqa: E402

HEIGHT, WIDTH, LEVELS = 512, 768, 3


def main() -> None:
    from terse.nn.wavelets import _iwpt2d_levels, _wpt2d_levels, iwpt2d, wpt2d, wpt2d_project
    from terse.walloc.codec import load_codec

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    x = torch.rand(1, 3, HEIGHT, WIDTH) - 0.5
    coeffs = wpt2d(x, LEVELS)
    megapixels = HEIGHT * WIDTH / 1e6
    cases = {
        "WPT analysis": (lambda: _wpt2d_levels(x, LEVELS), lambda: wpt2d(x, LEVELS)),
        "WPT synthesis": (lambda: _iwpt2d_levels(coeffs, LEVELS), lambda: iwpt2d(coeffs, LEVELS)),
    }
    for name in ("walloc-rgb-16x", "walloc-rgb-4x"):
        encoder = load_codec(name).net.encoder
        weight, bias = encoder.weight.detach().float(), encoder.bias.detach().float()
        cases[f"{name} encoder (WPT + 1x1)"] = (
            lambda w=weight, b=bias: torch.nn.functional.conv2d(_wpt2d_levels(x, LEVELS), w, b),
            lambda w=weight, b=bias: wpt2d_project(x, w, b, LEVELS))
    # exactness: float32 round trip of each form, and block vs level form in float64
    x64 = x.double()
    accuracy = {"round_trip_max_abs_error_float32": {
                    "block": float((iwpt2d(wpt2d(x, LEVELS), LEVELS) - x).abs().max()),
                    "levels": float((_iwpt2d_levels(_wpt2d_levels(x, LEVELS), LEVELS) - x).abs().max())},
                "block_vs_levels_max_abs_diff_float64": float((wpt2d(x64, LEVELS) - _wpt2d_levels(x64, LEVELS)).abs().max())}
    load_before = os.getloadavg()[0]
    rows = {}
    with torch.no_grad():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, (levels_form, block_form) in cases.items():
                t_levels = fastest(levels_form, repeats=args.repeats, warmup=1)
                t_block = fastest(block_form, repeats=args.repeats, warmup=1)
                rows[f"{name}, {threads} thread{'s' if threads > 1 else ''}"] = {
                    "levels_mp_s": megapixels / t_levels, "block_mp_s": megapixels / t_block, "speedup": t_levels / t_block}
    info = meta(seed=None, image=[HEIGHT, WIDTH], levels=LEVELS, repeats=args.repeats,
                load_average={"before": load_before, "after": os.getloadavg()[0]})
    write_json(RESULTS / "walloc" / "wpt_speed.json", {"meta": info, "accuracy": accuracy, "rows": rows})
    lines = ["### WPT and encoder speed: block form vs level form", "",
             f"`python benchmarks/bench_wpt.py`: one {WIDTH}x{HEIGHT} RGB image, J = {LEVELS}, fastest of "
             f"{args.repeats} calls, megapixels/s; 1-minute load average {load_before:.1f} before / "
             f"{info['load_average']['after']:.1f} after.", "",
             f"Exactness on the same image (pixels in [-0.5, 0.5]; target < 1e-5): float32 round-trip max error "
             f"{accuracy['round_trip_max_abs_error_float32']['block']:.1e} (block form) / "
             f"{accuracy['round_trip_max_abs_error_float32']['levels']:.1e} (level form); block vs level form in "
             f"float64 {accuracy['block_vs_levels_max_abs_diff_float64']:.1e}.", "",
             "| operation | level form MP/s | block form MP/s | speed-up |", "|---|---:|---:|---:|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['levels_mp_s']:.1f} | {row['block_mp_s']:.1f} | {row['speedup']:.1f}x |")
        print(lines[-1], flush=True)
    update_report_section("walloc-wpt", "\n".join(lines))


if __name__ == "__main__":
    main()
