"""The shipped AutoDistil students (pretrained/autodistil-sst2*): verified, plain HF, sensible."""

from __future__ import annotations

import pytest

from terse.autodistil import load_student
from terse.autodistil.shipped import LABELS, PRETRAINED, SHIPPED, SHIPPED_NAMES, classify, load_shipped_student


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_every_shipped_student_names_its_classes_for_pipeline(name):
    from transformers import pipeline

    assert sum(p.stat().st_size for p in (PRETRAINED / name).iterdir()) < 25e6
    student = load_student(name)
    assert student.info["sst2_dev_accuracy"] > 75 and student.info["macs_fraction"] <= 0.25
    classify_text = pipeline("text-classification", model=str(PRETRAINED / name))
    out = classify_text(["a wonderful , moving and funny film .", "a dull , tedious and ugly mess ."])
    assert [o["label"] for o in out] == ["positive", "negative"]


def test_shipped_student_classifies(capsys):
    pytest.importorskip("transformers")
    texts = ["a wonderful , moving and funny film .", "a dull , tedious and ugly mess ."]
    student = load_student()
    assert student.model.config.model_type == "bert" and student.model.config.hidden_size == student.subnet.hidden_size
    assert student.labels == LABELS
    assert [label for label, _ in student.classify(texts)] == ["positive", "negative"]
    assert student.predict(texts).shape == (2, 2)
    model, tokenizer, info = load_shipped_student()  # the tuple form the demo uses
    assert info == student.info and classify(model, tokenizer, texts) == student.classify(texts)
    from terse.cli.demo import autodistil_demo

    autodistil_demo()
    assert "SST-2 dev accuracy" in capsys.readouterr().out


def test_tampered_shipped_student_is_rejected(tmp_path):
    import shutil

    from terse.core.errors import ArtifactError

    copy = tmp_path / "student"
    shutil.copytree(SHIPPED, copy)
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"num_hidden_layers": 4', '"num_hidden_layers": 3'))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_shipped_student(copy)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_student(copy)
