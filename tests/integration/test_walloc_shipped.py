"""The shipped WaLLoC codecs load (sha256-verified), and decode files by name alone."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.elsewhere import OTHER_KERNELS, assert_script_prints_ok
from tests.fixtures.walloc import smooth_image, stereo_tone

from terse.walloc.codec import DEFAULT_MODELS, PRETRAINED_DIR, decompress, load_codec, read_wlc

SHIPPED = ("walloc-rgb-16x", "walloc-rgb-16x-hq", "walloc-rgb-4x", "walloc-rgb-4x-step6", "walloc-stereo-5x")
IMAGE_CODECS = ("walloc-rgb-16x", "walloc-rgb-4x-step6", "walloc-rgb-4x")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_codec_loads_with_expected_shape(name):
    codec = load_codec(name)
    assert codec.name == name
    expected = {"walloc-rgb-16x": 16.0, "walloc-rgb-16x-hq": 16.0, "walloc-rgb-4x": 4.0, "walloc-rgb-4x-step6": 4.0}.get(name)
    if expected:
        assert codec.config.dimensionality_reduction == expected
    else:
        assert codec.config.sample_rate == 44100 and codec.config.channels == 2


def test_shipped_image_codecs_round_trip_by_header_and_4x_beats_16x():
    img = smooth_image(64, 96, seed=3)
    errors = {}
    for name in IMAGE_CODECS:
        blob = load_codec(name).compress(img)
        out = decompress(blob).data  # no model argument: found from the header
        errors[name] = float(np.mean((out.astype(float) - img) ** 2))
    assert errors["walloc-rgb-4x"] < errors["walloc-rgb-16x"]


def test_the_step6_codec_has_4x_latents_quantized_coarser():
    """walloc-rgb-4x-step6: walloc-rgb-4x's encoder, latents round(y / 6), its own files."""
    coarse, fine = load_codec("walloc-rgb-4x-step6"), load_codec("walloc-rgb-4x")
    assert coarse.config.latent_step == 6 and coarse.net.bottleneck.max_int == 21
    assert torch.equal(coarse.net.encoder.weight, fine.net.encoder.weight)
    img = smooth_image(64, 96, seed=4)
    latent = coarse.encode_latent(img)[0]
    assert np.abs(latent).max() <= 21 and np.abs(latent * 6 - fine.encode_latent(img)[0]).max() <= 3.5
    blob = coarse.compress(img)
    assert read_wlc(blob)[0]["model"] == "walloc-rgb-4x-step6" and len(blob) < len(fine.compress(img))
    assert decompress(blob).data.shape == img.shape


def test_shipped_audio_codec_round_trip():
    codec = load_codec(DEFAULT_MODELS["audio"])
    clip = stereo_tone(4410, rate=44100)
    out = decompress(codec.compress(clip, sample_rate=44100)).data
    assert out.shape == clip.shape
    noise = np.sum((out - clip) ** 2)
    assert 10 * np.log10(np.sum(clip**2) / noise) > 10  # a poor decode would be near 0 dB


def test_shipped_weights_are_small():  # the WaLLoC codecs' share of the ~60 MB of shipped weights
    total = sum(p.stat().st_size for name in SHIPPED for p in (PRETRAINED_DIR / name).rglob("*") if p.is_file())
    assert total < 11 * 2**20


