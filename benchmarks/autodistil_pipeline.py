"""The heavy part of the AutoDistil benchmark, on any device, as one resumable pipeline.

Stages (each writes into ``--work``; ``results.json`` in ``--out`` is rewritten after each):

A. distil one supernet per K=3 sub-space (base / small / tiny) and one for K=1, in
   parallel worker processes, each for ``--distill-seconds`` (the step count is planned
   from the measured speed; the linear decay ends at the last step);
B. score every subnet of each space by held-out relation loss; select students at
   1/2, 1/4, 1/8 of the teacher's MACs (lowest loss under the budget, K=3: over the three
   sub-spaces' supernets, K=1: its one supernet); sample architectures for Kendall tau;
C. standalone distillation (same teacher, data, optimiser and number of steps as the
   sub-space's supernet, one architecture, initialised from the same teacher slice) of the
   tau sample and of the selected K=3 students; extraction of every model as a plain
   ``BertModel`` folder; GLUE fine-tuning + dev evaluation of: the teacher, the K=3 and
   K=1 students, the truncated teacher (first layers, full width), and the standalone
   baselines, all with :class:`terse.autodistil.glue.FinetuneConfig`.

Workers are subprocesses of this script (``job <file>``), one thread each.

    python benchmarks/autodistil_pipeline.py run --device cuda --teacher DIR --corpus DIR_OR_NPZ \
        --glue DIR --work /tmp/ad --out OUT --distill-seconds 150 --workers 14
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

BUDGETS = {"1/2": 0.5, "1/4": 0.25, "1/8": 0.125}
TASKS = ("CoLA", "SST-2", "MRPC", "RTE", "STS-B")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------ shared loading

def load_blocks(corpus: str, tokenizer, max_tokens: int, seq_len: int):
    import numpy as np
    import torch

    from terse.autodistil.corpus import read_corpus_ids

    if corpus.endswith(".npz"):
        with np.load(corpus, allow_pickle=False) as data:
            blocks = torch.from_numpy(data["blocks"].astype("int64"))
        return blocks[: max(1, max_tokens // blocks.shape[1])]
    return read_corpus_ids(Path(corpus), tokenizer, max_tokens, seq_len)


def load_common(args):
    import torch

    from terse.autodistil.supernet import ElasticBert
    from terse.autodistil.teacher import load_teacher

    torch.set_num_threads(1)
    hf, tokenizer, shape = load_teacher(args["teacher"])
    teacher = ElasticBert.from_hf_bert(hf)
    blocks = load_blocks(args["corpus"], tokenizer, args["corpus_tokens"], args["seq_len"])
    heldout = blocks[-args["heldout_blocks"]:]
    train = blocks[: -args["heldout_blocks"]]
    return hf, tokenizer, shape, teacher, train, heldout


# ------------------------------------------------------------------------------ jobs

def job_supernet(job):
    import copy

    from terse.autodistil import DistillConfig, SearchSpace, Supernet

    _, tokenizer, _, teacher, train, _ = load_common(job["common"])
    supernet = Supernet(copy.deepcopy(teacher), SearchSpace.from_dict(job["space"]), tokenizer)
    summary = supernet.distill(teacher, train, DistillConfig.from_dict(job["distill"]), out_dir=Path(job["dir"]),
                               device=job["device"], time_limit_s=job.get("seconds"))
    supernet.save(Path(job["dir"]) / "supernet")
    return summary


def job_search(job):
    from terse.autodistil import load_supernet

    _, _, _, teacher, _, heldout = load_common(job["common"])
    supernet = load_supernet(Path(job["supernet"]))
    scores = supernet.score(teacher, blocks=heldout, batch_size=job["batch_size"], loss=job["loss"],
                            device=job["device"])
    return {"scores": [{**s.to_dict(), "loss": v} for s, v in scores.items()]}


def job_standalone(job):
    import copy

    from terse.autodistil.distill import DistillConfig, heldout_losses, train_subnets
    from terse.autodistil.extract import extract_student
    from terse.autodistil.space import SubnetConfig

    _, tokenizer, shape, teacher, train, heldout = load_common(job["common"])
    subnet = SubnetConfig.from_dict(job["subnet"])
    student = copy.deepcopy(teacher)
    cfg = DistillConfig.from_dict(job["distill"])
    summary = train_subnets(student, teacher, train, None, cfg, fixed_subnet=subnet, device=job["device"],
                            desc=f"standalone {subnet.name}")
    loss = heldout_losses(student, teacher, heldout, [subnet], batch_size=job["batch_size"], device=job["device"],
                          loss=job["loss"])[subnet]
    if job.get("extract_to"):
        extract_student(student.cpu(), subnet, Path(job["extract_to"]), tokenizer, info={"source": "standalone distillation"})
    summary.pop("loss_history", None)
    return {**summary, "heldout_loss": loss}


def job_extract(job):
    """Extract students from supernets and make the teacher / truncated-teacher folders."""
    from transformers import BertModel

    from terse.autodistil import SubnetConfig, load_supernet, load_teacher
    from terse.autodistil.extract import write_manifest

    _, tokenizer, _ = load_teacher(job["common"]["teacher"])
    for item in job["items"]:
        if item["kind"] == "supernet":
            load_supernet(Path(item["supernet"])).extract(SubnetConfig.from_dict(item["subnet"]), Path(item["dir"]),
                                                          info={"source": item["supernet"]})
        else:  # teacher (num_layers = all) or truncated teacher (first num_layers layers)
            model = BertModel.from_pretrained(job["common"]["teacher"], num_hidden_layers=item["num_layers"],
                                              local_files_only=True, use_safetensors=True)
            model.save_pretrained(item["dir"], safe_serialization=True)
            tokenizer.save_pretrained(item["dir"])
            write_manifest(Path(item["dir"]), {"source": "teacher, first layers", "num_layers": item["num_layers"]})
    return {"done": len(job["items"])}


def job_finetune(job):
    import torch

    from terse.autodistil.glue import FinetuneConfig, finetune

    torch.set_num_threads(1)
    out = Path(job["save_to"]) if job.get("save_to") else None
    return finetune(Path(job["model_dir"]), Path(job["glue"]), job["task"], FinetuneConfig.from_dict(job["protocol"]),
                    device=job["device"], out_dir=out)


JOBS = {"supernet": job_supernet, "search": job_search, "standalone": job_standalone, "extract": job_extract,
        "finetune": job_finetune}


def run_job_file(path: Path) -> None:
    job = json.loads(path.read_text())
    result = JOBS[job["kind"]](job)
    Path(job["result"]).write_text(json.dumps(result))


# ------------------------------------------------------------------------------ scheduler

def run_jobs(jobs: list[dict], work: Path, workers: int, name: str) -> list[dict | None]:
    """Run jobs in subprocesses, ``workers`` at a time; returns results (None on failure)."""
    folder = work / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    pending = []
    for i, job in enumerate(jobs):
        # named by a hash of the job: a re-run reuses finished results only for identical jobs
        digest = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:10]
        jf = folder / f"{name}-{digest}.json"
        job["result"] = str(folder / f"{name}-{digest}.result.json")
        jf.write_text(json.dumps(job))
        pending.append((i, jf, Path(job["result"])))
    results: list[dict | None] = [None] * len(jobs)
    todo = [p for p in pending if not p[2].is_file()]
    for i, _, rf in pending:
        if rf.is_file():
            results[i] = json.loads(rf.read_text())
    running: list[tuple] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TERSE_PROGRESS": "0",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    while todo or running:
        while todo and len(running) < workers:
            i, jf, rf = todo.pop(0)
            logf = open(jf.with_suffix(".log"), "w")
            proc = subprocess.Popen([sys.executable, __file__, "job", str(jf)], stdout=logf, stderr=subprocess.STDOUT,
                                    env=env)
            running.append((i, proc, rf, logf, jf))
        time.sleep(0.5)
        for entry in list(running):
            i, proc, rf, logf, jf = entry
            if proc.poll() is not None:
                logf.close()
                running.remove(entry)
                if proc.returncode == 0 and rf.is_file():
                    results[i] = json.loads(rf.read_text())
                else:
                    tail = Path(logf.name).read_text()[-1500:]
                    log(f"job {name}-{i} ({jf.name}) FAILED (rc {proc.returncode}):\n{tail}")
    return results


# ------------------------------------------------------------------------------ pipeline

def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall tau-b."""
    n, conc, disc, ties_a, ties_b = len(a), 0, 0, 0, 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                conc += 1
            else:
                disc += 1
    denom = ((conc + disc + ties_a) * (conc + disc + ties_b)) ** 0.5
    return (conc - disc) / denom if denom else 0.0


