"""``terse walloc ...``: WaLLoC lossy codecs for RGB images and stereo audio."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from terse.cli.io import UsageError, open_output

walloc_app = typer.Typer(help="WaLLoC wavelet learned lossy codecs (RGB images, stereo audio).", no_args_is_help=True)

SUFFIX = ".wlc"
STORAGE_HELP = ("parallel (integer-exact parallel context model, default for images) | context (wavefront context "
                "model, default for audio) | webp | png (the paper's lossless latent image)")


def _read_signal(path: str):
    """-> (modality, signal, sample_rate)."""
    from terse.walloc.signals import modality_of, read_audio, read_image

    if not Path(path).is_file():
        raise UsageError(f"{path}: no such file")
    modality = modality_of(path)
    if modality == "image":
        return modality, read_image(path), 0
    samples, rate = read_audio(path)
    return modality, samples, rate


def _codec_for(modality: str, model: str | None):
    from terse.walloc.codec import DEFAULT_MODELS, load_codec

    codec = load_codec(model or DEFAULT_MODELS[modality])
    if codec.config.modality != modality:
        raise UsageError(f"model {codec.name!r} codes {codec.config.modality}, the input is {modality}")
    return codec


def _prepare_audio(codec, samples, rate: int, name: str):
    from terse.walloc.signals import check_audio

    check_audio(samples, rate, codec.config.channels, codec.config.sample_rate, name)
    return samples


@walloc_app.command()
def encode(
    input: str = typer.Argument(..., help="Image (.png .jpg ...) or audio (.wav .flac .ogg) file."),
    output: str = typer.Option(None, "-o", "--output", help="Output .wlc file (default: INPUT.wlc)."),
    model: str = typer.Option(None, "--model", "-m", help="Shipped codec name or model folder "
                              "(default: walloc-rgb-16x for images, walloc-stereo-5x for audio)."),
    storage: str = typer.Option(None, "--storage", "-s", help=STORAGE_HELP),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary line."),
) -> None:
    """Encode an image or a stereo audio file to a .wlc file."""
    from terse.walloc.codec import STORAGE_METHODS

    if storage is not None and storage not in STORAGE_METHODS:
        raise UsageError(f"--storage must be one of {', '.join(STORAGE_METHODS)}")
    modality, signal, rate = _read_signal(input)
    codec = _codec_for(modality, model)
    storage = storage or codec.default_storage
    if modality == "audio":
        signal = _prepare_audio(codec, signal, rate, input)
    out_path = output or input + SUFFIX
    start = time.perf_counter()
    blob = codec.compress(signal, sample_rate=rate, storage=storage)
    seconds = time.perf_counter() - start
    with open_output(out_path, force) as dst:
        dst.write(blob)
    if not quiet:
        if modality == "image":
            h, w = signal.shape[:2]
            detail = f"{8 * len(blob) / (h * w):.3f} bpp, ratio {h * w * 3 / len(blob):.1f}:1 vs 24-bit RGB"
        else:
            duration = signal.shape[1] / rate
            detail = f"{8 * len(blob) / duration / 1e3:.1f} kbps, ratio {signal.size * 2 / len(blob):.1f}:1 vs 16-bit PCM"
        print(f"encoded {input} with {codec.name} ({storage}): {len(blob)} bytes, {detail}, {seconds:.2f}s", file=sys.stderr)


@walloc_app.command()
def decode(
    input: str = typer.Argument(..., help="A .wlc file."),
    output: str = typer.Option(..., "-o", "--output", help="Output file: .png (images) or .wav / .flac (audio)."),
    model: str = typer.Option(None, "--model", "-m", help="Shipped codec name or model folder (default: the one the "
                              "file names); -m walloc-rgb-16x-hq decodes a walloc-rgb-16x file with the larger decoder."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output file."),
) -> None:
    """Decode a .wlc file to an image or audio file."""
    from terse.walloc.codec import decompress
    from terse.walloc.signals import audio_bytes, encode_png

    path = Path(input)
    if not path.is_file():
        raise UsageError(f"{input}: no such file")
    suffix = Path(output).suffix.lower()
    decoded = decompress(path.read_bytes(), model)
    if decoded.modality == "image":
        if suffix != ".png":
            raise UsageError("decoded images are written as .png")
        data = encode_png(decoded.data)
    else:
        if suffix not in (".wav", ".flac"):
            raise UsageError("decoded audio is written as .wav or .flac")
        data = audio_bytes(decoded.data, decoded.sample_rate, suffix)
    with open_output(output, force) as dst:
        dst.write(data)


@walloc_app.command("eval")
def evaluate(
    inputs: list[str] = typer.Argument(..., help="Images or audio files (one modality per call)."),
    model: str = typer.Option(None, "--model", "-m", help="Shipped codec name or model folder."),
    storage: str = typer.Option(None, "--storage", "-s", help=STORAGE_HELP),
) -> None:
    """Round-trip files through a codec and print quality and rate (nothing is written)."""
    import numpy as np

    from terse.walloc.metrics import ms_ssim, psnr, snr

    rows = []
    for name in inputs:
        modality, signal, rate = _read_signal(name)
        codec = _codec_for(modality, model)
        if modality == "audio":
            signal = _prepare_audio(codec, signal, rate, name)
        blob = codec.compress(signal, sample_rate=rate, storage=storage)
        out = codec.decompress(blob).data
        if modality == "image":
            h, w = signal.shape[:2]
            small = min(h, w) < 11
            quality = (psnr(signal, out), float("nan") if small else ms_ssim(signal, out))
            rows.append((name, quality[0], quality[1], 8 * len(blob) / (h * w)))
            print(f"{name}: PSNR {quality[0]:.2f} dB  MS-SSIM {quality[1]:.4f}  {rows[-1][3]:.3f} bpp  ({codec.name})")
        else:
            duration = signal.shape[1] / rate
            rows.append((name, snr(signal, out), psnr(signal, out, peak=2.0), 8 * len(blob) / duration / 1e3))
            print(f"{name}: SNR {rows[-1][1]:.2f} dB  PSNR {rows[-1][2]:.2f} dB  {rows[-1][3]:.1f} kbps  ({codec.name})")
    if len(rows) > 1:
        means = np.nanmean(np.array([r[1:] for r in rows], dtype=np.float64), axis=0)
        print(f"mean of {len(rows)}: " + "  ".join(f"{v:.4f}" for v in means))


@walloc_app.command()
def train(
    modality: str = typer.Option(..., "--modality", help="image or audio."),
    data: str = typer.Option(None, "--data", help="Training folder (default: images/train/bsds500 or audio/music "
                             "under the data root; held-out audio clips are excluded)."),
    out: str = typer.Option(..., "--out", "-o", help="Run folder: checkpoint/, metrics.jsonl, model/ (resumes)."),
    latent_dim: int = typer.Option(None, help="Latent channels (default: 12 for images = 16x, 108 for audio = 4.74x)."),
    levels: int = typer.Option(None, help="WPT levels J (default: 3 for images, 8 for audio)."),
    decoder_width: int = typer.Option(128, help="Decoder channels Nd."),
    decoder_blocks: int = typer.Option(4, help="Residual decoder blocks (0 = linear decoder)."),
    steps: int = typer.Option(None, help="Optimizer steps (default: 2250 images, 600 audio)."),
    batch_size: int = typer.Option(None, help="Crops per step (default: 16 images, 8 audio)."),
    crop: int = typer.Option(None, help="Crop size: pixels (default 128) or samples (default 32768)."),
    learning_rate: float = typer.Option(None, help="Peak AdamW learning rate (default: 5e-4 images, 3e-4 audio)."),
    freeze_encoder: bool = typer.Option(None, "--freeze-encoder/--train-encoder",
                                        help="Keep the PCA encoder fixed (default: images train it, audio keeps it)."),
    init_spread: float = typer.Option(None, help="Initial latent spread (sets the rate; default 0.25, 0.5 for 4x)."),
    checkpoint_every: int = typer.Option(None, help="Steps between checkpoints (default: 250 images, 200 audio)."),
    max_minutes: float = typer.Option(None, help="Stop after this many minutes (at a checkpoint); rerun to resume."),
    closed_form: bool = typer.Option(False, "--closed-form", help="No gradient training: the linear PCA codec "
                                     "(encoder + inverse, fitted context model) -> OUT/model. How walloc-stereo-5x was made."),
    name: str = typer.Option(None, help="Model name stored in files (default: the out folder name)."),
) -> None:
    """Train a WaLLoC codec on CPU (resumes from OUT/checkpoint)."""
    from terse.core.paths import data_path
    from terse.walloc.model import WallocConfig
    from terse.walloc.training import WallocTrainConfig, train_walloc

    if modality not in ("image", "audio"):
        raise UsageError("--modality must be image or audio")
    image = modality == "image"
    latent_dim = latent_dim or (12 if image else 108)
    folder = Path(data) if data else data_path("images", "train", "bsds500") if image else data_path("audio", "music")
    model_config = WallocConfig(
        modality=modality, channels=3 if image else 2, levels=levels or (3 if image else 8), latent_dim=latent_dim,
        decoder_width=decoder_width, decoder_blocks=decoder_blocks, sample_rate=0 if image else 44100)
    spread = init_spread if init_spread is not None else (0.5 if image and latent_dim >= 48 else 0.25)
    def pick(value, for_images, for_audio):
        return value if value is not None else (for_images if image else for_audio)

    train_config = WallocTrainConfig(
        steps=pick(steps, 2250, 600), batch_size=pick(batch_size, 16, 8), crop=pick(crop, 128, 2**15),
        learning_rate=pick(learning_rate, 5e-4, 3e-4), warmup_steps=pick(None, 100, 50),
        checkpoint_every=pick(checkpoint_every, 250, 200), init_spread=spread,
        freeze_encoder=pick(freeze_encoder, False, True))
    if closed_form:
        from terse.walloc.codec import save_codec
        from terse.walloc.training import linear_codec

        codec = linear_codec(model_config, train_config, folder)
        model_id = save_codec(codec.net, codec.tables, Path(out) / "model", info=codec.info, name=name or Path(out).name,
                              half=False)
        print(f"closed-form linear codec {model_id} in {out}/model")
        return
    state = train_walloc(model_config, train_config, folder, Path(out), max_minutes=max_minutes,
                         name=name or Path(out).name)
    last = state["history"][-1] if state["history"] else {}
    psnr = last.get("psnr", float("nan"))
    print(f"step {state['step']}/{train_config.steps}: validation PSNR {psnr:.2f} dB; model in {out}/model")


@walloc_app.command("fit-context")
def fit_context(
    model: str = typer.Argument(..., help="Shipped image codec name or model folder."),
    data: str = typer.Option(None, "--data", help="Training images (default: images/train/bsds500 under the data "
                             "root; never the evaluation images)."),
    steps: int = typer.Option(None, help="Optimizer steps (default 8000)."),
    count: int = typer.Option(500, help="Training images to fit on (whole images, spread over the folder)."),
    positions: int = typer.Option(None, help="Latent positions sampled for the network's training set (default 1,000,000)."),
    seed: int = typer.Option(0, help="Seed of the sample and of the network's initialisation."),
    source: str = typer.Option(None, "--from", help="Instead of fitting, give MODEL the parallel tables of this codec "
                               "(one with the same encoder, e.g. a derived decoder): its current and earlier sets."),
) -> None:
    """Fit the parallel context model of an image codec (writes MODEL/parallel; tables already
    there move to MODEL/parallel-<id>, so the files they coded still decode)."""
    from terse.core.paths import data_path
    from terse.walloc.codec import load_codec
    from terse.walloc.derive import carry_parallel_tables
    from terse.walloc.training import fit_parallel_tables

    if source is not None:
        context_id = carry_parallel_tables(load_codec(source), load_codec(model))
        if context_id is None:
            raise typer.BadParameter(f"{source} has no parallel context tables", param_hint="--from")
        print(f"parallel context tables {context_id} for {model} (from {source})")
        return
    folder = Path(data) if data else data_path("images", "train", "bsds500")
    context_id = fit_parallel_tables(model, folder, steps=steps, count=count, positions=positions, seed=seed,
                                     log=lambda m: print(m, file=sys.stderr))
    print(f"parallel context tables {context_id} for {model}")


@walloc_app.command("finetune-decoder")
def finetune_decoder(
    model: str = typer.Argument(..., help="Image codec: shipped name or model folder (never modified)."),
    out: str = typer.Option(..., "--out", "-o", help="Run folder: checkpoint/, metrics.jsonl, model/ (resumes)."),
    data: str = typer.Option(None, "--data", help="Training images (default: images/train/bsds500 under the data root)."),
    steps: int = typer.Option(22000, help="Optimizer steps."),
    learning_rate: float = typer.Option(3e-4, help="Peak AdamW learning rate (cosine decay to 5%)."),
    batch_size: int = typer.Option(16, help="Crops per step."),
    crop: int = typer.Option(128, help="Crop size in pixels."),
    max_minutes: float = typer.Option(None, help="Stop after this many minutes (at a checkpoint); rerun to resume."),
    decoder_width: int = typer.Option(0, help="Train a new decoder of this width instead (0: the source's)."),
    decoder_blocks: int = typer.Option(0, help="Residual blocks of the new decoder (with --decoder-width)."),
    teacher_weight: float = typer.Option(0.0, help="Weight of the MSE to the source codec's reconstruction."),
    rounded_latents: bool = typer.Option(False, help="Train on the rounded latents files hold (not noisy ones)."),
    latent_step: float = typer.Option(0.0, help="A coarser quantization step for the latents (a lower rate, every "
                                      "channel kept; context models fitted afresh). 0: the source's step."),
    seed: int = typer.Option(1, help="Crop seed."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing OUT/model."),
) -> None:
    """Train an image codec's decoder further, or distil a new smaller one from it; encoder
    frozen (latents unchanged, the new codec reads the source's files; with --latent-step the
    latents are quantized coarser and the new codec has its own files)."""
    from terse.core.paths import data_path
    from terse.walloc.derive import DecoderFinetuneConfig
    from terse.walloc.derive import finetune_decoder as run

    config = DecoderFinetuneConfig(steps=steps, learning_rate=learning_rate, batch_size=batch_size, crop=crop,
                                   decoder_width=decoder_width, decoder_blocks=decoder_blocks,
                                   teacher_weight=teacher_weight, rounded_latents=rounded_latents,
                                   latent_step=latent_step, seed=seed)
    folder = Path(data) if data else data_path("images", "train", "bsds500")
    state = run(model, folder, Path(out), config, max_minutes=max_minutes, overwrite=force)
    first, last = state["history"][0], state["history"][-1]
    print(f"step {state['step']}/{steps}: monitor PSNR {first['psnr']:.2f} -> {last['psnr']:.2f} dB; "
          f"codec {state['model_id']} in {out}/model")


@walloc_app.command("refit-entropy")
def refit_entropy(
    model: str = typer.Argument(..., help="Image codec: shipped name or model folder (never modified)."),
    out: str = typer.Option(..., "--out", "-o", help="Folder of the new codec."),
    data: str = typer.Option(None, "--data", help="Training images (default: images/train/bsds500 under the data root)."),
    steps: int = typer.Option(None, help="Fit steps (default 3000)."),
    count: int = typer.Option(96, help="Whole training images to fit on."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing OUT."),
) -> None:
    """Refit an image codec's MLP entropy tables into a new codec (network weights unchanged)."""
    from terse.core.paths import data_path
    from terse.walloc.derive import refit_entropy_tables

    folder = Path(data) if data else data_path("images", "train", "bsds500")
    new_id = refit_entropy_tables(model, folder, Path(out), steps=steps, count=count, overwrite=force)
    print(f"codec {new_id} in {out} (entropy tables refitted on {count} images)")
