"""What limits WaLLoC's PSNR: dimensionality reduction or quantization?

    python benchmarks/bench_walloc_limits.py

On the 24 Kodak images (never trained on), for each shipped 16x / 4x decoder: PSNR from the
rounded latents a file holds, and from the continuous (companded, unrounded) latents the
encoder produces before rounding, through the full decoder and through its linear 1x1 path
alone. The gap rounded -> continuous is what the 8-bit quantization costs; what remains below
a lossless reconstruction is the price of keeping 12 (16x) or 48 (4x) of the 192 wavelet
channels per 8x8 block through one linear projection. Writes results/walloc/limits.json and the
``walloc-limits`` section of REPORT.md.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_walloc import shipped  # noqa: E402
from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

CODECS = ("walloc-rgb-16x", "walloc-rgb-16x-hq", "walloc-rgb-4x")


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(torch.mean((x_hat.clamp(-0.5, 0.5) - x) ** 2)))


def main() -> None:
    from PIL import Image

    from terse.core.paths import data_path
    from terse.walloc.codec import load_codec

    torch.set_num_threads(2)
    paths = sorted(data_path("images", "kodak").glob("kodim*.png"))
    images = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None].float() / 255 - 0.5
              for p in paths]
    results = {"meta": meta(seed=None, benchmark="walloc-limits"), "images": len(images), "codecs": {}}
    for name in filter(shipped, CODECS):
        net = load_codec(name).net
        scores: dict[str, list[float]] = {}
        with torch.no_grad():
            for x in images:
                continuous = net.encode_continuous(x)
                for latents, latent in (("rounded", net.bottleneck.quantize(continuous)), ("continuous", continuous)):
                    linear = net.synthesis(net.linear_decoder(net.bottleneck.to_normal(latent)))
                    scores.setdefault(f"linear_{latents}", []).append(psnr(linear, x))
                    scores.setdefault(f"decoder_{latents}", []).append(psnr(net.decode(latent), x))
        results["codecs"][name] = {k: float(np.mean(v)) for k, v in scores.items()}
        print(name, results["codecs"][name], flush=True)
    write_json(RESULTS / "walloc" / "limits.json", results)
    update_report_section("walloc-limits", report(results))


def report(results: dict) -> str:
    lines = ["### What limits WaLLoC's PSNR (`python benchmarks/bench_walloc_limits.py`)", "",
             f"Kodak ({results['images']} images), mean PSNR in dB. *Rounded*: the integer latents a file holds; "
             "*continuous*: the encoder's output before rounding (no quantization). Data: results/walloc/limits.json.", "",
             "| codec | linear path, rounded | linear path, continuous | decoder, rounded | decoder, continuous | "
             "what rounding costs the decoder | decoder over its linear path |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in results["codecs"].items():
        lines.append(f"| {name} | {s['linear_rounded']:.2f} | {s['linear_continuous']:.2f} | {s['decoder_rounded']:.2f} | "
                     f"{s['decoder_continuous']:.2f} | {s['decoder_continuous'] - s['decoder_rounded']:.2f} | "
                     f"{s['decoder_rounded'] - s['linear_rounded']:+.2f} |")
    costs = ", ".join(f"{name} {s['decoder_continuous'] - s['decoder_rounded']:.2f} dB"
                      for name, s in results["codecs"].items())
    lines += ["", f"What rounding the latents to 8 bits costs the decoder: {costs}. Where that is small, the PSNR is "
              "bounded by the linear projection that keeps 12 (16x) or 48 (4x) of the 192 wavelet channels of each "
              "8x8 block (a decoder can only partly guess what it dropped); where it is large, by the quantization step."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
