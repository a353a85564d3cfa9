"""WaLLoC on a second photo set, never used for training or tuning: equal-bytes RD against
JPEG / WebP / AVIF and the speed of every codec, measured in the same run.

shared/data holds no held-out photos besides Kodak (the codecs trained on all 500 BSDS500
images), so the set is the colour photographs bundled in the scikit-image wheel (astronaut,
chelsea, coffee, motorcycle, rocket, retina, Hubble deep field, IHC micrograph: 0.14-2.0 MP),
read as files (the package is installed with --no-deps and never imported), or any folder.

    pip install --no-deps scikit-image==0.26.0
    python benchmarks/bench_walloc_photos.py            # -> results/walloc/photos.json, REPORT section
    python benchmarks/bench_walloc_photos.py --folder DIR
    # the same measurement for chosen codecs on Kodak -> results/walloc/kodak-step6.json, section walloc-kodak-step6
    python benchmarks/bench_walloc_photos.py --folder ../shared/data/images/kodak --name kodak-step6 \
        --codecs walloc-rgb-16x,walloc-rgb-4x-step6
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_walloc import (  # noqa: E402
    AVIF_QUALITIES,
    JPEG_QUALITIES,
    WEBP_QUALITIES,
    equal_bytes,
    pillow_codec,
    shipped,
)
from common import RESULTS, fastest_with_result, meta, update_report_section, write_json  # noqa: E402

SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "retina.jpg",
                  "hubble_deep_field.jpg", "ihc.png")
CODECS = ("walloc-rgb-16x", "walloc-rgb-16x-hq", "walloc-rgb-4x", "walloc-rgb-4x-step6")


def photo_paths(folder: str | None) -> list[Path]:
    if folder:
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm"))
    else:
        spec = importlib.util.find_spec("skimage")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("pip install --no-deps scikit-image==0.26.0 (its bundled photos are the default set), "
                             "or pass --folder DIR")
        data = Path(list(spec.submodule_search_locations)[0]) / "data"
        paths = [data / name for name in SKIMAGE_PHOTOS]
    if not paths:
        raise SystemExit("no photos found")
    return paths


def main() -> None:
    from PIL import features

    from terse.walloc.codec import load_codec
    from terse.walloc.metrics import ms_ssim, psnr
    from terse.walloc.signals import read_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", help="photos to use instead of scikit-image's bundled ones")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated shipped codecs")
    parser.add_argument("--name", default="photos", help="results/walloc/NAME.json and REPORT section walloc-NAME")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = [(p.name, read_image(p)) for p in photo_paths(args.folder)]
    fmts = ["JPEG", "WEBP"] + (["AVIF"] if features.check("avif") else [])
    load_before = os.getloadavg()[0]
    result = {"meta": meta(seed=0, torch_threads=args.threads), "name": args.name,
              "set": args.folder or "scikit-image 0.26.0 data",
              "images": {name: list(img.shape[:2]) for name, img in images}, "codecs": {}}
    for name in filter(shipped, args.codecs.split(",")):
        codec = load_codec(name)
        codec.compress(images[0][1])  # first-call costs (tables, kernels) out of the timing
        rows = []
        for image_name, img in images:
            blob, t_enc = fastest_with_result(codec.compress, img)
            decoded, t_dec = fastest_with_result(codec.decompress, blob)
            mp = img.shape[0] * img.shape[1] / 1e6
            rows.append({"image": image_name, "bytes": len(blob), "bpp": 8 * len(blob) / (mp * 1e6),
                         "psnr": psnr(img, decoded.data), "ms_ssim": ms_ssim(img, decoded.data),
                         "encode_mp_s": mp / t_enc, "decode_mp_s": mp / t_dec})
            print(name, rows[-1], flush=True)
        summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "image"}
        equal = {fmt: equal_bytes(images, rows, fmt) for fmt in fmts}
        result["codecs"][name] = {"per_image": rows, "summary": summary, "equal_bytes": equal}
    # the classical codecs' speed at one middle quality each (the equal-bytes search times only sizes)
    speeds = {}
    for fmt, qualities in (("JPEG", JPEG_QUALITIES), ("WEBP", WEBP_QUALITIES), ("AVIF", AVIF_QUALITIES)):
        if fmt not in fmts:
            continue
        quality = qualities[len(qualities) // 2]
        enc = dec = mp = 0.0
        for _, img in images:
            runs = [pillow_codec(img, fmt, quality) for _ in range(3)]  # fastest of 3, as WaLLoC's
            t_enc, t_dec = min(r[2] for r in runs), min(r[3] for r in runs)
            enc, dec, mp = enc + t_enc, dec + t_dec, mp + img.shape[0] * img.shape[1] / 1e6
        speeds[f"{fmt} q{quality}"] = {"encode_mp_s": mp / enc, "decode_mp_s": mp / dec}
    result["classical_speeds"] = speeds
    result["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    write_json(RESULTS / "walloc" / f"{args.name}.json", result)
    update_report_section(f"walloc-{args.name}", report(result))


def report(result: dict) -> str:
    load = result["load_average"]
    sizes = ", ".join(f"{n.split('.')[0]} {h}x{w}" for n, (h, w) in result["images"].items())
    name = result.get("name", "photos")
    command = "python benchmarks/bench_walloc_photos.py" + ("" if name == "photos" else f" --name {name} ...")
    title = "a second photo set" if name == "photos" else f"`{result['set']}`"
    lines = [f"### WaLLoC on {title} (`{command}`)", "",
             f"{len(result['images'])} photos never used for training or tuning ({result['set']}: {sizes}); "
             f"{result['meta'].get('torch_threads')} torch threads, CPU: {result['meta'].get('machine', {}).get('cpu', '?')}, "
             f"1-minute load average {load['before']:.1f} before / {load['after']:.1f} after. "
             f"Raw: results/walloc/{name}.json.", "",
             "| codec | bpp | PSNR dB | MS-SSIM | file encode MP/s | file decode MP/s |", "|---|---:|---:|---:|---:|---:|"]
    for name, c in result["codecs"].items():
        s = c["summary"]
        lines.append(f"| {name} (parallel) | {s['bpp']:.3f} | {s['psnr']:.2f} | {s['ms_ssim']:.4f} | "
                     f"{s['encode_mp_s']:.2f} | {s['decode_mp_s']:.2f} |")
    for name, s in result["classical_speeds"].items():
        lines.append(f"| {name} | - | - | - | {s['encode_mp_s']:.1f} | {s['decode_mp_s']:.1f} |")
    lines += ["", "At equal bytes, per photo (each classical codec at the highest quality no larger than WaLLoC's file), "
              "WaLLoC minus that codec, mean over photos:", "",
              "| WaLLoC | vs | PSNR dB | MS-SSIM | codec bytes / WaLLoC bytes | photos it could not reach |",
              "|---|---|---:|---:|---:|---:|"]
    for name, c in result["codecs"].items():
        for fmt, e in c["equal_bytes"].items():
            lines.append(f"| {name.removeprefix('walloc-rgb-')} | {fmt} | {e['walloc_minus_codec_psnr_db']:+.2f} | "
                         f"{e['walloc_minus_codec_ms_ssim']:+.4f} | {e['codec_bytes_over_walloc']:.3f} | "
                         f"{e['images_codec_could_not_reach']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
