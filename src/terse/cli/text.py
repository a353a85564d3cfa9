"""``terse text ...``: the neural text compressor and M1 training."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from terse.cli.io import UsageError, open_input, open_output

text_app = typer.Typer(help="Neural text compression (M1 byte LM + arithmetic coding).", no_args_is_help=True)

SUFFIX = ".trs"


def _default_output(input_path: str, compressing: bool) -> str:
    if input_path == "-":
        return "-"
    if compressing:
        return input_path + SUFFIX
    if input_path.endswith(SUFFIX) and len(input_path) > len(SUFFIX):
        return input_path[: -len(SUFFIX)]
    raise UsageError(f"{input_path} does not end in {SUFFIX}; name the output with -o")


def _report(label: str, n_in: int, n_out: int, seconds: float, original: int) -> None:
    """One summary line on stderr; rates are per byte of the original (uncompressed) data."""
    import sys

    rate = original / 1e3 / seconds if seconds > 0 else float("inf")
    packed = n_out if label == "compressed" else n_in
    bits = f"{8 * packed / original:.3f} bits/byte" if original else "empty input"
    print(f"{label}: {n_in} -> {n_out} bytes ({bits}) in {seconds:.1f}s ({rate:.1f} KB/s)", file=sys.stderr)


@text_app.command()
def compress(
    input: str = typer.Argument(..., help="File to compress, or - for stdin."),
    output: str = typer.Option(None, "-o", "--output", help="Output file (default: INPUT.trs; - for stdout)."),
    level: int = typer.Option(3, "--level", "-l", help="0 static M1 | 1 context mixing only (fastest) | "
                              "2 m1-small + mixing | 3 m1-default + mixing (best). See README for speed/ratio."),
    model: str = typer.Option(None, "--model", "-m", help="Override the level's model: shipped M1 name, model "
                              "folder, or 'none'."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output file."),
    compute: str = typer.Option("bf16", help="bf16 (fast) or fp32 (slower, more portable across CPU types)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary line."),
) -> None:
    """Compress any file losslessly with the neural compressor."""
    from terse.textcomp.compressor import LEVELS, NO_MODEL, compress_stream, resolve_level

    if compute not in ("bf16", "fp32"):
        raise UsageError("--compute must be bf16 or fp32")
    if level not in LEVELS:
        raise UsageError(f"--level must be one of {sorted(LEVELS)}")
    lm, params = resolve_level(level, model, None)  # before any output exists: bad models fail early
    params = params.replace(compute=compute)
    out_path = output or _default_output(input, compressing=True)
    start = time.perf_counter()
    with open_input(input) as src, open_output(out_path, force) as dst, _bar("compress") as bar:
        n_in = compress_stream(src, dst, lm or NO_MODEL, params, on_bytes=bar.update)
        n_out = dst.tell() if out_path != "-" else 0
    if not quiet and out_path != "-":
        _report("compressed", n_in, n_out, time.perf_counter() - start, n_in)


@text_app.command()
def decompress(
    input: str = typer.Argument(..., help="A .trs file, or - for stdin."),
    output: str = typer.Option(None, "-o", "--output", help="Output file (default: INPUT without .trs; - for stdout)."),
    model: str = typer.Option(None, "--model", "-m", help="Model folder, if not the shipped model named in the file."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary line."),
) -> None:
    """Decompress a .trs file back to the exact original bytes."""
    from terse.textcomp.compressor import decompress_stream

    out_path = output or _default_output(input, compressing=False)
    start = time.perf_counter()
    with open_input(input) as src, open_output(out_path, force) as dst, _bar("decompress") as bar:
        n_out = decompress_stream(src, dst, model, on_bytes=bar.update)
    if not quiet and out_path != "-":
        packed = Path(input).stat().st_size if input != "-" else 0
        _report("decompressed", packed, n_out, time.perf_counter() - start, n_out)


def _bar(desc: str):
    from terse.core.progress import progress

    return progress(desc=desc, unit="B", unit_scale=True)


@text_app.command("train-m1")
def train_m1_command(
    data: Path = typer.Option(..., "--data", help="Text folder with train/ and valid/ (e.g. ../shared/data/text)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoint/, metrics.jsonl and the exported model/."),
    d_model: int = typer.Option(256, help="Residual width."),
    n_layers: int = typer.Option(4, help="Transformer blocks."),
    n_heads: int = typer.Option(4, help="Query heads."),
    n_kv_heads: int = typer.Option(1, help="Key/value heads (1 = multi-query)."),
    window: int = typer.Option(192, help="Attention window in bytes."),
    seq_len: int = typer.Option(384, help="Training sequence length."),
    batch_size: int = typer.Option(40, help="Sequences per step."),
    max_steps: int = typer.Option(4000, help="Optimizer steps (can be raised on resume before decay starts)."),
    learning_rate: float = typer.Option(2e-3, help="Peak learning rate."),
    seed: int = typer.Option(0, help="Seed (batches depend only on seed and step)."),
    mixed_precision: str = typer.Option("bf16", help="bf16 or no."),
) -> None:
    """Train an M1 byte LM (resumes from OUT/checkpoint; runs under `accelerate launch` too)."""
    import json

    from terse.core.errors import ConfigError
    from terse.nn.gpt import GPTConfig
    from terse.nn.train_lm import TrainConfig
    from terse.textcomp.training import train_m1

    try:
        model_config = GPTConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                                 window=window)
        train_config = TrainConfig(seq_len=seq_len, batch_size=batch_size, max_steps=max_steps,
                                   learning_rate=learning_rate, seed=seed, mixed_precision=mixed_precision)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    state = train_m1(data, out, model_config, train_config)
    last = state["history"][-1] if state["history"] else {}
    print(json.dumps({"steps": state["step"], "tokens_seen": state["tokens_seen"],
                      "valid_bits_per_byte": last.get("valid_bits"), "model": str(out / "model")}))
