"""Progress bars for long work; silent when not attached to a terminal or disabled."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("TERSE_PROGRESS", "auto") == "1" or (
        os.environ.get("TERSE_PROGRESS", "auto") == "auto" and sys.stderr.isatty()
    )


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, **kwargs) -> Iterator[T]:
    """A tqdm bar on stderr when interactive (``TERSE_PROGRESS=1`` forces, ``0`` hides)."""
    from tqdm.auto import tqdm

    disable = kwargs.pop("disable", False) or not progress_enabled()
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, dynamic_ncols=True,
                **kwargs)
