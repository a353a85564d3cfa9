"""WaLLoC codec: round trips through real bytes, storage methods, golden bitstream, bad input."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.fixtures.walloc import smooth_image, stereo_tone, tiny_audio_net, tiny_codec, tiny_image_net

from terse.core.errors import DataError, FormatError, ModelMismatchError, TerseError
from terse.walloc.codec import decompress, read_wlc
from terse.walloc.storage import image_bytes_to_latent, latent_to_image_bytes

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@pytest.fixture(scope="module")
def image_codec(tmp_path_factory):
    net = tiny_image_net()
    return tiny_codec(net, [smooth_image(48, 64, s) for s in range(3)], folder=tmp_path_factory.mktemp("m") / "walloc-tiny")


@pytest.fixture(scope="module")
def audio_codec(tmp_path_factory):
    return tiny_codec(tiny_audio_net(), [stereo_tone(2048, seed=s) for s in range(3)],
                      folder=tmp_path_factory.mktemp("a") / "walloc-tiny-audio")


@pytest.mark.parametrize("storage", ["context", "webp", "png"])
def test_image_round_trip_every_storage_decodes_the_same_latent(image_codec, storage):
    img = smooth_image(40, 56, seed=7)  # not a multiple of 8: padded, then cropped back
    blob = image_codec.compress(img, storage=storage)
    out = decompress(blob, image_codec)
    assert out.modality == "image" and out.data.shape == img.shape and out.data.dtype == np.uint8
    latent, sizes = image_codec.encode_latent(img)
    np.testing.assert_array_equal(out.data, image_codec.decode_latent(latent, sizes))
    header, _ = read_wlc(blob)
    assert header["storage"] == storage and header["size"] == [40, 56] and header["padded"] == [40, 56]


def test_decoding_is_close_to_forward_in_eval_mode(image_codec):
    img = smooth_image(32, 32, seed=3)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255 - 0.5
    with torch.no_grad():
        ref = image_codec.net(x)["x_hat"].clamp(-0.5, 0.5)
    out = decompress(image_codec.compress(img), image_codec).data
    expected = ((ref[0] + 0.5) * 255).round().permute(1, 2, 0).numpy()
    assert np.abs(out.astype(float) - expected).max() <= 1


def test_context_model_beats_untrained_and_latent_values_are_8bit(image_codec):
    from terse.walloc.codec import WallocCodec
    from terse.walloc.entropy_model import untrained_tables

    img = smooth_image(64, 64, seed=11)
    latent, _ = image_codec.encode_latent(img)
    assert np.abs(latent).max() <= 127 and latent.dtype == np.int64
    plain = WallocCodec(image_codec.net, untrained_tables(latent.shape[0]), "x", "x")
    assert len(image_codec.store_latent(latent, "context")) < len(plain.store_latent(latent, "context"))


def test_tiny_images_are_padded(image_codec):
    img = smooth_image(3, 5, seed=1)
    out = decompress(image_codec.compress(img), image_codec)
    assert out.data.shape == (3, 5, 3)


def test_audio_round_trip_odd_length(audio_codec):
    clip = stereo_tone(1001, seed=5)
    blob = audio_codec.compress(clip, sample_rate=8000)
    out = decompress(blob, audio_codec)
    assert out.modality == "audio" and out.data.shape == clip.shape and out.sample_rate == 8000
    webp = decompress(audio_codec.compress(clip, sample_rate=8000, storage="webp"), audio_codec)
    np.testing.assert_array_equal(webp.data, out.data)


def test_audio_bad_input(audio_codec):
    with pytest.raises(DataError, match="8000 Hz"):
        audio_codec.compress(stereo_tone(512), sample_rate=44100)
    with pytest.raises(DataError, match="channels"):
        audio_codec.compress(stereo_tone(512)[:1], sample_rate=8000)


def test_latent_image_storage_is_lossless():
    rng = np.random.default_rng(0)
    for shape in ((12, 5, 7), (48, 3, 4), (7, 4, 4), (108, 260), (27, 5)):
        latent = rng.integers(-127, 128, size=shape)
        for fmt in ("webp", "png"):
            back = image_bytes_to_latent(latent_to_image_bytes(latent, 8, fmt), shape, 8)
            np.testing.assert_array_equal(back, latent)


def test_corrupt_truncated_and_mismatched_files_are_clear_errors(image_codec, audio_codec):
    blob = image_codec.compress(smooth_image(24, 24))
    for bad in (blob[:-3], blob[:10], b"", b"XXXX" + blob[4:], blob[:-6] + bytes([blob[-6] ^ 1]) + blob[-5:]):
        with pytest.raises(FormatError):
            decompress(bad, image_codec)
    with pytest.raises(ModelMismatchError):
        decompress(blob, audio_codec)
    with pytest.raises(TerseError):  # the header names a model that is not shipped
        decompress(blob)


@pytest.mark.parametrize("storage", ["context", "parallel"])
def test_bit_flips_are_refused_or_decode_to_an_image_of_the_right_shape(image_codec, parallel_codec, storage):
    codec = parallel_codec if storage == "parallel" else image_codec
    img = smooth_image(24, 32, seed=2)
    blob = bytearray(codec.compress(img, storage=storage))
    rng = np.random.default_rng(0)
    refused = decoded = 0
    for _ in range(20):
        bad = bytearray(blob)
        bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
        try:
            out = decompress(bytes(bad), codec)
        except TerseError as exc:  # any other exception (a crash) fails the test
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            refused += 1
            continue
        assert out.modality == "image" and out.data.shape == img.shape and out.data.dtype == np.uint8
        decoded += 1
    assert refused + decoded == 20
    assert refused >= 15  # the header check and the latents' CRC catch almost every flip


def _golden_tables(channels: int) -> dict[str, torch.Tensor]:
    """Fixed tables that exercise every part of the context model: the linear predictor (mean of
    left and up), the trunk and the heads (seeded small weights), the mixture weights."""
    from terse.walloc.entropy_model import MIXTURE, NUM_OFFSETS, untrained_tables

    tables = untrained_tables(channels, hidden=(16, 8))
    gen = torch.Generator().manual_seed(7)
    for key in ("entropy.trunk1", "entropy.trunk2", "entropy.head"):
        tables[key] = 0.1 * torch.randn(tables[key].shape, generator=gen)
    for c in range(channels):
        tables["entropy.linear"][c * NUM_OFFSETS + 0, c] = 0.5  # left (audio: previous step)
        tables["entropy.linear"][c * NUM_OFFSETS + 1, c] = 0.5  # up (audio: two steps back)
    tables["entropy.head_bias"].view(channels, 3, MIXTURE)[:, 1] = torch.tensor([0.5, 1.5])  # log-scales
    tables["entropy.typical"] = torch.linspace(1.0, 4.0, channels)
    tables["entropy.inv_typical"] = (1 / tables["entropy.typical"]).repeat_interleave(NUM_OFFSETS)
    return tables


def test_golden_bitstream():
    """The context-coded bitstream of fixed tables and a fixed latent is stable (so files stay
    decodable across versions). Regenerate with TERSE_REGEN_GOLDEN=1 after an intended format change."""
    from terse.walloc.entropy_model import ContextModel

    rng = np.random.default_rng(1234)
    latent = np.clip(np.cumsum(np.cumsum(rng.integers(-3, 4, size=(12, 6, 9)), 1), 2), -127, 127)
    model = ContextModel(_golden_tables(12), 127, "image")
    payload = model.encode(latent)
    path = GOLDEN / "walloc_tiny_context.bin"
    if os.environ.get("TERSE_REGEN_GOLDEN") == "1":
        path.write_bytes(payload)
    assert payload == path.read_bytes()
    np.testing.assert_array_equal(model.decode(path.read_bytes(), latent.shape), latent)
    audio = ContextModel(_golden_tables(4), 127, "audio")
    clip = latent[:4, 0]
    np.testing.assert_array_equal(audio.decode(audio.encode(clip), clip.shape), clip)


def test_context_model_round_trips_extreme_and_random_latents():
    """Every level, saturated values and white noise (the model's worst case) round-trip exactly."""
    from terse.walloc.entropy_model import ContextModel

    rng = np.random.default_rng(5)
    model = ContextModel(_golden_tables(3), 127, "image")
    for latent in (rng.integers(-127, 128, size=(3, 7, 11)), np.full((3, 2, 3), 127), np.full((3, 1, 1), -127),
                   np.arange(-127, 128)[: 3 * 5 * 17].reshape(3, 5, 17)):
        np.testing.assert_array_equal(model.decode(model.encode(latent), latent.shape), latent)
    audio = ContextModel(_golden_tables(3), 127, "audio")
    clip = rng.integers(-127, 128, size=(3, 29))
    np.testing.assert_array_equal(audio.decode(audio.encode(clip), clip.shape), clip)


def test_linear_tables_use_the_linear_context_model_and_its_bitstream_is_unchanged(image_codec):
    """Tables without ``entropy.layout`` (v1, the shipped stereo codec) code with the linear model,
    bit-identically to terse's first WaLLoC release (golden file from that release)."""
    from terse.walloc.codec import WallocCodec
    from terse.walloc.context_models import context_model
    from terse.walloc.linear_context import LinearContextModel, untrained_linear_tables

    tables = untrained_linear_tables(12)
    tables["entropy.mean_weights"][:, 0] = 0.5  # left
    tables["entropy.mean_weights"][:, 1] = 0.5  # up
    tables["entropy.scale_weights"][:, 0] = 0.25  # log |left|
    tables["entropy.scale_weights"][:, -1] = 0.5  # bias
    model = context_model(tables, 127, "image")
    assert isinstance(model, LinearContextModel)
    rng = np.random.default_rng(1234)
    latent = np.clip(np.cumsum(np.cumsum(rng.integers(-3, 4, size=(12, 6, 9)), 1), 2), -127, 127)
    golden = (GOLDEN / "walloc_tiny_context_v1.bin").read_bytes()
    assert model.encode(latent) == golden
    np.testing.assert_array_equal(model.decode(golden, latent.shape), latent)
    codec = WallocCodec(image_codec.net, tables, "x", "x")
    img = smooth_image(16, 24)
    assert decompress(codec.compress(img), codec).data.shape == img.shape


def test_inconsistent_entropy_tables_are_clear_errors():
    from terse.walloc.entropy_model import ContextModel

    with pytest.raises(FormatError, match="entropy.layout"):
        ContextModel({"entropy.typical": torch.ones(12)}, 127, "image")
    bad = _golden_tables(12)
    bad["entropy.trunk2"] = torch.zeros(5, 8)
    with pytest.raises(FormatError, match="shape"):
        ContextModel(bad, 127, "image")
    bad = _golden_tables(12)
    bad["entropy.layout"] = torch.tensor([1, 12, 16, 8, 2])
    with pytest.raises(FormatError, match="layout"):
        ContextModel(bad, 127, "image")


def _with_header(blob: bytes, **changes) -> bytes:
    import io

    from terse.core.container import read_chunk, read_header, write_chunk, write_header

    stream = io.BytesIO(blob)
    header = read_header(stream, expected_format="walloc")
    meta, payload = read_chunk(stream)
    out = io.BytesIO()
    write_header(out, {**header, **changes})
    write_chunk(out, meta, payload)
    return out.getvalue()


def test_format_1_files_decode_with_their_model_and_are_refused_clearly_otherwise(image_codec):
    img = smooth_image(16, 16)
    blob = image_codec.compress(img)
    assert read_wlc(blob)[0]["version"] == 2
    same = decompress(_with_header(blob, version=1), image_codec).data  # same model id: same tables
    np.testing.assert_array_equal(same, decompress(blob, image_codec).data)
    with pytest.raises(ModelMismatchError, match="format-1"):
        decompress(_with_header(blob, version=1, model_id="0123456789abcdef"), image_codec)
    with pytest.raises(FormatError, match="version 4"):
        decompress(_with_header(blob, version=4), image_codec)


def test_fit_context_tables_picks_the_mlp_for_images_and_the_linear_model_for_audio():
    from tests.fixtures.walloc import tiny_audio_net

    from terse.walloc.context_models import context_model, fit_context_tables
    from terse.walloc.entropy_model import ContextModel
    from terse.walloc.linear_context import LinearContextModel

    rng = np.random.default_rng(0)
    image_tables = fit_context_tables([rng.integers(-5, 6, size=(12, 4, 5))], tiny_image_net().config)
    assert isinstance(context_model(image_tables, 127, "image"), ContextModel)
    audio_config = tiny_audio_net().config
    audio_tables = fit_context_tables([rng.integers(-5, 6, size=(8, 40))], audio_config)
    assert isinstance(context_model(audio_tables, 127, "audio"), LinearContextModel)


@pytest.fixture(scope="module")
def parallel_codec(tmp_path_factory):
    from terse.walloc.codec import load_codec, save_parallel_tables
    from terse.walloc.parallel_context import fit_parallel_context

    folder = tmp_path_factory.mktemp("p") / "walloc-tiny-parallel"
    codec = tiny_codec(tiny_image_net(), [smooth_image(48, 64, s) for s in range(3)], folder=folder)
    latents = [codec.encode_latent(smooth_image(64, 96, s))[0] for s in range(4)]
    save_parallel_tables(codec, fit_parallel_context(latents, 127, steps=100, hidden=16, positions=10_000))
    return load_codec(folder)


def test_parallel_storage_is_the_default_once_fitted_and_round_trips(parallel_codec, image_codec):
    assert parallel_codec.default_storage == "parallel" and image_codec.default_storage == "context"
    img = smooth_image(40, 72, seed=9)
    blob = parallel_codec.compress(img)
    header, _ = read_wlc(blob)
    assert header["storage"] == "parallel" and header["context_id"] == parallel_codec.parallel[1]
    assert header["version"] == 3
    latent, sizes = parallel_codec.encode_latent(img)
    np.testing.assert_array_equal(decompress(blob, parallel_codec).data, parallel_codec.decode_latent(latent, sizes))
    assert len(read_wlc(blob)[1]) < len(read_wlc(parallel_codec.compress(img, storage="png"))[1])


def test_parallel_storage_needs_its_tables_and_refits_keep_the_old_ones(parallel_codec, image_codec):
    """A refit writes new tables as parallel/ and moves the old ones to parallel-<id>: files
    coded with either decode; a file naming tables the codec does not have is refused."""
    import io

    from terse.core.container import write_chunk, write_header
    from terse.core.errors import ArtifactError
    from terse.walloc.codec import save_parallel_tables
    from terse.walloc.parallel_context import fit_parallel_context

    with pytest.raises(ArtifactError, match="fit-context"):
        image_codec.compress(smooth_image(16, 16), storage="parallel")
    old_id = parallel_codec.parallel[1]
    blob = parallel_codec.compress(smooth_image(32, 32, seed=1))
    before = decompress(blob, parallel_codec).data
    latents = [parallel_codec.encode_latent(smooth_image(32, 48, s))[0] for s in range(2)]
    refit = fit_parallel_context(latents, 127, steps=20, hidden=8, positions=2_000, seed=1)
    new_id = save_parallel_tables(parallel_codec, refit)
    assert new_id != old_id and (parallel_codec.folder / f"parallel-{old_id}" / "manifest.json").is_file()
    np.testing.assert_array_equal(decompress(blob, parallel_codec).data, before)
    fresh = parallel_codec.compress(smooth_image(32, 32, seed=1))
    assert read_wlc(fresh)[0]["context_id"] == new_id
    np.testing.assert_array_equal(decompress(fresh, parallel_codec).data, before)
    header, payload = read_wlc(blob)
    unknown = io.BytesIO()
    write_header(unknown, {**header, "context_id": "0" * len(old_id)})
    write_chunk(unknown, {"end": 1}, payload)
    with pytest.raises(ModelMismatchError, match="parallel context tables"):
        decompress(unknown.getvalue(), parallel_codec)


def test_compacted_tables_answer_to_their_id_and_code_the_same_bytes(parallel_codec, tmp_path):
    import shutil

    from terse.walloc.codec import compact_parallel_tables, load_codec

    folder = tmp_path / "codec"
    shutil.copytree(parallel_codec.folder, folder)
    codec = load_codec(folder)
    img = smooth_image(40, 56, seed=5)
    blob, context_id = codec.compress(img), codec.parallel[1]
    before = (folder / "parallel" / "model.safetensors").stat().st_size
    assert compact_parallel_tables(folder / "parallel") == context_id
    assert (folder / "parallel" / "model.safetensors").stat().st_size <= before
    codec._parallel = None
    assert codec.parallel[1] == context_id and codec.compress(img) == blob
