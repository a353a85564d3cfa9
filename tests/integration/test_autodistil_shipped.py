"""The shipped AutoDistil student (pretrained/autodistil-sst2): verified, plain HF, sensible."""

from __future__ import annotations

import pytest

from terse.autodistil import load_student
from terse.autodistil.shipped import LABELS, SHIPPED, classify, load_shipped_student


def test_shipped_student_classifies_and_is_small(capsys):
    pytest.importorskip("transformers")
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size < 15e6
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
