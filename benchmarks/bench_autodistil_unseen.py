"""The shipped SST-2 students on the rt-polarity corpus, as a new user would try them.

2,000 sentences of the rt-polarity corpus (shared/data/nltk/sentence_polarity: 1,000
positive and 1,000 negative snippets, a fixed sample), classified by each shipped student
and, with ``--teacher``, by the teacher fine-tuned on SST-2 under the same protocol (e.g.
the task teacher cached by bench_autodistil_augment.py in WORK/task-teachers). SST was
built from this corpus, so the run also counts how many are SST-2 sentences.

    python benchmarks/bench_autodistil_unseen.py --teacher runs/augment/task-teachers/<SST-2 folder>
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from common import RESULTS, meta, update_report_section, write_json  # noqa: E402

OUT = RESULTS / "autodistil"
PER_CLASS = 1000
SHIPPED = ("autodistil-sst2", "autodistil-sst2-eighth")


def sample(folder: Path, per_class: int, seed: int = 0) -> list[tuple[str, int]]:
    """-> [(sentence, 1 if positive else 0)], ``per_class`` of each, in a fixed shuffled order."""
    rng = random.Random(seed)
    out = []
    for label, name in ((0, "rt-polarity.neg"), (1, "rt-polarity.pos")):
        lines = [s.strip() for s in (folder / name).read_text(encoding="utf-8", errors="replace").splitlines()
                 if s.strip()]
        out += [(s, label) for s in rng.sample(lines, per_class)]
    rng.shuffle(out)
    return out


def in_sst2(examples: list[tuple[str, int]], glue: Path) -> dict[str, int]:
    """How many of the sentences are also in SST-2's train / dev split (compared on lower-case letters and digits)."""
    def key(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    counts = {}
    for split in ("train", "dev"):
        rows = (glue / "SST-2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
        seen = {key(row.split("\t")[0]) for row in rows}
        counts[split] = sum(key(s) in seen for s, _ in examples)
    return counts


def positive_index(config) -> int:
    """The output that means "positive": by name where the classes are named, else 1 (SST-2's label)."""
    names = {str(v).lower(): int(k) for k, v in config.id2label.items()}
    return names.get("positive", 1)


def accuracy(folder: Path, examples: list[tuple[str, int]], batch: int = 64) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                               dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    pos = positive_index(model.config)
    right = 0
    with torch.inference_mode():
        for i in range(0, len(examples), batch):
            chunk = examples[i:i + batch]
            enc = tokenizer([s for s, _ in chunk], padding=True, truncation=True, max_length=128, return_tensors="pt")
            said = (model(**enc).logits.argmax(-1) == pos).long().tolist()
            right += sum(int(p == y) for p, (_, y) in zip(said, chunk, strict=True))
    return 100.0 * right / len(examples)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in rows:
        ax.scatter(r["macs_fraction"], r["rt_polarity"], label=f"{r['model']} (rt-polarity)")
        if r["sst2_dev"] is not None:
            ax.scatter(r["macs_fraction"], r["sst2_dev"], marker="x", color="gray")
    ax.set_xlabel("MACs x teacher")
    ax.set_ylabel("accuracy % (x: SST-2 dev)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    from terse.core.paths import data_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path, help="the teacher fine-tuned on SST-2 (a Hugging Face classifier folder)")
    args = p.parse_args(argv)
    examples = sample(data_path("nltk", "sentence_polarity"), PER_CLASS)
    pretrained = Path(__file__).resolve().parents[1] / "src" / "terse" / "pretrained"
    rows = []
    candidates = [(name, pretrained / name) for name in SHIPPED]
    if args.teacher is not None:
        candidates.insert(0, ("teacher (fine-tuned on SST-2)", args.teacher))
    for name, folder in candidates:
        info = (json.loads((folder / "manifest.json").read_text())["info"]
                if (folder / "manifest.json").is_file() else {})
        if (folder / "teacher_scores.json").is_file():   # a task teacher cached by glue.task_teacher
            info["sst2_dev_accuracy"] = json.loads((folder / "teacher_scores.json").read_text())["last"]["score"]
        rows.append({"model": name, "arch": info.get("name", "L6-A12-H384-F1536"),
                     "macs_fraction": info.get("macs_fraction", 1.0), "sst2_dev": info.get("sst2_dev_accuracy"),
                     "rt_polarity": accuracy(folder, examples)})
        print(rows[-1], flush=True)
    out = {"meta": meta(seed=0), "examples": len(examples), "in_sst2": in_sst2(examples, data_path("glue")),
           "rows": rows}
    write_json(OUT / "unseen.json", out)
    plot(rows, OUT / "unseen.png")
    lines = ["### AutoDistil: the shipped SST-2 students on rt-polarity, as a new user would try them", "",
             f"`python benchmarks/bench_autodistil_unseen.py --teacher TASK_TEACHER`: {len(examples):,} rt-polarity "
             "snippets (nltk sentence_polarity, 1,000 positive + 1,000 negative, fixed sample), accuracy %. "
             "SST was built from this corpus (Pang & Lee 2005), so some snippets may be SST-2 sentences too; "
             f"of these, {out['in_sst2']['train']:,} are in SST-2's train split and {out['in_sst2']['dev']:,} in its dev "
             "split (same letters and digits). SST-2 dev: from each model's manifest "
             "(the teacher's: its score under the GLUE protocol).", "",
             "| model | arch | MACs x teacher | SST-2 dev | rt-polarity |", "|---|---|---:|---:|---:|"]
    for r in rows:
        dev = f"{r['sst2_dev']:.1f}" if r["sst2_dev"] is not None else "-"
        lines.append(f"| {r['model']} | {r['arch']} | {r['macs_fraction']:.2f} | {dev} | {r['rt_polarity']:.1f} |")
    lines += ["", "Data: `results/autodistil/unseen.json`.", "", "![unseen](autodistil/unseen.png)"]
    update_report_section("autodistil-unseen", "\n".join(lines))


if __name__ == "__main__":
    main()