def test_files_decode_under_another_thread_count():
    # the context model's float64 matrix products must give the same tables with 1 or 2 threads,
    # or a file written by a 1-thread process would not decode in a 2-thread one (CRC error)
    import torch

    img = smooth_image(384, 512, seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        blobs = {name: load_codec(name).compress(img) for name in IMAGE_CODECS}
        expected = {name: decompress(blob).data for name, blob in blobs.items()}
        torch.set_num_threads(2)
        for name, blob in blobs.items():
            # a table mismatch would fail the latents' CRC check; the float decoder network may round
            # a few pixels differently with another thread count
            diff = np.abs(decompress(blob).data.astype(int) - expected[name])
            assert diff.max() <= 1
    finally:
        torch.set_num_threads(threads)


GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GOLDEN_PARALLEL = GOLDEN / "walloc_shipped_16x_parallel_layout2.wlc"
# the same image coded by the previous release, with the layout-1 tables it shipped
GOLDEN_LAYOUT1 = GOLDEN / "walloc_shipped_16x_parallel.wlc"
GOLDEN_STEP6 = GOLDEN / "walloc_shipped_4x_step6_parallel.wlc"


@pytest.mark.parametrize(("name", "golden"), [("walloc-rgb-16x", GOLDEN_PARALLEL), ("walloc-rgb-4x-step6", GOLDEN_STEP6)])
def test_golden_parallel_file_of_the_shipped_codec_decodes_and_reencodes(name, golden):
    img = smooth_image(64, 96, seed=3)
    blob = load_codec(name).compress(img)
    if os.environ.get("TERSE_REGEN_GOLDEN") == "1":
        golden.write_bytes(blob)
    assert read_wlc(blob)[0]["storage"] == "parallel"
    assert blob == golden.read_bytes()  # the encoder is exact too
    assert decompress(golden.read_bytes()).data.shape == img.shape  # latents pass their CRC check


def test_files_coded_with_the_earlier_tables_still_decode():
    """The previous release coded 16x files with layout-1 tables (float64 layers 2 and head);
    the codecs keep them as an earlier table set, so its files decode to the same image."""
    codec = load_codec("walloc-rgb-16x")
    old, new = read_wlc(GOLDEN_LAYOUT1.read_bytes())[0], read_wlc(GOLDEN_PARALLEL.read_bytes())[0]
    assert old["context_id"] in codec.earlier_parallel_ids and new["context_id"] == codec.parallel[1]
    assert codec.parallel_reading(old["context_id"]).version == 1 and codec.parallel[0].version == 2
    for name in ("walloc-rgb-16x", "walloc-rgb-16x-hq"):
        np.testing.assert_array_equal(load_codec(name).decompress(GOLDEN_LAYOUT1.read_bytes()).data,
                                      load_codec(name).decompress(GOLDEN_PARALLEL.read_bytes()).data)


def test_the_16x_codecs_share_latents_and_read_each_others_files():
    """walloc-rgb-16x (the distilled, fast decoder) and walloc-rgb-16x-hq (the larger one) have one
    encoder and one set of entropy tables: the same payload, files that either decodes, and a file of
    the previous release (made before the default decoder was distilled) decodes by name alone."""
    img = smooth_image(64, 96, seed=3)
    fast, hq = load_codec("walloc-rgb-16x"), load_codec("walloc-rgb-16x-hq")
    assert fast.config.decoder_width < hq.config.decoder_width and fast.model_id != hq.model_id
    blobs = {codec.name: codec.compress(img) for codec in (fast, hq)}
    assert read_wlc(blobs[fast.name])[1] == read_wlc(blobs[hq.name])[1]  # identical payloads
    for blob in blobs.values():
        a, b = fast.decompress(blob).data, hq.decompress(blob).data
        assert a.shape == b.shape == img.shape and not np.array_equal(a, b)
    np.testing.assert_array_equal(decompress(blobs[hq.name]).data, hq.decompress(blobs[hq.name]).data)
    previous = (GOLDEN / "walloc_shipped_16x_previous_decoder.wlc").read_bytes()
    assert read_wlc(previous)[0]["model_id"] == hq.model_id  # the hq codec is that release's 16x codec
    np.testing.assert_array_equal(decompress(previous).data, fast.decompress(blobs[fast.name]).data)


def test_files_of_container_version_1_still_decode():
    """The same file as written before the compact container (JSON header, 206 bytes more)."""
    old = (GOLDEN / "walloc_shipped_16x_parallel_container1.wlc").read_bytes()
    assert old[4] == 1 and len(old) == len(GOLDEN_LAYOUT1.read_bytes()) + 206
    np.testing.assert_array_equal(decompress(old).data, decompress(GOLDEN_LAYOUT1.read_bytes()).data)


def test_golden_parallel_file_decodes_with_other_kernels_and_one_thread():
    script = ("import sys, torch; torch.set_num_threads(1)\n"
              "from terse.walloc.codec import decompress\n"
              "for path in sys.argv[1:]:\n"
              "    decompress(open(path, 'rb').read())\n"
              "print('ok')\n")
    assert_script_prints_ok(script, str(GOLDEN_PARALLEL), str(GOLDEN_LAYOUT1), str(GOLDEN_STEP6), env=OTHER_KERNELS)
