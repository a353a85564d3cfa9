"""File handling shared by CLI verbs: ``-`` for stdin/stdout, refuse to overwrite
without ``--force``, write through a temporary file so a failure never leaves a
half-written output (and never touches an existing file)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from terse.core.errors import TerseError


class UsageError(TerseError):
    """Bad command-line usage (missing file, existing output...)."""


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path}: no such file")
    if p.is_dir():
        raise UsageError(f"{path} is a directory")
    try:
        handle = open(p, "rb")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    with handle:
        yield handle


@contextmanager
def open_output(path: str, force: bool) -> Iterator[BinaryIO]:
    """Yield a writable stream; the file appears at ``path`` only if the block succeeds."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to overwrite)")
    if target.is_dir():
        raise UsageError(f"{path} is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{parent}: no such directory")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
