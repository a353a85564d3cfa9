"""Model artifacts: a folder with ``config.json``, ``model.safetensors`` and
``manifest.json`` (sha256 of every file). Loading verifies the hashes, so a corrupted or
swapped weight file is an error, never a silently different model. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch

from terse.core.errors import ArtifactError, ConfigError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
C = TypeVar("C")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file + rename (never half-written)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_write_bytes(Path(path), save(contiguous, metadata=metadata))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"cannot read weights {path}: {exc}") from None


def save_artifact(
    folder: Path,
    kind: str,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    extra_files: dict[str, bytes] | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Save a model folder and return its manifest.

    Args:
        folder: destination (created if needed).
        kind: what the model is, e.g. ``"terse.textcomp.m1"``; checked on load.
        config: constructor config (JSON-serializable).
        tensors: state dict to store as safetensors.
        extra_files: further files (e.g. a tokenizer) to store and hash.
        info: free-form provenance (training data, steps, metrics) kept in the manifest.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / CONFIG_FILE, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    save_tensors(folder / WEIGHTS_FILE, tensors)
    for name, data in (extra_files or {}).items():
        atomic_write_bytes(folder / name, data)
    names = [CONFIG_FILE, WEIGHTS_FILE, *sorted(extra_files or {})]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "kind": kind,
        "files": {name: sha256_file(folder / name) for name in names},
        "info": info or {},
    }
    atomic_write_bytes(folder / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{folder} is not a terse model folder: {MANIFEST_FILE} is missing") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        raise ArtifactError(f"{path}: unsupported manifest (expected manifest_version {MANIFEST_VERSION})")
    return manifest


def verify_files(folder: Path, files: dict[str, str]) -> None:
    """Check every file a manifest lists against its sha256 (ArtifactError otherwise)."""
    for name, expected in files.items():
        path = Path(folder) / name
        if not path.is_file():
            raise ArtifactError(f"{folder}: {name} is missing")
        if sha256_file(path) != expected:
            raise ArtifactError(f"{path}: sha256 mismatch (file is corrupted or was replaced)")


def model_id(manifest: dict[str, Any]) -> str:
    """Short identity of a saved model: the sha256 of its weights (first 16 hex digits)."""
    return manifest["files"][WEIGHTS_FILE][:16]


def load_artifact(folder: Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """Load and verify a model folder -> (config, tensors, manifest)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("kind") != kind:
        raise ArtifactError(f"{folder} holds a {manifest.get('kind')!r} model, expected {kind!r}")
    files = manifest.get("files", {})
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if required not in files:
            raise ArtifactError(f"{folder}/{MANIFEST_FILE} does not list {required}")
    verify_files(folder, files)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except ValueError as exc:
        raise ArtifactError(f"{folder}/{CONFIG_FILE}: invalid JSON ({exc})") from None
    return config, load_tensors(folder / WEIGHTS_FILE), manifest


def load_config_artifact(folder: Path, kind: str, config_class: type[C]) -> tuple[C, dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`load_artifact` with the config parsed into ``config_class`` (a bad config is an
    :class:`ArtifactError` naming the folder) -> (config, tensors, manifest)."""
    config_dict, tensors, manifest = load_artifact(folder, kind)
    try:
        config = config_class.from_dict(config_dict)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{folder}: {exc}") from None
    return config, tensors, manifest


def resolve_model_folder(name_or_path: str | Path, shipped_dir: Path, prefix: str, what: str) -> Path:
    """A model folder path, or the name of a model shipped in ``shipped_dir`` (``prefix*``)."""
    name = str(name_or_path)
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        return candidate
    shipped = Path(shipped_dir) / name
    if shipped.is_dir():
        return shipped
    available = sorted(p.name for p in Path(shipped_dir).glob(f"{prefix}*") if p.is_dir())
    raise ArtifactError(f"no {what} model {name!r}: not a folder, and shipped models are {available}")
