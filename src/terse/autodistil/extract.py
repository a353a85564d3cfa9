"""Extraction: a subnet of the supernet -> a standalone Hugging Face ``BertModel`` folder.

The folder holds ``config.json`` (a plain ``BertConfig``), ``model.safetensors``, the
tokenizer and ``manifest.json`` (sha256 of every file plus provenance). It loads with
``transformers.AutoModel.from_pretrained(dir)`` and computes exactly the supernet slice.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from terse.autodistil.space import SubnetConfig, TeacherShape, costs
from terse.autodistil.supernet import ElasticBert
from terse.core.artifacts import MANIFEST_VERSION, atomic_write_bytes, read_manifest, sha256_file, verify_files
from terse.core.errors import ArtifactError

STUDENT_KIND = "terse.autodistil.student"


def bert_config_for(subnet: SubnetConfig, teacher: TeacherShape, layer_norm_eps: float = 1e-12, **extra):
    """A standard ``BertConfig`` for ``subnet`` (head size = hidden / heads = the teacher's)."""
    from transformers import BertConfig

    subnet.check_fits(teacher)
    return BertConfig(vocab_size=teacher.vocab_size, hidden_size=subnet.hidden_size,
                      num_hidden_layers=subnet.num_layers, num_attention_heads=subnet.num_heads,
                      intermediate_size=subnet.intermediate_size, hidden_act="gelu",
                      max_position_embeddings=teacher.max_positions, type_vocab_size=teacher.type_vocab_size,
                      layer_norm_eps=layer_norm_eps, pad_token_id=0, **extra)


def write_manifest(folder: Path, info: dict) -> dict:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {"manifest_version": MANIFEST_VERSION, "kind": STUDENT_KIND,
                "files": {str(p.relative_to(folder)): sha256_file(p) for p in files}, "info": info}
    atomic_write_bytes(folder / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def verify_student(folder: Path) -> dict:
    """Check a student folder's sha256 manifest (ArtifactError if anything changed)."""
    manifest = read_manifest(folder)
    verify_files(folder, manifest.get("files", {}))
    return manifest


def extract_student(supernet: ElasticBert, subnet: SubnetConfig, folder: Path, tokenizer=None,
                    info: dict | None = None, dtype: torch.dtype = torch.float32):
    """Write ``subnet`` as a standalone ``BertModel`` folder; returns the loaded model."""
    from transformers import BertModel

    folder = Path(folder)
    config = bert_config_for(subnet, supernet.shape, supernet.eps)
    model = BertModel(config, add_pooling_layer=True)
    try:
        missing, unexpected = model.load_state_dict(supernet.subnet_state_dict(subnet), strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise ArtifactError(f"subnet weights do not fit BertModel: {exc}") from None
    leftover = [m for m in missing if not m.endswith("position_ids")]
    if leftover or unexpected:  # checked before anything is written
        raise ArtifactError(f"subnet weights do not fit BertModel: missing {leftover}, unexpected {unexpected}")
    folder.mkdir(parents=True, exist_ok=True)
    model.to(dtype).eval()
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    write_manifest(folder, {"subnet": subnet.to_dict(), **costs(subnet, supernet.shape), **(info or {})})
    return model
