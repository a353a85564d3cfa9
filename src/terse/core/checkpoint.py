"""Training checkpoints shared by every trainer (M1/M2 LMs, WaLLoC codecs, AutoDistil supernets).

A checkpoint is a folder with ``model.safetensors`` (the model's state dict),
``optimizer.safetensors`` (the optimizer's per-parameter tensors, keyed by parameter
name) and ``trainer_state.json`` (the trainer's own state, the optimizer's parameter
groups and, when one is given, the LR scheduler's state). No pickle.

A save writes a complete new folder beside the old one and swaps it in with renames, so
an interruption at any point leaves one complete checkpoint: a resume never mixes the
weights of one step with the optimizer state of another.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from terse.core.artifacts import atomic_write_bytes, load_tensors, save_tensors
from terse.core.errors import ArtifactError

STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


def _parameter_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the optimizer's parameters in its state-dict index order."""
    names = {id(p): n for n, p in model.named_parameters()}
    ordered = [p for group in optimizer.param_groups for p in group["params"]]
    missing = [i for i, p in enumerate(ordered) if id(p) not in names]
    if missing:
        raise ValueError(f"optimizer parameters {missing} are not parameters of the model")
    return [names[id(p)] for p in ordered]


def _complete(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def _readable(folder: Path) -> Path | None:
    """The folder holding the newest complete checkpoint (a swap may have been interrupted)."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if _complete(candidate):
            return candidate
    return None


def has_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` (or the copy an interrupted save left) holds a complete checkpoint."""
    return _readable(Path(folder)) is not None


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], scheduler: Any = None) -> None:
    """Save model, optimizer (and scheduler) with the JSON-serializable trainer ``state``."""
    folder = Path(folder)
    new, old = folder.with_name(folder.name + ".new"), folder.with_name(folder.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    save_tensors(new / MODEL_FILE, model.state_dict())
    names = _parameter_names(model, optimizer)
    opt_state = optimizer.state_dict()
    tensors = {}
    for index, slots in opt_state["state"].items():
        for slot, value in slots.items():
            tensors[f"{names[index]}::{slot}"] = value if torch.is_tensor(value) else torch.tensor(value)
    save_tensors(new / OPTIMIZER_FILE, tensors)
    saved = {"trainer": state, "param_groups": opt_state["param_groups"]}
    if scheduler is not None:
        saved["scheduler"] = scheduler.state_dict()
    atomic_write_bytes(new / STATE_FILE, json.dumps(saved, indent=2).encode())
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any = None) -> dict[str, Any]:
    """Restore model, optimizer (and scheduler) in place; returns the trainer state saved with them."""
    found = _readable(Path(folder))
    if found is None:
        raise ArtifactError(f"no complete checkpoint in {folder}")
    saved = json.loads((found / STATE_FILE).read_text())
    model.load_state_dict(load_tensors(found / MODEL_FILE))
    index = {name: i for i, name in enumerate(_parameter_names(model, optimizer))}
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_tensors(found / OPTIMIZER_FILE).items():
        name, _, slot = key.partition("::")
        if name not in index:
            raise ArtifactError(f"checkpoint {found} has optimizer state for an unknown parameter {name!r}")
        per_param.setdefault(index[name], {})[slot] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": saved["param_groups"]})
    if scheduler is not None:
        scheduler.load_state_dict(saved["scheduler"])
    return saved["trainer"]
