"""Compressed-domain learning with WaLLoC (the paper's second half), image task: colorization.

A small CNN sees only a grayscale photo and predicts its chroma; the same network (only the
number of input channels differs) learns either from WaLLoC latents or from pixels on the
same H/8 x W/8 grid:

* latents: the gray image (luma Y, BT.601, as uint8, replicated to R = G = B) through
  ``walloc-rgb-16x``: continuous companded latents before rounding (the paper's input to
  downstream models), scaled by 1/127 -> (12, H/8, W/8) = 0.1875 values per pixel;
* pixels: luma area-downsampled by 2, then pixel-unshuffled by 4 -> (16, H/8, W/8)
  = 0.25 values per pixel, i.e. the pixel input gets 33% *more* values than the latents.

Both inputs are standardized per channel with training-set statistics. The network predicts
chroma (Cb, Cr) at H/2 x W/2 (1x1 conv to 32 channels + pixel shuffle by 4), loss MSE on
chroma. Evaluation colorizes each held-out image: predicted chroma is bilinearly upsampled and
combined with the true full-resolution luma, and the RGB result is compared with the original
(RGB PSNR, chroma PSNR). Two test sets, never trained on: the 100 BSDS500 ``val_`` images
(in-domain) and the 24 Kodak images (another dataset, as issue 4 asks). Reference rows: gray
(chroma = 0), the mean chroma of the training set, and the true chroma at H/2 (the best any
model with this output resolution can do).

Training: the 400 BSDS500 ``train_`` + ``test_`` images (plus their mirror images, whose
features are computed from the flipped image), random aligned 128 px crops (16 x 16 grid
cells), same recipe, steps and seeds for both inputs, 1 torch thread on a shared CPU. The val
images are held out because Kodak alone mostly measures the dataset shift (see the report).
A third input, full-resolution luma (64, H/8, W/8) at 4x the budget, is trained with the
first seed only as a reference.

    python benchmarks/bench_walloc_colorize.py            # ~20 min on one core
    python benchmarks/bench_walloc_colorize.py --steps 200 --seeds 0   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

BLOCK = 8  # WaLLoC J=3: one latent position per 8x8 pixels
CROP_CELLS = 16  # training crops of 16 x 16 grid cells = 128 x 128 px
BATCH = 16
WIDTH = 64
LR = 2e-3
EVAL_EVERY = 250  # the curves evaluate both test sets (chroma PSNR) this often
EXAMPLES = ("kodim05.png", "kodim14.png", "kodim23.png")
EXAMPLE_HEIGHT = 144
LABELS = {"latents": "WaLLoC 16x latents", "pixels": "luma /2, unshuffled by 4",
          "luma_full": "reference: full-res luma, unshuffled by 8 (4x the budget; first seed only)"}


# ----------------------------------------------------------------------------- colour + features
def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> Y in [0, 1], Cb / Cr in [-0.5, 0.5] (BT.601, full range)."""
    r, g, b = rgb.unbind(-3)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    return torch.stack([y, cb, cr], dim=-3)


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    y, cb, cr = ycc.unbind(-3)
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=-3)


