import json

import pytest
import torch

from terse.core.artifacts import load_artifact, save_artifact
from terse.core.config import FrozenConfig
from terse.core.errors import ArtifactError, ConfigError
from terse.nn.gpt import GPTConfig


def test_save_load_round_trip(tmp_path):
    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    save_artifact(tmp_path / "m", "kind.a", {"a": 1}, tensors, info={"note": "x"})
    config, loaded, manifest = load_artifact(tmp_path / "m", "kind.a")
    assert config == {"a": 1} and torch.equal(loaded["w"], tensors["w"]) and manifest["info"] == {"note": "x"}
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in (tmp_path / "m").iterdir())


def test_tampering_and_wrong_kind_are_detected(tmp_path):
    folder = tmp_path / "m"
    save_artifact(folder, "kind.a", {"a": 1}, {"w": torch.ones(4)})
    with pytest.raises(ArtifactError, match="expected 'kind.b'"):
        load_artifact(folder, "kind.b")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_artifact(folder, "kind.a")
    (folder / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_artifact(folder, "kind.a")


def test_config_rejects_unknown_keys_and_round_trips():
    config = GPTConfig(d_model=64, n_heads=2)
    assert GPTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown keys"):
        GPTConfig.from_dict({"d_modle": 3})
    with pytest.raises(ConfigError, match="divisible"):
        GPTConfig.from_dict({"d_model": 30})
    assert issubclass(GPTConfig, FrozenConfig)
