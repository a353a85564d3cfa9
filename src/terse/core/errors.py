"""Error types. Every user-facing failure is a :class:`TerseError` subclass, which the
CLI turns into a one-line message and a non-zero exit code."""


class TerseError(Exception):
    """Base class of all errors terse reports to users."""


class ConfigError(TerseError, ValueError):
    """A configuration is invalid or has unknown keys."""


class ArtifactError(TerseError):
    """A saved model folder is missing files, malformed, or fails its sha256 check."""


class FormatError(TerseError):
    """A compressed file is not a terse file, has an unknown version, or is corrupted."""


class ModelMismatchError(FormatError):
    """A compressed file was made by a different model than the one available."""


class DataError(TerseError):
    """Input data (dataset folder, file) is missing or unusable."""


class TrainingError(TerseError):
    """Training cannot go on (the loss diverged, or the data cannot fill a batch)."""