def gray_of(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8 luma: the grayscale photo the model is given."""
    rgb = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float() / 255
    return (rgb_to_ycbcr(rgb)[0] * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def latent_features(codec, gray: np.ndarray) -> torch.Tensor:
    """(H, W) uint8 -> (12, H/8, W/8): continuous companded latents / 127 (H, W padded to 8)."""
    x, _ = codec._to_tensor(np.repeat(gray[:, :, None], 3, axis=2))
    with torch.no_grad():
        return codec.net.encode_continuous(x)[0] / 127.0


def gray_latent_fn(codec):
    """The same latents from one WPT instead of three: for R = G = B the 1x1 encoder sees the
    same 64 sub-bands per colour (colour is the outermost channel index), so its weights can be
    summed over colours once. Returns (H, W) uint8 -> (12, H/8, W/8)."""
    from terse.nn.wavelets import pad_to_multiple, wpt2d

    net = codec.net
    weight = net.encoder.weight.detach()  # (12, 3 * 64, 1, 1)
    weight = weight.reshape(weight.shape[0], 3, -1, 1, 1).sum(1)  # (12, 64, 1, 1)
    bias = net.encoder.bias.detach()

    def fn(gray: np.ndarray) -> torch.Tensor:
        y, _ = pad_to_multiple(torch.from_numpy(gray)[None, None].float() / 255 - 0.5, BLOCK, (2, 3))
        with torch.no_grad():
            return net.bottleneck.to_uniform(F.conv2d(wpt2d(y, codec.config.levels), weight, bias))[0] / 127.0

    return fn


def pixel_features(gray: np.ndarray) -> torch.Tensor:
    """(H, W) uint8 -> (16, H/8, W/8): luma area-downsampled by 2, then pixel-unshuffled by 4."""
    from terse.nn.wavelets import pad_to_multiple

    y, _ = pad_to_multiple(torch.from_numpy(gray)[None, None].float() / 255 - 0.5, BLOCK, (2, 3))
    return F.pixel_unshuffle(F.avg_pool2d(y, 2), BLOCK // 2)[0]


def full_luma_features(gray: np.ndarray) -> torch.Tensor:
    """(H, W) uint8 -> (64, H/8, W/8): full-resolution luma unshuffled by 8 (reference, 4x the budget)."""
    from terse.nn.wavelets import pad_to_multiple

    y, _ = pad_to_multiple(torch.from_numpy(gray)[None, None].float() / 255 - 0.5, BLOCK, (2, 3))
    return F.pixel_unshuffle(y, BLOCK)[0]


def chroma_target(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (2, H/2, W/2) Cb, Cr area-downsampled by 2 (H, W padded to 8)."""
    from terse.nn.wavelets import pad_to_multiple

    rgb, _ = pad_to_multiple(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, BLOCK, (2, 3))
    return F.avg_pool2d(rgb_to_ycbcr(rgb)[:, 1:], 2)[0]


def load_set(paths, codec, flips: bool) -> list[dict]:
    from terse.walloc.signals import read_image

    items = []
    for path in paths:
        img = np.array(read_image(path), copy=True)
        for flip in (False, True) if flips else (False,):
            im = np.ascontiguousarray(img[:, ::-1]) if flip else img
            gray = gray_of(im)
            items.append({"name": path.name, "img": im, "gray": gray, "target": chroma_target(im),
                          "latents": latent_features(codec, gray), "pixels": pixel_features(gray),
                          "luma_full": full_luma_features(gray),
                          "cells": (im.shape[0] // BLOCK, im.shape[1] // BLOCK)})
    return items


def feature_cost(codec, images: list[dict]) -> dict:
    """Median ms per Kodak image to compute each input from the uint8 gray image (1 thread)."""
    out = {}
    fns = {"latents": lambda g: latent_features(codec, g), "latents_gray_path": gray_latent_fn(codec),
           "pixels": pixel_features, "luma_full": full_luma_features}
    for kind, fn in fns.items():
        fn(images[0]["gray"])  # warm-up
        times = []
        for item in images:
            start = time.perf_counter()
            fn(item["gray"])
            times.append(time.perf_counter() - start)
        out[kind] = 1e3 * float(np.median(times))
    return out


# ----------------------------------------------------------------------------- model
class Residual(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, width, h, w)
        return h + self.conv2(F.relu(self.conv1(F.relu(h))))


class Colorizer(nn.Module):
    """(B, in_channels, H/8, W/8) -> (B, 2, H/2, W/2) chroma. Dilations widen the context to ~31 cells."""

    def __init__(self, in_channels: int, width: int = WIDTH):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[Residual(width, d) for d in (1, 2, 4, 8)])
        self.head = nn.Conv2d(width, 2 * 16, 1)  # 2 chroma channels x (4 x 4) sub-positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))  # (B, width, H/8, W/8)
        return F.pixel_shuffle(self.head(F.relu(h)), 4)  # (B, 2, H/2, W/2)


# ----------------------------------------------------------------------------- evaluation
def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(peak**2 / max(mse, 1e-12))


def colorize(item: dict, chroma_half: torch.Tensor) -> np.ndarray:
    """Predicted chroma (2, H/2, W/2) of the padded image + true luma -> (H, W, 3) uint8."""
    h, w = item["gray"].shape
    chroma = F.interpolate(chroma_half[None], scale_factor=2, mode="bilinear", align_corners=False)[0, :, :h, :w]
    y = torch.from_numpy(item["gray"]).float()[None] / 255
    rgb = ycbcr_to_rgb(torch.cat([y, chroma]))
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def quality(items: list[dict], chroma_fn) -> dict:
    rgb_psnr, chroma_psnr, outputs = [], [], {}
    for item in items:
        out = colorize(item, chroma_fn(item))
        rgb_psnr.append(psnr(out, item["img"], 255))
        ycc_out = rgb_to_ycbcr(torch.from_numpy(out).permute(2, 0, 1).float() / 255)[1:].numpy()
        ycc_ref = rgb_to_ycbcr(torch.from_numpy(item["img"]).permute(2, 0, 1).float() / 255)[1:].numpy()
        chroma_psnr.append(psnr(ycc_out, ycc_ref, 1.0))
        if item["name"] in EXAMPLES:
            outputs[item["name"]] = out
    return {"rgb_psnr": float(np.mean(rgb_psnr)), "chroma_psnr": float(np.mean(chroma_psnr)),
            "per_image_rgb_psnr": dict(zip([i["name"] for i in items], map(float, rgb_psnr), strict=True)),
            "_examples": outputs}


def train_eval(kind: str, train: list[dict], sets: dict[str, list[dict]], stats, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = stats
    model = Colorizer(train[0][kind].shape[0])
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.05)
    t_cells = CROP_CELLS * BLOCK // 2  # target crop side at H/2

    def predict(item):
        with torch.no_grad():
            return model(((item[kind] - mean) / std)[None])[0]

    curve, losses, train_s = [], [], 0.0
    for step in range(1, steps + 1):
        start = time.perf_counter()
        xs, ys = [], []
        for idx in rng.integers(len(train), size=BATCH):
            item = train[idx]
            i = int(rng.integers(item["cells"][0] - CROP_CELLS + 1))
            j = int(rng.integers(item["cells"][1] - CROP_CELLS + 1))
            xs.append(item[kind][:, i: i + CROP_CELLS, j: j + CROP_CELLS])
            ys.append(item["target"][:, i * 4: i * 4 + t_cells, j * 4: j * 4 + t_cells])
        loss = F.mse_loss(model((torch.stack(xs) - mean) / std), torch.stack(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        train_s += time.perf_counter() - start
        losses.append(loss.item())
        if step % EVAL_EVERY == 0 or step == steps:
            model.eval()
            point = {"step": step, "train_loss": float(np.mean(losses[-EVAL_EVERY:]))}
            for name, items in sets.items():
                point[f"{name}_chroma_psnr"] = quality(items, predict)["chroma_psnr"]
            model.train()
            curve.append(point)
            print(f"  {kind} seed {seed} step {step}: loss {point['train_loss']:.5f} chroma PSNR "
                  + ", ".join(f"{n} {point[f'{n}_chroma_psnr']:.2f} dB" for n in sets) + f" ({train_s:.0f} s)", flush=True)
    model.eval()
    out = {"seed": seed, "parameters": sum(p.numel() for p in model.parameters()), "train_seconds": train_s}
    for name, items in sets.items():
        q = quality(items, predict)
        out[name] = {k: v for k, v in q.items() if not k.startswith("_")}
        if name == "kodak":
            out["_examples"] = q["_examples"]
    kodak = sets["kodak"]
    predict(kodak[0])  # warm-up, then time the model alone on each Kodak image
    times = []
    for item in kodak:
        start = time.perf_counter()
        predict(item)
        times.append(time.perf_counter() - start)
    out["inference_ms_per_image"] = 1e3 * float(np.median(times))
    out["curve"] = curve
    return out


# ----------------------------------------------------------------------------- outputs
SET_LABELS = {"bsds_val": "BSDS500 val (in-domain, held out)", "kodak": "Kodak (other dataset)"}


def plot(results: dict, kodak: list[dict], examples: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, set_name in zip(axes, SET_LABELS, strict=True):
        for kind, runs in results["runs"].items():
            if kind == "luma_full":
                continue
            steps = [c["step"] for c in runs[0]["curve"]]
            vals = np.array([[c[f"{set_name}_chroma_psnr"] for c in r["curve"]] for r in runs])
            label = f"{LABELS[kind]} ({results['input_values_per_pixel'][kind]:.4g} values/px)"
            ax.plot(steps, vals.mean(0), marker="o", ms=3, label=label)
            if len(runs) > 1:
                ax.fill_between(steps, vals.min(0), vals.max(0), alpha=0.2)
        refs = results["references"][set_name]
        for name, style in (("training-mean chroma", ":"), ("gray (chroma = 0)", "--")):
            ax.axhline(refs[name]["chroma_psnr"], ls=style, c="gray", label=name)
        ax.set_xlabel(f"training step (batch {BATCH} x {CROP_CELLS * BLOCK} px crops)")
        ax.set_ylabel("chroma PSNR (dB)")
        ax.set_title(SET_LABELS[set_name])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Colorization from gray: WaLLoC latents vs pixels (mean and range over seeds)")
    fig.tight_layout()
    fig.savefig(RESULTS / "walloc" / "learning_image_curves.png", dpi=100)
    plt.close(fig)

    # examples: rows = Kodak images, columns = gray / latents model / pixels model / original
    by_name = {item["name"]: item for item in kodak}
    tiles = []
    for name in EXAMPLES:
        item = by_name[name]
        row = [np.repeat(item["gray"][:, :, None], 3, axis=2), examples["latents"][name], examples["pixels"][name], item["img"]]
        row = [Image.fromarray(a).resize((a.shape[1] * EXAMPLE_HEIGHT // a.shape[0], EXAMPLE_HEIGHT), Image.LANCZOS)
               for a in row]
        tiles.append(row)
    width = max(sum(t.width for t in row) + 4 * (len(row) - 1) for row in tiles)
    sheet = Image.new("RGB", (width, EXAMPLE_HEIGHT * len(tiles) + 4 * (len(tiles) - 1)), "white")
    for r, row in enumerate(tiles):
        x = 0
        for tile in row:
            sheet.paste(tile, (x, r * (EXAMPLE_HEIGHT + 4)))
            x += tile.width + 4
    sheet.save(RESULTS / "walloc" / "learning_image_examples.png", optimize=True)


# What the measured numbers mean; written after reading the committed full run
# (results/walloc/learning_image.json, learning_image_curves.png): re-read it after a rerun.
def curve_notes(results: dict) -> str:
    """What the training curves say (mean over seeds, chroma PSNR measured every few hundred steps):
    where each input peaks on BSDS val, how far it falls after, and where the models end on Kodak
    relative to predicting the training-mean chroma everywhere."""
    refs = results["references"]
    parts = []
    for kind in ("latents", "pixels"):
        runs = results["runs"][kind]
        steps = [point["step"] for point in runs[0]["curve"]]
        val = np.mean([[point["bsds_val_chroma_psnr"] for point in r["curve"]] for r in runs], axis=0)
        peak = int(np.argmax(val))
        parts.append(f"{kind} peak on BSDS val at step {steps[peak]} "
                     f"({val[peak] - refs['bsds_val']['training-mean chroma']['chroma_psnr']:+.2f} dB chroma PSNR over the "
                     f"mean-chroma predictor) and end {val[-1] - val[peak]:+.2f} dB from that peak")
    below = [kind for kind, runs in results["runs"].items()
             if np.mean([r["kodak"]["rgb_psnr"] for r in runs]) < refs["kodak"]["training-mean chroma"]["rgb_psnr"]]
    text = "Training curves (mean over seeds): " + "; ".join(parts) + ". Every row is the last step (no early stopping)."
    if below:
        text += (f" On Kodak, {', '.join(below)} end below the mean-chroma predictor: under MSE a confidently wrong "
                 "colour on a saturated object costs more than the desaturated mean.")
    return text + " PSNR is a weak colorization measure (the paper reports LPIPS, whose weights terse does not ship)."


def pooled_psnr(per_image: dict) -> float:
    """PSNR of the MSE pooled over all images (what the MSE loss optimizes), from per-image PSNRs of equal-size images."""
    return float(-10 * np.log10(np.mean([10 ** (-p / 10) for p in per_image.values()])))


def report(results: dict, steps: int, seeds: list[int]) -> str:
    feat = results["feature_ms_per_image"]
    metrics = ("rgb_psnr", "pooled_rgb_psnr", "chroma_psnr")
    for runs in results["runs"].values():
        for run in runs:
            for set_name in SET_LABELS:
                run[set_name]["pooled_rgb_psnr"] = pooled_psnr(run[set_name]["per_image_rgb_psnr"])
    for refs in results["references"].values():
        for row in refs.values():
            row["pooled_rgb_psnr"] = pooled_psnr(row["per_image_rgb_psnr"])
    lines = ["### Compressed-domain learning: image colorization (gray -> chroma, BSDS500 -> Kodak)", "",
             f"`python benchmarks/bench_walloc_colorize.py`; a small CNN "
             f"({WIDTH} channels, 4 dilated residual blocks on the H/8 grid, same network for every input except "
             f"the first conv) sees only the uint8 luma and predicts Cb/Cr at H/2; trained on the "
             f"{results['train_images']} BSDS500 train + test images (+ mirrored) with {CROP_CELLS * BLOCK} px crops, "
             f"batch {BATCH}, {steps} steps, seeds {seeds}; evaluated on the {results['val_images']} held-out BSDS500 "
             "val images and on the 24 Kodak images, colorized with the true full-resolution luma. PSNR in dB (+- sd "
             "over seeds): RGB and chroma PSNR are means of per-image PSNRs; pooled RGB PSNR is the PSNR of the MSE "
             "over all pixels of the set (the quantity the MSE loss optimizes; images of one set share a size except "
             "BSDS portrait/landscape, which have equal pixel counts); chroma PSNR over full-resolution Cb/Cr in "
             "[-0.5, 0.5] (peak 1). Times: "
             "1 torch thread, shared 2-core CPU, per 768x512 Kodak image.", "",
             "| input (channels, H/8, W/8) | values per pixel | params | BSDS val RGB PSNR | pooled | chroma PSNR "
             "| Kodak RGB PSNR | pooled | chroma PSNR | train s | model ms/image | feature ms/image |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(runs, set_name, metric):
        v = [r[set_name][metric] for r in runs]
        return f"{np.mean(v):.2f}" + (f" +- {np.std(v):.2f}" if len(v) > 1 else "")

    for kind, runs in results["runs"].items():
        lines.append(f"| {LABELS[kind]} {tuple(results['input_shape_kodak'][kind])} | "
                     f"{results['input_values_per_pixel'][kind]:.4g} | {runs[0]['parameters']:,} | "
                     + "".join(f"{cell(runs, s, m)} | " for s in SET_LABELS for m in metrics)
                     + f"{np.mean([r['train_seconds'] for r in runs]):.0f} | "
                     f"{np.mean([r['inference_ms_per_image'] for r in runs]):.1f} | {feat[kind]:.2f} |")
    refs = results["references"]
    for name in refs["kodak"]:
        val, kod = refs["bsds_val"][name], refs["kodak"][name]
        lines.append(f"| reference: {name} | | | "
                     + "".join(f"{r[m]:.2f} | " for r in (val, kod) for m in metrics)
                     + " | | |")

    lat, pix = results["runs"]["latents"], results["runs"]["pixels"]
    summary = []
    for set_name in SET_LABELS:
        def avg(runs, metric, set_name=set_name):
            return np.mean([r[set_name][metric] for r in runs])

        wins = sum(a[set_name]["per_image_rgb_psnr"][n] > b[set_name]["per_image_rgb_psnr"][n]
                   for a, b in zip(lat, pix, strict=True) for n in a[set_name]["per_image_rgb_psnr"])
        total = len(lat) * len(lat[0][set_name]["per_image_rgb_psnr"])
        ref = refs[set_name]["training-mean chroma"]
        summary.append(f"{SET_LABELS[set_name]}: latents minus pixels {avg(lat, 'rgb_psnr') - avg(pix, 'rgb_psnr'):+.2f} dB "
                       f"RGB PSNR ({avg(lat, 'pooled_rgb_psnr') - avg(pix, 'pooled_rgb_psnr'):+.2f} dB pooled), latents "
                       f"better on {wins} of {total} (image, seed) pairs; against predicting the training-mean chroma "
                       f"everywhere, latents {avg(lat, 'rgb_psnr') - ref['rgb_psnr']:+.2f} dB "
                       f"({avg(lat, 'pooled_rgb_psnr') - ref['pooled_rgb_psnr']:+.2f} pooled), pixels "
                       f"{avg(pix, 'rgb_psnr') - ref['rgb_psnr']:+.2f} dB "
                       f"({avg(pix, 'pooled_rgb_psnr') - ref['pooled_rgb_psnr']:+.2f} pooled)")
    shares = results["latent_channels_active"]["variance_share_sorted"]
    active = results["latent_channels_active"]["above_1pct"]
    lines += ["", "; ".join(summary) + ". The latents have 25% fewer input values than the pixel input."
              + " " + curve_notes(results),
              "",
              f"On BSDS gray images one latent channel holds {100 * shares[0]:.0f}% of the latent variance and "
              f"{active} of the 12 hold more than 1% each (inputs are standardized per channel, so the small ones "
              "are not ignored). Feature cost: the codec as shipped encodes the gray image replicated to RGB "
              f"({feat['latents']:.1f} ms); because the encoder is linear, summing its weights over the three colours "
              f"gives the same latents from one WPT ({feat['latents_gray_path']:.1f} ms, max abs difference "
              f"{results['latents_gray_path_max_abs_diff']:.1e}); the pixel input is an average pool "
              f"({feat['pixels']:.2f} ms). Examples: `results/walloc/learning_image_examples.png` (rows: kodim05, 14, "
              "23; columns: gray / latents model / pixels model / original, first seed)."]
    return "\n".join(lines)


def main() -> None:
    from terse.core.paths import data_path
    from terse.walloc.codec import load_codec

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-images", type=int, default=None, help="use the first N training images (smoke runs)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the REPORT section from the committed JSON")
    args = parser.parse_args()
    if args.report_only:
        import json

        results = json.loads((RESULTS / "walloc" / "learning_image.json").read_text())
        update_report_section("walloc-learning-image", report(results, results["recipe"]["steps"], results["meta"]["seed"]))
        return

    torch.set_num_threads(1)
    codec = load_codec("walloc-rgb-16x")
    start = time.perf_counter()
    bsds = sorted(data_path("images", "train", "bsds500").glob("*.jpg"))
    train = load_set([p for p in bsds if not p.name.startswith("val_")][: args.train_images], codec, flips=True)
    sets = {"bsds_val": load_set([p for p in bsds if p.name.startswith("val_")], codec, flips=False),
            "kodak": load_set(sorted(data_path("images", "kodak").glob("kodim*.png")), codec, flips=False)}
    kodak = sets["kodak"]
    print(f"features for {len(train)} training items, {len(sets['bsds_val'])} val and {len(kodak)} Kodak images "
          f"in {time.perf_counter() - start:.0f} s", flush=True)

    kinds = ("latents", "pixels", "luma_full")
    stats = {}
    for kind in kinds:
        flat = torch.cat([t[kind].flatten(1) for t in train], dim=1)  # (C, N)
        stats[kind] = (flat.mean(1)[:, None, None], flat.std(1)[:, None, None] + 1e-6)
    latent_var = torch.cat([t["latents"].flatten(1) for t in train], dim=1).var(1)
    share = (latent_var / latent_var.sum()).sort(descending=True).values
    mean_chroma = torch.cat([t["target"].flatten(1) for t in train], dim=1).mean(1)  # (2,)
    k0 = kodak[0]
    gray_fn = gray_latent_fn(codec)
    gray_path_max_diff = max(float((gray_fn(t["gray"]) - t["latents"]).abs().max()) for t in kodak)
    results = {
        "images": [t["name"] for t in kodak], "train_images": len(train) // 2, "train_items_with_mirrors": len(train),
        "val_images": len(sets["bsds_val"]),
        "input_shape_kodak": {k: list(k0[k].shape) for k in kinds},
        "input_values_per_pixel": {k: k0[k].shape[0] / BLOCK**2 for k in kinds},
        "kodak_image_pixels": int(k0["gray"].size),
        "feature_ms_per_image": feature_cost(codec, kodak),
        "latents_gray_path_max_abs_diff": gray_path_max_diff,
        "latent_channels_active": {"variance_share_sorted": [float(s) for s in share],
                                   "above_1pct": int((share > 0.01).sum())},
        "training_mean_chroma": [float(c) for c in mean_chroma],
        "recipe": {"steps": args.steps, "batch": BATCH, "crop_px": CROP_CELLS * BLOCK, "lr": LR, "optimizer": "AdamW one-cycle",
                   "width": WIDTH, "loss": "MSE on Cb/Cr at H/2"},
    }
    reference_fns = {
        "gray (chroma = 0)": lambda item: torch.zeros_like(item["target"]),
        "training-mean chroma": lambda item: mean_chroma[:, None, None].expand_as(item["target"]).clone(),
        "true chroma at H/2 (upper bound)": lambda item: item["target"],
    }
    results["references"] = {}
    for set_name, items in sets.items():
        results["references"][set_name] = {}
        for name, fn in reference_fns.items():
            q = quality(items, fn)
            results["references"][set_name][name] = {m: v for m, v in q.items() if not m.startswith("_")}
            print(f"{set_name} {name}: RGB {q['rgb_psnr']:.2f} dB, chroma {q['chroma_psnr']:.2f} dB", flush=True)

    results["runs"], examples = {}, {}
    for seed in args.seeds:  # interleave kinds so both see the same machine load
        for kind in kinds if seed == args.seeds[0] else kinds[:2]:
            run = train_eval(kind, train, sets, stats[kind], args.steps, seed)
            if seed == args.seeds[0] and kind != "luma_full":
                examples[kind] = run["_examples"]
            results["runs"].setdefault(kind, []).append({k: v for k, v in run.items() if not k.startswith("_")})
            print(f"{kind} seed {seed}: chroma PSNR BSDS val {run['bsds_val']['chroma_psnr']:.2f} dB, Kodak "
                  f"{run['kodak']['chroma_psnr']:.2f} dB, {run['train_seconds']:.0f} s, "
                  f"{run['inference_ms_per_image']:.1f} ms/image", flush=True)
    write_json(RESULTS / "walloc" / "learning_image.json", {"meta": meta(seed=list(args.seeds)), **results})
    plot(results, kodak, examples)
    update_report_section("walloc-learning-image", report(results, args.steps, list(args.seeds)))


if __name__ == "__main__":
    main()