def save_demo_student(a, work: Path, out: Path, glue: dict, results: dict) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (a.save_demo and (work / "demo_student").is_dir()):
        return
    # fp16 copy: what terse ships for `terse demo` (the benchmark numbers are the fp32 model's)
    model = AutoModelForSequenceClassification.from_pretrained(work / "demo_student", dtype=torch.float16)
    model.save_pretrained(out / "demo_student", safe_serialization=True)
    AutoTokenizer.from_pretrained(work / "demo_student").save_pretrained(out / "demo_student")
    results["demo_student"] = {"model": a.save_demo, "task": "SST-2",
                               "dev": glue.get(a.save_demo, {}).get("SST-2", {}).get("last")}


def pipeline(a) -> None:
    import torch

    from terse.autodistil.glue import FinetuneConfig
    from terse.autodistil.search import Constraint, select
    from terse.autodistil.space import K3_SPACES, SubnetConfig, costs, default_spaces
    from terse.autodistil.teacher import load_teacher

    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results: dict = {"device": a.device, "argv": sys.argv[1:], "stages": {}}
    if a.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name(0)
    import transformers

    results["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                           "python": sys.version.split()[0]}

    def save():
        results_path.write_text(json.dumps(results, indent=1))

    _, _, shape = load_teacher(a.teacher)
    spaces = default_spaces(shape)
    teacher_macs = costs(shape.max_subnet, shape)["macs"]
    common = {"teacher": a.teacher, "corpus": a.corpus, "corpus_tokens": a.corpus_tokens, "seq_len": a.seq_len,
              "heldout_blocks": a.heldout_blocks}
    distill = {"batch_size": a.batch_size, "seq_len": a.seq_len, "learning_rate": a.learning_rate, "loss": a.loss,
               "steps": a.max_steps, "checkpoint_every": a.checkpoint_every, "seed": a.seed}
    results["config"] = {"common": common, "distill": distill, "spaces": {k: s.to_dict() for k, s in spaces.items()},
                         "teacher_shape": shape.to_dict(), "teacher_macs": teacher_macs}

    # ---- A: supernets
    t0 = time.perf_counter()
    names = [*K3_SPACES, "k1"]
    jobs = [{"kind": "supernet", "common": common, "space": spaces[n].to_dict(), "distill": distill,
             "dir": str(work / f"supernet-{n}"), "device": a.device, "seconds": a.distill_seconds} for n in names]
    log(f"stage A: {len(jobs)} supernets, {a.distill_seconds}s each")
    summaries = run_jobs(jobs, work, a.workers, "A")
    results["stages"]["A_supernets"] = {"seconds": time.perf_counter() - t0,
                                        "runs": {n: s for n, s in zip(names, summaries, strict=True)}}
    save()
    trained = [n for n, s in zip(names, summaries, strict=True) if s]
    steps = {n: s["steps_done"] for n, s in zip(names, summaries, strict=True) if s}
    log(f"stage A done: steps {steps}")

    # ---- B: search
    t0 = time.perf_counter()
    jobs = [{"kind": "search", "common": common, "supernet": str(work / f"supernet-{n}" / "supernet"),
             "device": a.device, "batch_size": a.eval_batch_size, "loss": a.loss} for n in trained]
    found = run_jobs(jobs, work, a.workers, "B")
    scores: dict[str, dict[SubnetConfig, float]] = {}
    for n, r in zip(trained, found, strict=True):
        if r:
            scores[n] = {SubnetConfig(**{k: row[k] for k in ("num_layers", "num_heads", "hidden_size",
                                                                "intermediate_size")}): row["loss"] for row in r["scores"]}
    selected: dict[str, dict] = {}
    for label, fraction in BUDGETS.items():
        constraint = Constraint(max_macs=int(fraction * teacher_macs))
        k3 = {s: v for n in K3_SPACES if n in scores for s, v in scores[n].items()}
        owner = {s: n for n in K3_SPACES if n in scores for s in scores[n]}
        for which, pool in (("k3", k3), ("k1", scores.get("k1", {}))):
            if pool:
                best = select(pool, shape, constraint)
                selected[f"{which}@{label}"] = {"subnet": best.to_dict(), "name": best.name, "loss": pool[best],
                                                "space": owner.get(best, "k1") if which == "k3" else "k1",
                                                **costs(best, shape)}
    rng = random.Random(a.seed)
    sample = []
    for n, count in (("base", 3), ("small", 3), ("tiny", 2)):
        if n in scores:
            sample += [(n, s) for s in rng.sample(sorted(scores[n]), count)]
    for label in BUDGETS:
        if f"k3@{label}" in selected:
            sub = SubnetConfig.from_dict(selected[f"k3@{label}"]["subnet"])
            if all(s != sub for _, s in sample):
                sample.append((selected[f"k3@{label}"]["space"], sub))
    results["stages"]["B_search"] = {
        "seconds": time.perf_counter() - t0, "selected": selected,
        "scores": {n: [{**s.to_dict(), "loss": v, **costs(s, shape)} for s, v in sc.items()] for n, sc in scores.items()},
        "tau_sample": [{"space": n, **s.to_dict()} for n, s in sample]}
    save()
    log(f"stage B done: selected {[(k, v['name']) for k, v in selected.items()]}")

    # ---- C: standalone distillation + extraction + fine-tuning
    t0 = time.perf_counter()
    models: dict[str, str] = {}
    items = [{"kind": "teacher", "num_layers": shape.num_layers, "dir": str(work / "models" / "teacher")}]
    models["teacher"] = items[0]["dir"]
    for key, sel in selected.items():
        which = key.split("@")[0]
        src = sel["space"] if which == "k3" else "k1"
        d = str(work / "models" / key.replace("/", "_").replace("@", "_"))
        items.append({"kind": "supernet", "supernet": str(work / f"supernet-{src}" / "supernet"),
                      "subnet": sel["subnet"], "dir": d})
        models[key] = d
    truncated = {}
    for label in BUDGETS:
        sel = selected.get(f"k3@{label}")
        if not sel:
            continue
        per_layer = teacher_macs / shape.num_layers
        layers = min(shape.num_layers, max(1, -(-sel["macs"] // int(per_layer))))  # fewest layers with >= MACs
        sub = SubnetConfig(layers, shape.num_heads, shape.hidden_size, shape.intermediate_size)
        truncated[label] = {"num_layers": layers, **costs(sub, shape)}
        d = str(work / "models" / f"truncated_{layers}")
        if all(it["dir"] != d for it in items):
            items.append({"kind": "teacher", "num_layers": layers, "dir": d})
        models[f"truncated@{label}"] = d
    run_jobs([{"kind": "extract", "common": common, "items": items}], work, 1, "C0")
    protocol = FinetuneConfig(epochs=a.ft_epochs, learning_rate=a.ft_lr, max_train_examples=a.ft_max_train,
                              max_dev_examples=a.ft_max_dev, batch_size=a.ft_batch_size).to_dict()
    standalone_jobs = []
    for n, sub in sample:
        key = f"standalone:{sub.name}"
        sel_label = next((lb for lb in BUDGETS if selected.get(f"k3@{lb}", {}).get("name") == sub.name), None)
        d = str(work / "models" / f"standalone_{sub.name}") if sel_label else None
        standalone_jobs.append({"kind": "standalone", "common": common, "subnet": sub.to_dict(), "space": n,
                                "distill": {**distill, "steps": max(1, steps.get(n, a.max_steps))},
                                "device": a.device, "batch_size": a.eval_batch_size, "loss": a.loss,
                                "extract_to": d, "key": key, "label": sel_label})
    ft_jobs = []

    def ft(model_key: str):
        for task in TASKS:
            save_to = None
            if a.save_demo and model_key == a.save_demo and task == "SST-2":
                save_to = str(work / "demo_student")
            ft_jobs.append({"kind": "finetune", "model_dir": models[model_key], "glue": a.glue, "task": task,
                            "protocol": protocol, "device": a.device, "model": model_key, "save_to": save_to})

    for key in models:
        ft(key)
    tasks = a.tasks.split(",")
    ft_jobs[:] = [j for j in ft_jobs if j["task"] in tasks]
    first_wave = standalone_jobs + ft_jobs
    log(f"stage C: {len(standalone_jobs)} standalone distillations + {len(ft_jobs)} fine-tunes")
    wave = run_jobs(first_wave, work, a.workers, "C1")
    standalone = {}
    for job, r in zip(standalone_jobs, wave[:len(standalone_jobs)], strict=True):
        if r:
            standalone[SubnetConfig.from_dict(job["subnet"]).name] = {**r, "space": job["space"], "label": job["label"]}
    glue: dict[str, dict] = {}
    for job, r in zip(ft_jobs, wave[len(standalone_jobs):], strict=True):
        if r:
            glue.setdefault(job["model"], {})[job["task"]] = r
    results["stages"]["C_models"] = {"truncated": truncated, "standalone": standalone, "glue": glue,
                                     "protocol": protocol, "seconds": time.perf_counter() - t0}
    try:
        save_demo_student(a, work, out, glue, results)
    except Exception as exc:  # keep going: the benchmark numbers matter more than the demo copy
        log(f"demo student not saved: {exc!r}")
    # ---- tau: supernet-inherited vs standalone held-out loss on the sample
    taus = {}
    rows = []
    for n, sub in sample:
        if sub.name in standalone:
            rows.append({"name": sub.name, "space": n, "standalone": standalone[sub.name]["heldout_loss"],
                         "k3": scores.get(n, {}).get(sub), "k1": scores.get("k1", {}).get(sub)})
    for which in ("k3", "k1"):
        pairs = [(r[which], r["standalone"]) for r in rows if r[which] is not None]
        if len(pairs) >= 3:
            taus[which] = kendall_tau([p[0] for p in pairs], [p[1] for p in pairs])
    results["tau"] = {"rows": rows, "kendall_tau": taus}
    save()
    log(f"tau {taus}")
    # second wave: fine-tune the standalone baselines of the selected students
    ft_jobs = []
    for job in standalone_jobs:
        if job["label"] and job["extract_to"] and Path(job["extract_to"], "config.json").is_file():
            models[f"standalone@{job['label']}"] = job["extract_to"]
            ft(f"standalone@{job['label']}")
    ft_jobs[:] = [j for j in ft_jobs if j["task"] in tasks]
    log(f"stage C2: {len(ft_jobs)} fine-tunes of standalone baselines")
    for job, r in zip(ft_jobs, run_jobs(ft_jobs, work, a.workers, "C2"), strict=True):
        if r:
            glue.setdefault(job["model"], {})[job["task"]] = r
    results["stages"]["C_models"]["seconds"] = time.perf_counter() - t0
    save()
    log("done")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("job")
    j.add_argument("file")
    r = sub.add_parser("run")
    r.add_argument("--device", default="cpu")
    r.add_argument("--teacher", required=True)
    r.add_argument("--corpus", required=True, help="text folder or pre-tokenized .npz (blocks)")
    r.add_argument("--glue", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--corpus-tokens", type=int, default=3_000_000)
    r.add_argument("--seq-len", type=int, default=128)
    r.add_argument("--heldout-blocks", type=int, default=256)
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--eval-batch-size", type=int, default=64)
    r.add_argument("--learning-rate", type=float, default=1e-4)
    r.add_argument("--loss", default="kl")
    r.add_argument("--max-steps", type=int, default=100_000)
    r.add_argument("--checkpoint-every", type=int, default=100_000)
    r.add_argument("--distill-seconds", type=float, default=150)
    r.add_argument("--ft-epochs", type=int, default=3)
    r.add_argument("--ft-lr", type=float, default=1e-4)
    r.add_argument("--ft-batch-size", type=int, default=32)
    r.add_argument("--ft-max-train", type=int, default=8000)
    r.add_argument("--ft-max-dev", type=int, default=0)
    r.add_argument("--save-demo", default="k3@1/8", help="model key whose SST-2 fine-tune is kept")
    r.add_argument("--tasks", default=",".join(TASKS), help="comma-separated GLUE tasks")
    r.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.cmd == "job":
        import torch

        torch.set_num_threads(1)
        run_job_file(Path(args.file))
    else:
        pipeline(args)


if __name__ == "__main__":
    main()
