"""``terse walloc`` in-process: encode/decode/eval round trips and clear errors on bad input."""

import numpy as np
import pytest
from PIL import Image
from tests.fixtures.walloc import smooth_image, stereo_tone, tiny_audio_net, tiny_codec, tiny_image_net

from terse.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wm") / "walloc-cli-tiny"
    tiny_codec(tiny_image_net(), [smooth_image(32, 32, s) for s in range(2)], folder=folder)
    return folder


@pytest.fixture(scope="module")
def audio_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("am") / "walloc-cli-audio"
    tiny_codec(tiny_audio_net(), [stereo_tone(2048, seed=s) for s in range(2)], folder=folder)
    return folder


def test_help():
    for argv in (["walloc", "--help"], ["walloc", "encode", "--help"], ["walloc", "decode", "--help"],
                 ["walloc", "eval", "--help"], ["walloc", "train", "--help"],
                 ["walloc", "fit-context", "--help"]):
        assert main(argv) == 0


@pytest.mark.parametrize("storage", ["context", "webp"])
def test_image_encode_decode(tmp_path, model_dir, storage, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(smooth_image(30, 44, seed=4)).save(src)
    wlc = tmp_path / "in.wlc"
    assert main(["walloc", "encode", str(src), "-o", str(wlc), "--model", str(model_dir), "--storage", storage]) == 0
    assert "bpp" in capsys.readouterr().err
    out = tmp_path / "out.png"
    assert main(["walloc", "decode", str(wlc), "-o", str(out), "--model", str(model_dir)]) == 0
    assert Image.open(out).size == (44, 30)
    assert main(["walloc", "eval", str(src), "--model", str(model_dir)]) == 0
    assert "PSNR" in capsys.readouterr().out


def test_shipped_16x_file_decodes_with_either_decoder(tmp_path, capsys):
    src, wlc = tmp_path / "in.png", tmp_path / "in.wlc"
    Image.fromarray(smooth_image(48, 64, seed=6)).save(src)
    assert main(["walloc", "encode", str(src), "-o", str(wlc)]) == 0  # default walloc-rgb-16x
    outs = {}
    for model in (None, "walloc-rgb-16x-hq"):
        out = tmp_path / f"{model}.png"
        assert main(["walloc", "decode", str(wlc), "-o", str(out)] + (["-m", model] if model else [])) == 0
        outs[model] = np.asarray(Image.open(out))
    assert outs[None].shape == outs["walloc-rgb-16x-hq"].shape == (48, 64, 3)
    assert not np.array_equal(outs[None], outs["walloc-rgb-16x-hq"])  # another decoder, the same latents


def test_image_modes(tmp_path, model_dir, capsys):
    img = smooth_image(24, 24)
    cases = {"gray.png": Image.fromarray(img[..., 0]), "opaque.png": Image.fromarray(img).convert("RGBA")}
    for name, image in cases.items():
        image.save(tmp_path / name)
        assert main(["walloc", "encode", str(tmp_path / name), "--model", str(model_dir)]) == 0
    rgba = np.dstack([img, np.full(img.shape[:2], 100, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(img[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name, message in (("alpha.png", "transparency"), ("deep.png", "16-bit")):
        assert main(["walloc", "encode", str(tmp_path / name), "--model", str(model_dir)]) == 1
        assert message in capsys.readouterr().err
        assert not (tmp_path / (name + ".wlc")).exists()


def test_bad_files_fail_cleanly_without_output(tmp_path, model_dir, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(smooth_image(16, 16)).save(src)
    wlc = tmp_path / "in.wlc"
    assert main(["walloc", "encode", str(src), "-o", str(wlc), "--model", str(model_dir), "--quiet"]) == 0
    (tmp_path / "cut.wlc").write_bytes(wlc.read_bytes()[:-5])
    (tmp_path / "junk.png").write_bytes(b"not an image")
    for argv in (["walloc", "decode", str(tmp_path / "cut.wlc"), "-o", str(tmp_path / "x.png"), "--model", str(model_dir)],
                 ["walloc", "encode", str(tmp_path / "junk.png"), "--model", str(model_dir)],
                 ["walloc", "encode", str(tmp_path / "missing.png")],
                 ["walloc", "decode", str(wlc), "-o", str(tmp_path / "x.wav"), "--model", str(model_dir)]):
        assert main(argv) == 1
        assert capsys.readouterr().err.startswith("terse: error:")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.wav").exists()
    assert not (tmp_path / "junk.png.wlc").exists()


def test_audio_encode_decode_and_refusals(tmp_path, audio_model_dir, capsys):
    import soundfile

    clip = stereo_tone(3001)
    soundfile.write(tmp_path / "in.wav", clip.T, 8000)
    wlc = tmp_path / "in.wlc"
    assert main(["walloc", "encode", str(tmp_path / "in.wav"), "-o", str(wlc), "--model", str(audio_model_dir)]) == 0
    assert "kbps" in capsys.readouterr().err
    assert main(["walloc", "decode", str(wlc), "-o", str(tmp_path / "out.wav"), "--model", str(audio_model_dir)]) == 0
    back, rate = soundfile.read(tmp_path / "out.wav")
    assert rate == 8000 and back.shape == (3001, 2)
    soundfile.write(tmp_path / "mono.wav", clip[0], 8000)
    soundfile.write(tmp_path / "fast.wav", clip.T, 16000)
    for name, message in (("mono.wav", "channel"), ("fast.wav", "8000 Hz")):
        assert main(["walloc", "encode", str(tmp_path / name), "--model", str(audio_model_dir)]) == 1
        assert message in capsys.readouterr().err


def test_train_tiny_then_resume_and_use(tmp_path, capsys):
    data = tmp_path / "imgs"
    data.mkdir()
    for s in range(3):
        Image.fromarray(smooth_image(40, 48, seed=s)).save(data / f"{s}.png")
    out = tmp_path / "run"
    argv = ["walloc", "train", "--modality", "image", "--data", str(data), "--out", str(out), "--steps", "2",
            "--batch-size", "2", "--crop", "32", "--decoder-width", "8", "--decoder-blocks", "1", "--checkpoint-every", "1"]
    assert main(argv) == 0
    assert "step 2/2" in capsys.readouterr().out
    assert (out / "checkpoint" / "trainer_state.json").is_file() and (out / "model" / "manifest.json").is_file()
    assert main(argv) == 0  # resumes: nothing left to train, re-exports
    src = data / "0.png"
    assert main(["walloc", "encode", str(src), "-o", str(tmp_path / "x.wlc"), "--model", str(out / "model"), "-q"]) == 0
    assert main(["walloc", "train", "--modality", "image", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 1
    assert main(["walloc", "train", "--modality", "text", "--out", str(out)]) == 1


def test_closed_form_audio_codec(tmp_path, capsys):
    import soundfile

    data = tmp_path / "clips"
    data.mkdir()
    for s in range(2):
        soundfile.write(data / f"{s}.wav", stereo_tone(8192, rate=44100, seed=s).T, 44100)
    out = tmp_path / "lin"
    assert main(["walloc", "train", "--modality", "audio", "--data", str(data), "--out", str(out), "--levels", "4",
                 "--latent-dim", "8", "--decoder-blocks", "0", "--crop", "1024", "--closed-form"]) == 0
    assert "closed-form" in capsys.readouterr().out
    soundfile.write(tmp_path / "t.wav", stereo_tone(3000, rate=44100, seed=5).T, 44100)
    assert main(["walloc", "eval", str(tmp_path / "t.wav"), "--model", str(out / "model")]) == 0
    assert "SNR" in capsys.readouterr().out


def test_fit_context_then_encode_uses_parallel_storage(tmp_path, capsys):
    import shutil

    from terse.walloc.codec import read_wlc

    folder = tmp_path / "walloc-fit"
    tiny_codec(tiny_image_net(), [smooth_image(32, 32, s) for s in range(2)], folder=folder)
    images = tmp_path / "images"
    images.mkdir()
    for s in range(3):
        Image.fromarray(smooth_image(64, 80, seed=s)).save(images / f"{s}.png")
    assert main(["walloc", "fit-context", str(folder), "--data", str(images), "--steps", "20", "--count", "3"]) == 0
    assert "parallel context tables" in capsys.readouterr().out
    src = tmp_path / "in.png"
    Image.fromarray(smooth_image(30, 44, seed=4)).save(src)
    assert main(["walloc", "encode", str(src), "--model", str(folder)]) == 0
    assert read_wlc((tmp_path / "in.png.wlc").read_bytes())[0]["storage"] == "parallel"
    shutil.rmtree(images)
    assert main(["walloc", "fit-context", str(folder), "--data", str(images)]) != 0
