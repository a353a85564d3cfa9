"""Where data lives: ``TERSE_DATA`` or ``../shared/data`` when present."""

from __future__ import annotations

import os
from pathlib import Path

from terse.core.errors import DataError

ENV_VAR = "TERSE_DATA"


def data_root() -> Path:
    """The dataset root: ``$TERSE_DATA`` if set, else ``../shared/data`` (relative to the
    working directory or to this checkout) when it exists."""
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise DataError(f"{ENV_VAR}={env} is not a directory")
        return root
    repo_root = Path(__file__).resolve().parents[3]
    for candidate in (Path.cwd() / ".." / "shared" / "data", repo_root / ".." / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    raise DataError(f"no dataset folder found: set {ENV_VAR} or pass the data path explicitly")


def data_path(*parts: str) -> Path:
    """Path of a dataset folder/file under :func:`data_root`, which must exist."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    return path
