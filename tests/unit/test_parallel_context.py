"""The parallel (hierarchical-pass) WaLLoC context model: coverage of the pass schedule,
lossless round trips, and identical bits under other float kernels and thread counts."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import save_file
from tests.elsewhere import OTHER_KERNELS, assert_script_prints_ok

from terse.core.errors import DataError, FormatError
from terse.walloc.parallel_context import ParallelContextModel, fit_parallel_context, schedule

MAX_INT = 127


def smooth_latents(count: int, channels: int, seed: int) -> list[np.ndarray]:
    """Spatially correlated integer latents (random walks), so the context has something to learn."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        h, w = rng.integers(5, 30, size=2)
        field = np.cumsum(np.cumsum(rng.normal(0, 2, (channels, h, w)), 1), 2) / 4
        out.append(np.clip(np.round(field + rng.normal(0, 1, field.shape)), -MAX_INT, MAX_INT).astype(np.int64))
    return out


@pytest.fixture(scope="module")
def model_tables():
    return fit_parallel_context(smooth_latents(12, 3, seed=0), MAX_INT, steps=150, hidden=16, positions=20_000)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 17), (16, 16), (33, 5), (40, 61)])
def test_schedule_codes_every_position_once_from_already_coded_context(h, w):
    coded = np.zeros((h, w), dtype=bool)
    for rows, cols, offsets in schedule(h, w):
        for di, dj in offsets:
            r, c = rows + di, cols + dj
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            assert coded[r[inside], c[inside]].all()
        assert not coded[rows, cols].any()
        coded[rows, cols] = True
    assert coded.all()


def test_round_trip_is_lossless_and_learns_the_context(model_tables):
    model = ParallelContextModel(model_tables, MAX_INT)
    untrained_bytes = trained_bytes = 0
    for latent in smooth_latents(4, 3, seed=1) + [np.full((3, 1, 1), -MAX_INT), np.full((3, 2, 9), MAX_INT)]:
        payload = model.encode(latent)
        assert np.array_equal(model.decode(payload, latent.shape), latent)
        trained_bytes += len(payload)
        untrained_bytes += latent.size * 9 / 8  # a uniform code of 509 residual values
    assert trained_bytes < 0.7 * untrained_bytes


def test_coding_features_are_the_fitting_features_reordered(model_tables):
    """The coder gathers features in its own layout; they must be the fit's features (whose
    predictions the frequency tables were counted from), and predict the same."""
    from terse.walloc.parallel_context import channels_last, coding_plan, context_features

    model = ParallelContextModel(model_tables, MAX_INT)
    latent = smooth_latents(1, 3, seed=3)[0]
    values = channels_last(latent).reshape(-1, latent.shape[0])
    pairs = model.pair_table[values + MAX_INT]
    grid = channels_last(latent)
    passes = schedule(*latent.shape[1:])
    for p, (plan_pass, (rows, cols, offsets)) in enumerate(zip(coding_plan(*latent.shape[1:]), passes, strict=True)):
        fitted = context_features(grid, rows, cols, offsets, model.w["log_table"])
        coded = model._features(values, pairs, plan_pass)
        assert np.array_equal(coded, fitted[:, model.coding_order].astype(np.float32))
        for a, b in zip(model.predict(fitted, p), model._predict(coded, p), strict=True):
            assert np.array_equal(a, b)


def test_float32_products_give_the_float64_bytes(model_tables, monkeypatch):
    """A fitted (layout 2) model runs every product in float32 because its stored weights bound
    the sums below 2**24; with that bound taken away every product runs in float64. Both are
    the same integers, so the bytes must not depend on which one a model gets."""
    from terse.walloc import parallel_context

    fast = ParallelContextModel(model_tables, MAX_INT)
    assert fast.version == 2 and fast.layer1_float32 and fast.layer2_float32 and fast.head_float32
    assert fast.linear_in_layer1
    monkeypatch.setattr(parallel_context, "EXACT_FLOAT32", 0)
    wide = ParallelContextModel(model_tables, MAX_INT)
    assert not (wide.layer1_float32 or wide.layer2_float32 or wide.head_float32 or wide.linear_in_layer1)
    for latent in smooth_latents(3, 3, seed=4):
        assert wide.encode(latent) == fast.encode(latent)
        assert np.array_equal(wide.decode(fast.encode(latent), latent.shape), latent)


def test_other_kernels_and_one_thread_decode_identically(model_tables, tmp_path):
    model = ParallelContextModel(model_tables, MAX_INT)
    latent = smooth_latents(1, 3, seed=2)[0]
    save_file({k: v.contiguous() for k, v in model_tables.items()}, tmp_path / "tables.safetensors")
    (tmp_path / "payload.bin").write_bytes(model.encode(latent))
    np.save(tmp_path / "latent.npy", latent)
    script = (
        "import sys, numpy as np, torch; from pathlib import Path; from safetensors.torch import load_file\n"
        "from terse.walloc.parallel_context import ParallelContextModel\n"
        "d = Path(sys.argv[1]); torch.set_num_threads(1)\n"
        "m = ParallelContextModel(load_file(d / 'tables.safetensors'), 127)\n"
        "lat = np.load(d / 'latent.npy')\n"
        "assert np.array_equal(m.decode((d / 'payload.bin').read_bytes(), lat.shape), lat)\n"
        "assert m.encode(lat) == (d / 'payload.bin').read_bytes()\n"
        "print('ok')\n")
    assert_script_prints_ok(script, str(tmp_path), env=OTHER_KERNELS)


def test_bad_tables_and_payloads_are_refused(model_tables):
    model = ParallelContextModel(model_tables, MAX_INT)
    with pytest.raises(FormatError, match="channels"):
        model.encode(np.zeros((4, 3, 3), dtype=np.int64))
    with pytest.raises(DataError, match="latent values"):
        model.encode(np.full((3, 4, 4), MAX_INT + 1))
    with pytest.raises(FormatError, match="32-bit words"):
        model.decode(b"abc", (3, 4, 4))
    with pytest.raises(FormatError, match="layout"):
        ParallelContextModel({k: v for k, v in model_tables.items() if k != "pctx.layout"}, MAX_INT)
    broken = dict(model_tables)
    broken["pctx.freqs"] = model_tables["pctx.freqs"].clone()
    broken["pctx.freqs"][0, 0] += 1
    with pytest.raises(FormatError, match="normalised"):
        ParallelContextModel(broken, MAX_INT)
