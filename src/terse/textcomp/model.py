"""M1: the byte-level LM that drives the arithmetic coder.

An M1 artifact is a model folder (see :mod:`terse.core.artifacts`) whose config is a
:class:`~terse.nn.gpt.GPTConfig` with ``vocab_size`` 257 (256 bytes + BOS). That float
network is what training produces. Coding uses its integer version
(:class:`~terse.nn.integer_gpt.IntegerGPT`, identical results on every machine), stored
as a second artifact in the subfolder ``integer/`` and made by :func:`quantize_m1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terse.core.artifacts import (
    load_config_artifact,
    model_id,
    read_manifest,
    resolve_model_folder,
    save_artifact,
)
from terse.core.errors import ArtifactError
from terse.nn.gpt import GPT, GPTConfig
from terse.nn.integer_gpt import IntegerGPT, IntegerGPTConfig, default_backend

M1_KIND = "terse.textcomp.m1"
M1_INTEGER_KIND = "terse.textcomp.m1-integer"
INTEGER_SUBFOLDER = "integer"
CALIBRATION_SEQUENCES = 64
CALIBRATION_BYTES = 512
BOS = 256
BYTE_VOCAB = 257
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_MODEL = "m1-default"


@dataclass
class ByteLM:
    """A loaded M1: the network plus its identity (for container headers).

    ``model`` is the float :class:`GPT` (training, files of format 1-2) or its
    :class:`IntegerGPT` (coding, format 3): ``exact`` tells which.
    """

    model: GPT | IntegerGPT
    model_id: str
    name: str
    info: dict[str, Any]
    path: str = ""  # the artifact folder it was loaded from

    @property
    def exact(self) -> bool:
        return isinstance(self.model, IntegerGPT)


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


def integer_folder(name_or_path: str | Path | None) -> Path:
    """Where the integer version of an M1 lives: ``<float model>/integer``, or the folder
    itself when it is an integer artifact."""
    folder = resolve_model_path(name_or_path)
    if read_manifest(folder).get("kind") == M1_INTEGER_KIND:
        return folder
    return folder / INTEGER_SUBFOLDER


@lru_cache(maxsize=4)
def _load_integer_cached(path: str, backend: str) -> ByteLM:
    folder = Path(path)
    if not folder.is_dir():
        parent = folder.parent
        raise ArtifactError(f"{parent} has no integer version (needed for coding); make it with "
                            f"`terse text quantize-m1 {parent} --data DIR`")
    config, tensors, manifest = load_config_artifact(folder, M1_INTEGER_KIND, IntegerGPTConfig)
    info = manifest.get("info", {})
    source = folder.parent / "manifest.json"
    if folder.name == INTEGER_SUBFOLDER and source.is_file():
        source_id = model_id(read_manifest(folder.parent))
        if info.get("source_id") != source_id:
            raise ArtifactError(f"{folder} was quantized from another version of {folder.parent} "
                                f"(id {info.get('source_id')}, now {source_id}); rerun `terse text quantize-m1`")
    try:
        network = IntegerGPT(config, tensors, backend)
    except ValueError as exc:
        raise ArtifactError(f"{folder}: {exc}") from None
    name = folder.parent.name if folder.name == INTEGER_SUBFOLDER else folder.name
    return ByteLM(model=network, model_id=model_id(manifest), name=name, info=info, path=path)


def load_integer_lm(name_or_path: str | Path | None = None, backend: str | None = None) -> ByteLM:
    """Load (and verify) the integer M1 used for coding, by shipped name or folder path.

    ``backend`` (``"int8"`` or ``"fp32"``) picks the matrix-product kernel; the results
    are identical, only speed differs (default: the fastest available here).
    """
    return _load_integer_cached(str(integer_folder(name_or_path).resolve()), backend or default_backend())


def calibration_sample(files: list[Path], sequences: int = CALIBRATION_SEQUENCES,
                       length: int = CALIBRATION_BYTES, seed: int = 0) -> torch.Tensor:
    """(sequences, 1 + length) ids: BOS + random extracts of the files (seeded)."""
    rng = np.random.default_rng(seed)
    sizes = np.array([f.stat().st_size for f in files], dtype=np.float64)
    rows = []
    for _ in range(sequences):
        f = files[int(rng.choice(len(files), p=sizes / sizes.sum()))]
        data = f.read_bytes()
        start = int(rng.integers(0, max(1, len(data) - length)))
        chunk = np.frombuffer(data[start:start + length], dtype=np.uint8).astype(np.int64)
        rows.append(np.concatenate([[BOS], chunk, np.full(length - len(chunk), 10, dtype=np.int64)]))
    return torch.from_numpy(np.stack(rows))


def quantize_m1(name_or_path: str | Path, calibration_files: list[Path], out: Path | None = None,
                seed: int = 0) -> str:
    """Make the integer version of a float M1 (calibrated on text extracts); returns its id.

    Writes ``<model>/integer`` unless ``out`` is given.
    """
    from terse.nn.quantize_gpt import quantize_gpt

    lm = load_byte_lm(name_or_path)
    source = Path(lm.path)
    config, tensors = quantize_gpt(lm.model, calibration_sample(calibration_files, seed=seed))
    info = {"source_id": lm.model_id, "source_name": lm.name, "calibration_files": len(calibration_files),
            "calibration_bytes": CALIBRATION_SEQUENCES * CALIBRATION_BYTES, "calibration_seed": seed}
    manifest = save_artifact(Path(out) if out else source / INTEGER_SUBFOLDER, M1_INTEGER_KIND, config.to_dict(),
                             tensors, info=info)
    _load_integer_cached.cache_clear()
    return model_id(manifest)
