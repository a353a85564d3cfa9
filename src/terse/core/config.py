"""Frozen config dataclasses: the config is the constructor.

Every config is a frozen dataclass validated in ``__post_init__``, which raises
:class:`ConfigError` (a ``ValueError``); ``from_dict`` and ``replace`` reject unknown keys
so a typo in a JSON file or a call is an error, not a silent default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from terse.core.errors import ConfigError

C = TypeVar("C", bound="FrozenConfig")


@dataclasses.dataclass(frozen=True)
class FrozenConfig:
    """Base class adding dict round-trips to frozen config dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; known keys are {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    def replace(self: C, **changes: Any) -> C:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"{type(self).__name__}: unknown keys {unknown}; known keys are {sorted(known)}")
        return dataclasses.replace(self, **changes)
