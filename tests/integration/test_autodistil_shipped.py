"""The shipped AutoDistil student (pretrained/autodistil-sst2): verified, plain HF, sensible."""

from __future__ import annotations

import pytest

from terse.autodistil.shipped import SHIPPED, classify, load_shipped_student


def test_shipped_student_classifies_and_is_small(capsys):
    pytest.importorskip("transformers")
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size < 15e6
    model, tokenizer, info = load_shipped_student()
    assert model.config.model_type == "bert" and model.config.hidden_size == info["subnet"]["hidden_size"]
    labels = classify(model, tokenizer, ["a wonderful , moving and funny film .", "a dull , tedious and ugly mess ."])
    assert [label for label, _ in labels] == ["positive", "negative"]
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
