"""Task distillation with augmented inputs: does it stop small students collapsing on STS-B?

Students made without a supernet (so anyone can rerun this in about an hour of 2 CPU
cores): the teacher truncated to its first layers, and slices of the teacher at the
shapes the CPU search picked (undistilled: a lower bound for distilled students of the
same shape). Each is fine-tuned under the GLUE protocol of bench_autodistil_glue.py with
task distillation (``+kd``), again with 20,000 teacher-labelled inputs made from the
task's training sentences (``+kd+aug``, :mod:`terse.autodistil.augment`), and with the
relation loss to the task teacher on every batch too (``+kd+aug+rel``).
Jobs run in ``--workers`` processes of one thread; every finished job is kept (in ``--work``
and in results/autodistil/augment.json), so a rerun, even on a fresh machine, continues.

    python benchmarks/bench_autodistil_augment.py --work runs/augment --tasks STS-B,MRPC,RTE
    python benchmarks/bench_autodistil_augment.py --work runs/augment --variants +kd+aug+rel --seeds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

OUT = RESULTS / "autodistil"
# (key, subnet, how it is made): the CPU search's 1/4 and 1/8 shapes and the truncated teacher at 1/4.
MODELS = (("truncated@1/4", "L2-A12-H384-F1536", "teacher, first 2 layers"),
          ("slice@1/4", "L4-A8-H256-F640", "teacher sliced to the searched 1/4 shape, undistilled"),
          ("slice@1/8", "L3-A6-H192-F672", "teacher sliced to the searched 1/8 shape, undistilled"),
          # --distilled DIR: DIR/<subnet>/supernet from `terse autodistil train-supernet --subnet <subnet>`
          ("distilled@1/4", "L4-A8-H256-F640", "the 1/4 slice distilled task-agnostically on text/train"),
          ("distilled@1/8", "L3-A6-H192-F672", "the 1/8 slice distilled task-agnostically on text/train"),
          # the same command again on another machine (the first run's weights were lost with its machine)
          ("distilled-2@1/4", "L4-A8-H256-F640", "the 1/4 slice distilled task-agnostically on text/train, a second run"),
          # --distilled DIR for a run continued from distilled-2's weights (train-supernet --init-from, --seed 1)
          ("distilled-3@1/4", "L4-A8-H256-F640", "distilled-2 distilled on for a second run from its weights"))


def is_distilled(key: str) -> bool:
    return key.startswith("distilled")  # distilled@, distilled-2@, distilled-3@


AUGMENT = 20000
RELATION_WEIGHT = 1.0
# row suffix -> the FinetuneConfig settings of that variant (every one distils from the task teacher)
VARIANTS = {"+kd": {}, "+kd+aug": {"augment_examples": AUGMENT},
            "+kd+aug+rel": {"augment_examples": AUGMENT, "relation_weight": RELATION_WEIGHT},
            # SST-2 only (the other tasks train on their whole set): real sentences instead of made ones
            "+kd+transfer+rel": {"transfer_examples": AUGMENT, "relation_weight": RELATION_WEIGHT},
            # the protocol's one departure: a 3x learning rate, for small students still climbing at epoch 3
            "+kd+aug+rel+lr3e-4": {"augment_examples": AUGMENT, "relation_weight": RELATION_WEIGHT,
                                   "learning_rate": 3e-4}}
GLUE_ORDER = ("CoLA", "SST-2", "MRPC", "RTE", "STS-B")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def glue_dir() -> Path:
    from terse.core.paths import data_path

    return data_path("glue")


def training_seconds(curve: list[dict]) -> float:
    """Seconds a held-out curve's run spent training, pauses left out. Runs before the trainer
    recorded ``active_seconds`` are estimated: a held-out interval over 3x the median interval
    per step (the process was stopped) counts at the median."""
    if "active_seconds" in curve[-1]:
        return curve[-1]["active_seconds"]
    steps = np.diff([p["step"] for p in curve])
    spans = np.diff([p["seconds"] for p in curve])
    if not len(steps):
        return curve[-1]["seconds"]
    usual = float(np.median(spans / steps))
    return curve[0]["seconds"] + float(np.where(spans > 3 * usual * steps, usual * steps, spans).sum())


def distillation_run(folder: Path) -> dict:
    """What a `train-supernet --subnet --heldout-every N` run spent and reached, from its
    held-out curve ({} without one); a run continued with --init-from counts the runs before
    it too (steps and tokens from its supernet's info, seconds and the held-out start from
    their curves)."""
    path = folder / "heldout.json"
    if not path.is_file():
        return {}
    curve = json.loads(path.read_text())
    first, last = curve[0], curve[-1]
    manifest = folder / "supernet" / "manifest.json"
    earlier = json.loads(manifest.read_text())["info"].get("earlier_runs", []) if manifest.is_file() else []
    paths = [Path(r["folder"]).parent / "heldout.json" for r in earlier]
    curves = [json.loads(c.read_text()) if c.is_file() else None for c in paths]
    steps = last["step"] + sum(r["steps_done"] for r in earlier)
    tokens = last["tokens"] + sum(r["tokens"] for r in earlier)
    wall = last["seconds"] + sum(r["seconds"] for r in earlier)
    # an earlier run whose curve is gone counts its wall seconds
    seconds = training_seconds(curve) + sum(training_seconds(c) if c else r["seconds"]
                                            for r, c in zip(earlier, curves, strict=True))
    if curves and curves[0]:   # the first run's own curve holds where the distillation started
        first = curves[0][0]
    return {"steps": steps, "tokens": tokens, "hours": round(seconds / 3600, 2), "wall_hours": round(wall / 3600, 2),
            "tokens_per_s": round(tokens / seconds), "runs": 1 + len(earlier),
            # one subnet, so one held-out loss per point
            "heldout_loss_start": next(iter(first["heldout"].values())),
            "heldout_loss": next(iter(last["heldout"].values()))}


def describe_distillation(models: dict) -> str:
    return "".join(f"; {key}: {d['steps']:,} steps, {d['tokens'] / 1e6:.1f}M tokens, {d['hours']:.2f} h "
                   + (f"in {d['runs']} runs " if d.get("runs", 1) > 1 else "") +
                   (f"({d['wall_hours']:.2f} h wall with pauses) " if d.get("wall_hours", 0) > 1.1 * d["hours"] else "") +
                   f"({d['tokens_per_s']:,} tokens/s), held-out loss {d['heldout_loss_start']:.3f} -> "
                   f"{d['heldout_loss']:.3f}" for key, m in models.items() if (d := m.get("distillation")))


def make_models(work: Path, keys: list[str], distilled: Path | None = None) -> dict:
    """-> {key: {"dir", "subnet", "kind", "macs_fraction"}} for the teacher and ``keys``, written
    once into work/models; the distilled@ students from ``distilled`` (their runs' folder)."""
    from terse.autodistil import SubnetConfig, load_supernet, load_teacher
    from terse.autodistil.api import Supernet
    from terse.autodistil.space import count_macs
    from terse.autodistil.supernet import ElasticBert
    from terse.autodistil.teacher import default_teacher_dir

    hf, tokenizer, shape = load_teacher()
    whole = Supernet(ElasticBert.from_hf_bert(hf), None, tokenizer)   # slicing the teacher itself
    models = {"teacher": {"dir": str(default_teacher_dir()), "subnet": shape.max_subnet.name, "kind": "teacher",
                          "macs_fraction": 1.0}}
    for key, name, kind in MODELS:
        if key not in keys:
            continue
        folder = work / "models" / key.replace("/", "_")
        run = distilled / name if is_distilled(key) else None
        extra = {"distillation": distillation_run(run)} if run else {}
        if not (folder / "config.json").is_file():
            (load_supernet(run / "supernet") if run else whole).extract(name, folder)
        models[key] = {"dir": str(folder), "subnet": name, "kind": kind,
                       "macs_fraction": count_macs(SubnetConfig.parse(name)) / count_macs(shape.max_subnet), **extra}
    return models


def run_task_teacher(task: str, work: str) -> dict:
    import torch

    from terse.autodistil.glue import FinetuneConfig, task_teacher
    from terse.autodistil.teacher import default_teacher_dir

    torch.set_num_threads(1)
    return {"task": task, "dir": str(task_teacher(default_teacher_dir(), glue_dir(), task, FinetuneConfig(),
                                                   Path(work) / "task-teachers"))}


def run_job(row: str, model_dir: str, task: str, seed: int, teacher_dir: str, settings: dict, out: str) -> dict:
    """One fine-tuning job; SST-2 students are kept (beside ``out``) for --ship."""
    import torch

    from terse.autodistil.glue import FinetuneConfig, finetune

    torch.set_num_threads(1)
    keep = Path(out).with_suffix("") if task == "SST-2" else None
    result = finetune(Path(model_dir), glue_dir(), task, FinetuneConfig(seed=seed, **settings),
                      teacher_dir=Path(teacher_dir), out_dir=keep)
    write_json(Path(out), {**result, "row": row, "seed": seed})
    return result


def job_name(row: str, task: str, seed: int) -> str:
    return f"{row.replace('/', '_')}-{task}-s{seed}"


def run_jobs(models: dict, students: list[str], work: Path, tasks: list[str], seeds: list[int], workers: int,
             variants: list[str], done: dict) -> dict:
    """Run the jobs not yet in ``done`` ({job name: {"row", "task", "seed", "score"}}: the
    last run's JSON, plus any job JSON in ``work/jobs``) and return ``done`` with them added;
    the teacher row = the task teachers (seed 0)."""
    done = dict(done)
    for path in sorted((work / "jobs").glob("*.json")):
        r = json.loads(path.read_text())
        done[path.stem] = {"row": r["row"], "task": r["task"], "seed": r["seed"], "score": r["last"]["score"],
                           "seconds": round(r["seconds"])}
    with ProcessPoolExecutor(workers) as pool:
        teachers = {}
        for fut in as_completed([pool.submit(run_task_teacher, t, str(work)) for t in tasks]):
            r = fut.result()
            teachers[r["task"]] = r["dir"]
            done[job_name("teacher", r["task"], 0)] = {
                "row": "teacher", "task": r["task"], "seed": 0,
                "score": json.loads((Path(r["dir"]) / "teacher_scores.json").read_text())["last"]["score"]}
        futures = {}
        for seed in seeds:
            for key in students:
                for suffix in variants:
                    for task in tasks:
                        name = job_name(key + suffix, task, seed)
                        if name not in done:
                            job = pool.submit(run_job, key + suffix, models[key]["dir"], task, seed, teachers[task],
                                              VARIANTS[suffix], str(work / "jobs" / f"{name}.json"))
                            futures[job] = (key + suffix, task, seed)
        log(f"{len(futures)} fine-tuning jobs on {workers} workers")
        for fut in as_completed(futures):
            row, task, seed = futures[fut]
            r = fut.result()
            done[job_name(row, task, seed)] = {"row": row, "task": task, "seed": seed, "score": r["last"]["score"],
                                               "seconds": round(r["seconds"])}
            log(f"{row} {task} seed {seed}: {r['last']['score']:.1f} ({r['seconds']:.0f}s)")
    return done


def table_rows(done: dict) -> dict:
    """{job name: record} -> {row: {task: [score of each seed, by seed]}}, rows and tasks in table order."""
    order = ["teacher"] + [key + suffix for key, _, _ in MODELS for suffix in VARIANTS]
    rows: dict[str, dict[str, list[float]]] = {}
    for row in order:
        for task in GLUE_ORDER:
            scores = [r["score"] for r in sorted(done.values(), key=lambda r: r["seed"])
                      if r["row"] == row and r["task"] == task]
            if scores:
                rows.setdefault(row, {})[task] = scores
    return rows


def report(out: dict) -> str:
    rows, models = out["rows"], out["models"]
    tasks = [t for t in GLUE_ORDER if any(t in per_task for per_task in rows.values())]

    def cell(values):
        mean = sum(values) / len(values)
        if len(values) == 1:
            return f"{mean:.1f}"
        spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        return f"{mean:.1f} ± {spread:.1f}"

    lines = [
        "## AutoDistil: task distillation with augmented inputs (issue 14)", "",
        f"`python benchmarks/bench_autodistil_augment.py --work WORK --tasks TASKS --models STUDENTS` (each run adds "
        f"its jobs to WORK; the table shows all of them) "
        f"on {out['meta']['machine']['cpu']} (2 cores). Protocol of the GLUE section above (3 epochs, lr 1e-4, "
        "batch 32, GLUE dev, last epoch); every row distils from the teacher fine-tuned on the task (`+kd`). "
        f"`+aug`: also {AUGMENT:,} inputs made from the task's training sentences (neighbour pairs by the "
        "teacher's embedding, perturbed copies, random pairs; single-sentence tasks: perturbed sentences and "
        "splices), labelled by the task teacher only. `+rel`: plus the MiniLMv2 relation loss (last layer's "
        f"Q-Q, K-K, V-V relations, KL, weight {RELATION_WEIGHT:g}) to the task teacher on every batch. "
        "The students are the truncated teacher, undistilled "
        "slices of the teacher at the CPU search's shapes (`slice@`), and the same slices first distilled "
        "task-agnostically from the teacher on text/train with `terse autodistil train-supernet --subnet S` "
        "(`distilled@`, MiniLMv2 relation loss, 1 thread" + describe_distillation(models) + ").", "",
        "| row | arch | MACs x teacher | seeds | " + " | ".join(tasks) + " | average of these |",
        "|---|---|---|---|" + "---|" * (len(tasks) + 1)]
    for row, per_task in rows.items():
        key = row.split("+")[0]
        seeds = max(len(v) for v in per_task.values())
        lines.append(f"| {row} | {models[key]['subnet']} | {models[key]['macs_fraction']:.2f} | {seeds} | "
                     + " | ".join(cell(per_task[t]) if t in per_task else "-" for t in tasks) + " | "
                     + (f"{sum(sum(per_task[t]) / len(per_task[t]) for t in tasks) / len(tasks):.1f}"
                        if all(t in per_task for t in tasks) else "-") + " |")
    lines += ["", "seeds: the most of any cell (a cell with ± has several, the others seed 0). "
              "STS-B: mean of Pearson and Spearman; MRPC: mean of F1 and accuracy; CoLA: Matthews; "
              "others: accuracy. Data: `results/autodistil/augment.json`."]
    return "\n".join(lines)


# budget -> (shipped folder, largest MACs fraction it takes)
SHIPPED = {"1/4": ("autodistil-sst2", 0.25), "1/8": ("autodistil-sst2-eighth", 0.125)}


def ship(done: dict, models: dict, work: Path) -> list[str]:
    """Per budget, package the best seed-0 SST-2 student within it (kept in ``work/jobs``) as
    the shipped student of that budget, when it beats the one shipped."""
    import shutil

    from terse.autodistil.shipped import package_student

    pretrained = Path(__file__).resolve().parents[1] / "src" / "terse" / "pretrained"
    notes = []
    for budget, (folder, most) in SHIPPED.items():
        target = pretrained / folder
        manifest = target / "manifest.json"
        shipped = json.loads(manifest.read_text())["info"]["sst2_dev_accuracy"] if manifest.is_file() else -1.0
        kept = [name for name, r in done.items()
                if r["task"] == "SST-2" and r["seed"] == 0 and r["row"].split("+")[0] in models
                and r["row"] != "teacher" and models[r["row"].split("+")[0]]["macs_fraction"] <= most
                and (work / "jobs" / name / "config.json").is_file()]
        best = max(kept, key=lambda name: done[name]["score"], default=None)
        if best is None or done[best]["score"] <= shipped:
            log(f"{folder} kept ({shipped:.2f}): no kept SST-2 student within {budget} beats it")
            continue
        r = done[best]
        key, variant = r["row"].split("+", 1)
        m = models[key]
        info = {"source": f"{r['row']}: {m['kind']} ({m['subnet']}), fine-tuned on SST-2 with task distillation"
                          + (f" + {AUGMENT:,} teacher-labelled augmented inputs" if "+aug" in r["row"] else "")
                          + (f" + {AUGMENT:,} teacher-labelled SST-2 training sentences outside the subsample"
                             if "+transfer" in r["row"] else "")
                          + (" + the relation loss to the task teacher" if "+rel" in r["row"] else "")
                          + " (seed 0, last epoch; fp32 before the fp16 copy)",
                "sst2_dev_accuracy": round(r["score"], 2), "macs_fraction": round(m["macs_fraction"], 3),
                "reproduce": "python benchmarks/bench_autodistil_augment.py --work WORK "
                             + ("--distilled DISTILLED " if is_distilled(key) else "")
                             + f"--models {key} --tasks SST-2 --seeds 0, --variants +{variant} --ship"}
        staging = pretrained / f".{folder}.new"
        shutil.rmtree(staging, ignore_errors=True)
        package_student(work / "jobs" / best, staging, ("negative", "positive"), info)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        notes.append(f"{folder}: {r['row']} SST-2 {r['score']:.2f} (was {shipped:.2f})")
        log(f"shipped {notes[-1]}")
    return notes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--tasks", default="STS-B")
    p.add_argument("--seeds", default="1", help="N = seeds 0..N-1, or a list of seeds such as 1,2 or 2,")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variants", default="+kd,+kd+aug", help=f"comma-separated, of {list(VARIANTS)}")
    p.add_argument("--models", default=",".join(m[0] for m in MODELS), help="students (comma-separated)")
    p.add_argument("--distilled", type=Path, default=None,
                   help="folder of `train-supernet --subnet S --out DIR/S` runs, for the distilled@ students")
    p.add_argument("--ship", action="store_true",
                   help="package the best seed-0 SST-2 student per budget (1/4, 1/8) where it beats the shipped one")
    args = p.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.work.mkdir(parents=True, exist_ok=True)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = set(keys) - {m[0] for m in MODELS}
    if unknown:
        p.error(f"unknown models {sorted(unknown)}; choose from {[m[0] for m in MODELS]}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if set(variants) - set(VARIANTS):
        p.error(f"unknown variants {sorted(set(variants) - set(VARIANTS))}; choose from {list(VARIANTS)}")
    for key, name, _ in MODELS:
        wanted = key in keys and is_distilled(key)
        if wanted and not (args.distilled and (args.distilled / name / "supernet").is_dir()):
            p.error(f"{key} needs --distilled DIR holding DIR/{name}/supernet (train-supernet --subnet {name})")
    last = json.loads((OUT / "augment.json").read_text()) if (OUT / "augment.json").is_file() else {}
    # the last run's rows stay in the table, so keep the models they name
    models = {**last.get("models", {}), **make_models(args.work, keys, args.distilled)}
    done = last.get("jobs", {})
    try:
        seeds = sorted({int(x) for x in args.seeds.split(",") if x}) if "," in args.seeds else list(range(int(args.seeds)))
    except ValueError:
        p.error(f"--seeds takes a count or a comma-separated list of seeds, not {args.seeds!r}")
    done = run_jobs(models, keys, args.work, tasks, seeds, args.workers, variants, done)
    out = {"meta": meta(), "tasks": tasks, "students": keys, "seeds": seeds, "variants": variants,
           "settings": VARIANTS, "models": models,
           "rows": table_rows(done), "jobs": done}
    write_json(OUT / "augment.json", out)
    update_report_section("autodistil-augment", report(out))
    log(report(out))
    if args.ship:
        ship(done, models, args.work)


if __name__ == "__main__":
    main()
