"""Training M1 on a folder of text files (``text/train``), validated on ``text/valid``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from terse.core.errors import DataError
from terse.nn.gpt import GPT, GPTConfig
from terse.nn.train_lm import TrainConfig, train_lm
from terse.textcomp.model import BOS, save_byte_lm

logger = logging.getLogger(__name__)

DOCUMENT_SEPARATOR = b"\n\n"


def corpus_files(folder: Path) -> list[Path]:
    """The regular, non-hidden files of ``folder`` (recursive, sorted); an error if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a directory")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder} has no files")
    return files


def read_corpus(folder: Path) -> np.ndarray:
    """All regular files of ``folder`` (sorted, recursive) joined into one uint8 array."""
    data = DOCUMENT_SEPARATOR.join(p.read_bytes() for p in corpus_files(folder))
    return np.frombuffer(data, dtype=np.uint8)


def train_m1(data_dir: Path, out_dir: Path, model_config: GPTConfig, train_config: TrainConfig,
             export_half: bool = True) -> dict[str, Any]:
    """Train an M1 on ``data_dir/train`` (validated on ``data_dir/valid``).

    ``data_dir`` is the ``text`` folder (holding ``train/`` and ``valid/``). The model is
    exported as an artifact folder to ``out_dir/model`` at every checkpoint, so a
    usable model exists while training continues.
    """
    data_dir = Path(data_dir)
    if (data_dir / "text" / "train").is_dir():
        data_dir = data_dir / "text"
    train = read_corpus(data_dir / "train")
    valid = read_corpus(data_dir / "valid")
    logger.info("M1 training on %d bytes, validating on %d bytes", len(train), len(valid))
    model = GPT(model_config)

    def export(model: GPT, state: dict[str, Any]) -> None:
        history = state["history"]
        info = {"trained_on": str(data_dir / "train"), "steps": state["step"], "tokens_seen": state["tokens_seen"],
                "train_seconds": round(state["elapsed_s"], 1), "train_config": train_config.to_dict(),
                "valid_bits_per_byte": history[-1]["valid_bits"] if history else None}
        save_byte_lm(model, Path(out_dir) / "model", info=info, half=export_half)

    return train_lm(model, train, valid, train_config, Path(out_dir), bos=BOS, on_checkpoint=export)

