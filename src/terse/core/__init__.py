"""Foundation shared by every terse system: configs, artifacts, checkpoints, container, errors, paths."""

from terse.core.exports import lazy_exports

_EXPORTS = {
    "TerseError": "terse.core.errors",
    "ConfigError": "terse.core.errors",
    "ArtifactError": "terse.core.errors",
    "FormatError": "terse.core.errors",
    "ModelMismatchError": "terse.core.errors",
    "DataError": "terse.core.errors",
    "TrainingError": "terse.core.errors",
    "FrozenConfig": "terse.core.config",
    "save_artifact": "terse.core.artifacts",
    "load_artifact": "terse.core.artifacts",
    "load_config_artifact": "terse.core.artifacts",
    "read_manifest": "terse.core.artifacts",
    "model_id": "terse.core.artifacts",
    "save_tensors": "terse.core.artifacts",
    "load_tensors": "terse.core.artifacts",
    "atomic_write_bytes": "terse.core.artifacts",
    "sha256_file": "terse.core.artifacts",
    "save_checkpoint": "terse.core.checkpoint",
    "load_checkpoint": "terse.core.checkpoint",
    "has_checkpoint": "terse.core.checkpoint",
    "data_root": "terse.core.paths",
    "data_path": "terse.core.paths",
    "progress": "terse.core.progress",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
