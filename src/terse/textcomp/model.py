"""M1: the byte-level LM that drives the arithmetic coder.

An M1 artifact is a model folder (see :mod:`terse.core.artifacts`) whose config is a
:class:`~terse.nn.gpt.GPTConfig` with ``vocab_size`` 257 (256 bytes + BOS).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from terse.core.artifacts import load_config_artifact, model_id, resolve_model_folder, save_artifact
from terse.core.errors import ArtifactError
from terse.nn.gpt import GPT, GPTConfig

M1_KIND = "terse.textcomp.m1"
BOS = 256
BYTE_VOCAB = 257
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_MODEL = "m1-default"


@dataclass
class ByteLM:
    """A loaded M1: the network plus its identity (for container headers)."""

    model: GPT
    model_id: str
    name: str
    info: dict[str, Any]
    path: str = ""  # the artifact folder it was loaded from


def save_byte_lm(model: GPT, folder: Path, info: dict[str, Any] | None = None, half: bool = False) -> str:
    """Save an M1 as an artifact folder; returns its model id. ``half`` stores fp16."""
    tensors = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    manifest = save_artifact(folder, M1_KIND, model.config.to_dict(), tensors, info=info)
    return model_id(manifest)


def resolve_model_path(name_or_path: str | Path | None) -> Path:
    """A shipped model name (``m1-default``, ``m1-small``...) or a folder path."""
    return resolve_model_folder(name_or_path or DEFAULT_MODEL, PRETRAINED_DIR, "m1-", "M1")


@lru_cache(maxsize=4)
def _load_cached(path: str) -> ByteLM:
    config, tensors, manifest = load_config_artifact(Path(path), M1_KIND, GPTConfig)
    if config.vocab_size != BYTE_VOCAB:
        raise ArtifactError(f"{path}: an M1 needs vocab_size {BYTE_VOCAB}, got {config.vocab_size}")
    model = GPT(config)
    try:
        model.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not match config ({str(exc).splitlines()[0]})") from None
    model.eval()
    return ByteLM(model=model, model_id=model_id(manifest), name=Path(path).name, info=manifest.get("info", {}),
                  path=path)


def load_byte_lm(name_or_path: str | Path | None = None) -> ByteLM:
    """Load (and verify) an M1 by shipped name or folder path; cached per process."""
    return _load_cached(str(resolve_model_path(name_or_path).resolve()))
