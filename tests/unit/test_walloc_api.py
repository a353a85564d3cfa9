"""terse.walloc's public API: the names it exports, configs that fail with ConfigError, and the
context-model dispatcher by kind."""

import numpy as np
import pytest
import torch

import terse.walloc as walloc
from terse.core.errors import ConfigError, FormatError, TerseError
from terse.walloc.context_models import KINDS, context_model, fit_context_tables, kind_of
from terse.walloc.entropy_model import ContextModel
from terse.walloc.linear_context import LinearContextModel
from terse.walloc.parallel_context import ParallelContextModel

IMAGE = walloc.WallocConfig()
AUDIO = walloc.WallocConfig(modality="audio", channels=2, levels=4, latent_dim=8, sample_rate=8000)


def test_public_names_include_the_codec_and_the_ways_to_make_one():
    for name in ("load_codec", "decompress", "WallocCodec", "WallocConfig", "WallocTrainConfig", "train_walloc",
                 "fit_parallel_tables", "fit_context_tables", "finetune_decoder", "refit_entropy_tables"):
        assert name in walloc.__all__ and callable(getattr(walloc, name))


@pytest.mark.parametrize("make", [
    lambda: walloc.WallocConfig(modality="video"),
    lambda: walloc.WallocConfig(latent_dim=0),
    lambda: walloc.WallocConfig(latent_bits=9),
    lambda: walloc.WallocConfig(latent_step=0.5),
    lambda: walloc.WallocConfig(latent_bits=4, latent_step=5),  # fewer than 2 levels each side
    lambda: walloc.WallocConfig(modality="audio", channels=2),  # no sample rate
    lambda: walloc.WallocTrainConfig(steps=0),
    lambda: walloc.WallocTrainConfig(learning_rate=0.0),
    lambda: walloc.WallocTrainConfig(warmup_steps=-1),
])
def test_invalid_configs_raise_config_error(make):
    with pytest.raises(ConfigError) as info:
        make()
    assert isinstance(info.value, TerseError) and str(info.value)


def _latents(channels: int, shape: tuple[int, ...], count: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.clip(np.cumsum(rng.integers(-3, 4, size=(channels, *shape)), -1), -127, 127) for _ in range(count)]


@pytest.mark.parametrize(("kind", "config", "shape", "options", "coder"), [
    ("mlp", IMAGE, (8, 10), {"steps": 5, "hidden": (8, 4)}, ContextModel),
    ("linear", AUDIO, (120,), {"steps": 5}, LinearContextModel),
    ("parallel", IMAGE, (16, 16), {"steps": 5, "hidden": 8, "positions": 500}, ParallelContextModel),
])
def test_each_kind_fits_tables_its_coder_reads_back(kind, config, shape, options, coder):
    latents = _latents(config.latent_dim, shape)
    tables = fit_context_tables(latents, config, kind=kind, **options)
    assert kind_of(tables) == kind
    model = context_model(tables, 127, config.modality)
    assert isinstance(model, coder)
    latent = latents[0]
    np.testing.assert_array_equal(model.decode(model.encode(latent), latent.shape), latent)


def test_default_kinds_follow_the_modality():
    assert kind_of(fit_context_tables(_latents(12, (4, 5), 1), IMAGE, steps=2, hidden=(4, 4))) == "mlp"
    assert kind_of(fit_context_tables(_latents(8, (40,), 1), AUDIO, steps=2)) == "linear"
    assert set(KINDS) == {"mlp", "linear", "parallel"}


@pytest.mark.parametrize(("kind", "config", "options", "message"), [
    ("lstm", IMAGE, {}, "unknown context model kind"),
    ("linear", AUDIO, {"hidden": (8, 4)}, "takes no option"),
    ("mlp", IMAGE, {"steps": 0}, "steps"),
    ("mlp", IMAGE, {"hidden": (8,)}, "hidden"),
    ("parallel", IMAGE, {"hidden": 0}, "hidden"),
    ("parallel", AUDIO, {}, "image codecs"),
])
def test_bad_fit_requests_raise_config_error(kind, config, options, message):
    with pytest.raises(ConfigError, match=message):
        fit_context_tables(_latents(config.latent_dim, (4, 4) if config.modality == "image" else (16,), 1), config,
                           kind=kind, **options)


def test_the_kind_a_codec_asks_for_is_the_coder_it_gets():
    with pytest.raises(FormatError, match="pctx.layout"):
        context_model({"entropy.typical": torch.ones(3)}, 127, "image", kind="parallel")
    with pytest.raises(ConfigError, match="unknown context model kind"):
        context_model({}, 127, "image", kind="lstm")
