"""Codecs derived from a saved one (decoder fine-tuning, refitted entropy tables): a new
folder, the source untouched, the latents and parallel bitstreams unchanged, exact resume."""

import numpy as np
import pytest
import torch
from PIL import Image
from tests.fixtures.walloc import smooth_image, tiny_codec, tiny_image_net

from terse.cli import main
from terse.core.errors import ConfigError, FormatError
from terse.walloc.codec import load_codec, save_parallel_tables
from terse.walloc.derive import DecoderFinetuneConfig, finetune_decoder, refit_entropy_tables
from terse.walloc.parallel_context import fit_parallel_context


@pytest.fixture()
def source(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    images = [smooth_image(64, 80, seed=s) for s in range(3)]
    for s, image in enumerate(images):
        Image.fromarray(image).save(data / f"{s}.png")
    codec = tiny_codec(tiny_image_net(), images, folder=tmp_path / "src")
    latents = [codec.encode_latent(x)[0] for x in images]
    save_parallel_tables(codec, fit_parallel_context(latents, codec.net.bottleneck.max_int, steps=20, hidden=16))
    return codec, data, images


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_finetune_keeps_latents_and_resumes_exactly(source, tmp_path):
    codec, data, images = source
    before = _files(codec.folder)
    config = DecoderFinetuneConfig(steps=4, batch_size=2, crop=32, checkpoint_every=2, monitor_crops=2, warmup_steps=1)
    full = finetune_decoder(codec.folder, data, tmp_path / "full", config)
    assert _files(codec.folder) == before  # the source is never modified
    derived = load_codec(tmp_path / "full" / "model")
    assert derived.model_id != codec.model_id and derived.parallel_folder is not None
    for image in images:
        assert np.array_equal(derived.encode_latent(image)[0], codec.encode_latent(image)[0])
        latent = codec.encode_latent(image)[0]
        assert derived.parallel[0].encode(latent) == codec.parallel[0].encode(latent)
    assert not torch.equal(derived.net.decoder_out.weight, codec.net.decoder_out.weight)
    # stopped after its first checkpoint, then rerun: the same weights as the uninterrupted run
    finetune_decoder(codec.folder, data, tmp_path / "split", config, max_minutes=0)
    resumed = finetune_decoder(codec.folder, data, tmp_path / "split", config)
    assert resumed["step"] == full["step"] == 4 and resumed["model_id"] == full["model_id"]
    (tmp_path / "other" / "model").mkdir(parents=True)  # a folder that is not this run's
    with pytest.raises(ConfigError, match="already exists"):
        finetune_decoder(codec.folder, data, tmp_path / "other", config)


def test_distilled_student_decoder_reads_the_source_files(source, tmp_path):
    codec, data, images = source
    config = DecoderFinetuneConfig(steps=3, batch_size=2, crop=32, checkpoint_every=3, monitor_crops=2, warmup_steps=1,
                                   decoder_width=8, decoder_blocks=1, teacher_weight=1.0, rounded_latents=True)
    state = finetune_decoder(codec.folder, data, tmp_path / "student", config)
    student = load_codec(tmp_path / "student" / "model")
    assert (student.config.decoder_width, student.config.decoder_blocks) == (8, 1)
    assert student.model_id == state["model_id"] and codec.model_id in student.reads_model_ids
    assert torch.equal(student.net.encoder.weight, codec.net.encoder.weight)
    for storage in ("parallel", "context", "png"):
        blob = codec.compress(images[0], storage=storage)  # a file of the source codec
        out = student.decompress(blob).data
        assert out.shape == images[0].shape and np.abs(out.astype(int) - images[0]).mean() < 40
        assert student.compress(images[0], storage=storage) != blob  # its own files name the student
    grandchild = finetune_decoder(tmp_path / "student" / "model", data, tmp_path / "again",
                                  DecoderFinetuneConfig(steps=1, batch_size=2, crop=32, monitor_crops=2))
    again = load_codec(tmp_path / "again" / "model")
    assert set(again.reads_model_ids) == {codec.model_id, student.model_id}
    assert grandchild["step"] == 1
    # the chain of derivations stays in the manifest, oldest first
    assert [r["steps_done"] for r in again.info["earlier_decoder_finetunes"]] == [3]
    assert again.info["decoder_finetune"]["source_id"] == student.model_id


def test_a_coarser_latent_step_makes_a_codec_with_its_own_files(source, tmp_path):
    """--latent-step: the source's encoder, latents quantized 4x coarser (max_int 127 -> 32), the
    parallel context model fitted afresh; files round-trip and are smaller; the source's are not
    read; no wavefront tables, so the context storage is a clear error."""
    codec, data, images = source
    config = DecoderFinetuneConfig(steps=2, batch_size=2, crop=32, checkpoint_every=2, monitor_crops=2, warmup_steps=1,
                                   rounded_latents=True, latent_step=4, fit_steps=20)
    state = finetune_decoder(codec.folder, data, tmp_path / "coarse", config)
    coarse = load_codec(tmp_path / "coarse" / "model")
    assert coarse.model_id == state["model_id"] and coarse.reads_model_ids == ()
    assert coarse.config.latent_step == 4 and coarse.net.bottleneck.max_int == 32
    assert coarse.name == f"{codec.name}-step4" and coarse.parallel_folder is not None
    assert torch.equal(coarse.net.encoder.weight, codec.net.encoder.weight)
    fine_latent, coarse_latent = codec.encode_latent(images[0])[0], coarse.encode_latent(images[0])[0]
    assert np.abs(coarse_latent).max() <= 32
    assert np.abs(coarse_latent * 4 - fine_latent).max() <= 2.5  # the same companded values, coarser rounding
    for storage in ("parallel", "png"):
        blob = coarse.compress(images[0], storage=storage)
        assert np.array_equal(coarse.decompress(blob).data, coarse.decode_latent(coarse_latent, [64, 80]))
        assert len(blob) < len(codec.compress(images[0], storage=storage))
    with pytest.raises(FormatError, match="parallel storage"):
        coarse.compress(images[0], storage="context")
    with pytest.raises(ConfigError, match="teacher"):
        finetune_decoder(codec.folder, data, tmp_path / "t", DecoderFinetuneConfig(latent_step=2, teacher_weight=1))


@pytest.mark.parametrize("bad", [{"decoder_width": -1}, {"decoder_blocks": 2}, {"teacher_weight": -0.5},
                                 {"latent_step": 0.5}, {"fit_steps": -1}])
def test_decoder_config_is_validated(bad):
    with pytest.raises(ConfigError):
        DecoderFinetuneConfig(**bad)


def test_refit_writes_a_new_codec_and_refuses_the_source(source, tmp_path):
    codec, data, images = source
    before = _files(codec.folder)
    new_id = refit_entropy_tables(codec.folder, data, tmp_path / "refit", steps=5, count=3)
    assert _files(codec.folder) == before
    derived = load_codec(tmp_path / "refit")
    assert derived.model_id == new_id != codec.model_id
    assert derived.reads_model_ids == ()  # other entropy tables: the source's context files are not its own
    blob = derived.compress(images[0], storage="context")
    assert load_codec(tmp_path / "refit").decompress(blob).data.shape == images[0].shape
    with pytest.raises(ConfigError, match="source codec"):
        refit_entropy_tables(codec.folder, data, codec.folder, overwrite=True)
    with pytest.raises(ConfigError, match="already exists"):
        refit_entropy_tables(codec.folder, data, tmp_path / "refit", steps=5, count=3)


def test_cli_commands(source, tmp_path, capsys):
    codec, data, _ = source
    out = tmp_path / "run"
    assert main(["walloc", "finetune-decoder", str(codec.folder), "-o", str(out), "--data", str(data), "--steps", "2",
                 "--batch-size", "2", "--crop", "32"]) == 0
    assert "monitor PSNR" in capsys.readouterr().out and (out / "model" / "parallel" / "manifest.json").is_file()
    assert main(["walloc", "refit-entropy", str(codec.folder), "-o", str(out / "model"), "--data", str(data)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_refitted_tables_carry_to_a_derived_codec_with_the_earlier_ones(source, tmp_path, capsys):
    """`terse walloc fit-context DERIVED --from SOURCE` after the source's tables were refitted:
    the derived codec codes with the new tables and still reads files coded with the old ones."""
    codec, data, images = source
    state = finetune_decoder(codec.folder, data, tmp_path / "student",
                             DecoderFinetuneConfig(steps=1, batch_size=2, crop=32, monitor_crops=2))
    student_folder = tmp_path / "student" / "model"
    old_blob = codec.compress(images[0])
    latents = [codec.encode_latent(x)[0] for x in images]
    new_id = save_parallel_tables(codec, fit_parallel_context(latents, codec.net.bottleneck.max_int, steps=20,
                                                              hidden=8, seed=1))
    assert list(codec.earlier_parallel_ids) == [load_codec(student_folder).parallel[1]]
    main(["walloc", "fit-context", str(student_folder), "--from", str(codec.folder)])
    assert new_id in capsys.readouterr().out
    student = load_codec(student_folder)
    assert student.model_id == state["model_id"] and student.parallel[1] == new_id
    assert student.compress(images[0]) != old_blob
    np.testing.assert_array_equal(student.decompress(old_blob).data, student.decompress(student.compress(images[0])).data)
