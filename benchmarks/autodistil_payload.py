"""Pack what the GPU run of ``autodistil_pipeline.py`` needs into one folder that fits the
device transfer limit (the device machine has no ``../shared`` and no PyPI):

* the teacher: fp16 weights, the word-embedding matrix as int8 with one fp32 scale per
  row (the only way the 22.7M-parameter teacher fits beside the repository); ``unpack``
  rebuilds a Hugging Face folder (fp32) from it. This quantised teacher is *the* teacher
  of the GPU run (supernet init, distillation target, reference row);
* the distillation corpus pre-tokenised into 128-token blocks (uint16, compressed npz);
* the GLUE TSVs of the five tasks, with the training sets of CoLA / SST-2 already cut to the
  protocol's seeded subsample (so the device sees exactly the rows the CPU protocol would).

    python benchmarks/autodistil_payload.py pack --out .gpu5
    python benchmarks/autodistil_payload.py unpack --payload .gpu5 --teacher-out /tmp/teacher
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def pack(out: Path, corpus_tokens: int, seq_len: int, max_train: int) -> None:
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    from terse.autodistil.corpus import read_corpus_ids
    from terse.autodistil.glue import TASKS, read_tsv
    from terse.autodistil.teacher import default_teacher_dir, load_teacher
    from terse.core.paths import data_path

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("*\n")
    src = default_teacher_dir()
    tensors = load_file(str(src / "model.safetensors"))
    packed = {}
    for name, t in tensors.items():
        if name == "embeddings.word_embeddings.weight":
            scale = t.abs().amax(1, keepdim=True).clamp_min(1e-8) / 127
            packed[name + ".int8"] = torch.round(t / scale).to(torch.int8)
            packed[name + ".scale"] = scale.float()
        elif t.is_floating_point():
            packed[name] = t.half()
        else:
            packed[name] = t
    tdir = out / "teacher"
    tdir.mkdir(exist_ok=True)
    save_file(packed, str(tdir / "packed.safetensors"))
    for f in src.iterdir():
        if f.is_file() and f.name not in ("model.safetensors", "README.md", "data_config.json"):
            shutil.copy(f, tdir / f.name)
    _, tokenizer, _ = load_teacher(src)
    blocks = read_corpus_ids(data_path("text", "train"), tokenizer, corpus_tokens, seq_len)
    np.savez_compressed(out / "corpus.npz", blocks=blocks.numpy().astype(np.uint16))
    for task, spec in TASKS.items():
        dest = out / "glue" / task
        dest.mkdir(parents=True, exist_ok=True)
        folder = data_path("glue", task)
        shutil.copy(folder / "dev.tsv", dest / "dev.tsv")
        lines = (folder / "train.tsv").read_text(encoding="utf-8-sig").splitlines(keepends=True)
        header, rows = (lines[:1], lines[1:]) if spec.has_header else ([], lines)
        texts, _ = read_tsv(folder / "train.tsv", spec)
        if len(texts) != len([r for r in rows if r.strip()]):
            raise SystemExit(f"{task}: rows and parsed examples differ; cannot subsample by line")
        rows = [r for r in rows if r.strip()]
        if len(rows) > max_train:  # the same seeded choice as FinetuneConfig(seed=0) makes
            keep = sorted(random.Random(0).sample(range(len(rows)), max_train))
            rows = [rows[i] for i in keep]
        (dest / "train.tsv").write_text("".join(header + rows), encoding="utf-8")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"payload {out}: {total / 1e6:.1f} MB, {len(blocks)} blocks of {seq_len}")


def unpack(payload: Path, teacher_out: Path) -> None:
    from safetensors.torch import load_file, save_file

    packed = load_file(str(payload / "teacher" / "packed.safetensors"))
    tensors = {}
    for name, t in packed.items():
        if name.endswith(".int8"):
            base = name.removesuffix(".int8")
            tensors[base] = t.float() * packed[base + ".scale"]
        elif name.endswith(".scale"):
            continue
        else:
            tensors[name] = t.float() if t.is_floating_point() else t
    teacher_out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(teacher_out / "model.safetensors"),
              metadata={"format": "pt"})
    for f in (payload / "teacher").iterdir():
        if f.is_file() and f.name != "packed.safetensors":
            shutil.copy(f, teacher_out / f.name)
    print(f"teacher rebuilt in {teacher_out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--out", default=str(ROOT / ".gpu5"))
    a.add_argument("--corpus-tokens", type=int, default=3_000_000)
    a.add_argument("--seq-len", type=int, default=128)
    a.add_argument("--max-train", type=int, default=8000)
    b = sub.add_parser("unpack")
    b.add_argument("--payload", default=str(ROOT / ".gpu5"))
    b.add_argument("--teacher-out", required=True)
    args = p.parse_args(argv)
    if args.cmd == "pack":
        pack(Path(args.out), args.corpus_tokens, args.seq_len, args.max_train)
    else:
        unpack(Path(args.payload), Path(args.teacher_out))


if __name__ == "__main__":
    main()
