"""The AutoDistil objects: Supernet (save/load, score, search, extract) and Student, on tiny
models built in code; the package's lazy exports."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from tests.fixtures.autodistil import make_corpus, make_tiny_teacher, tiny_bert_config

import terse.autodistil as autodistil
from terse.autodistil import (
    ElasticBert,
    NoSubnetError,
    SearchSpace,
    Student,
    SubnetConfig,
    Supernet,
    TeacherShape,
    load_student,
    load_supernet,
)
from terse.core.errors import ArtifactError, ConfigError

SPACE = SearchSpace("t", (2, 4), (2, 4), (1.0, 2.0), 8)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny")


@pytest.fixture(scope="module")
def saved(teacher_dir, tmp_path_factory):
    """A supernet (perturbed teacher copy) saved with the teacher's tokenizer."""
    from terse.autodistil.teacher import load_teacher

    hf, tokenizer, _ = load_teacher(teacher_dir)
    net = ElasticBert.from_hf_bert(hf).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("sn") / "supernet"
    Supernet(net, SPACE, tokenizer, info={"note": "test"}).save(folder)
    return folder, net


def test_save_load_round_trip_and_extract_by_name(saved, tmp_path):
    from transformers import AutoModel

    folder, net = saved
    supernet = load_supernet(folder)
    assert supernet.space == SPACE and supernet.shape == net.shape and supernet.info["note"] == "test"
    for a, b in zip(net.state_dict().values(), supernet.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert "space 't' (8 subnets)" in repr(supernet)
    supernet.extract("L2-A2-H16-F32", tmp_path / "student")
    student = AutoModel.from_pretrained(tmp_path / "student", local_files_only=True).eval()
    ids = torch.randint(5, 30, (2, 10))
    with torch.no_grad():
        ref = net(ids, torch.ones_like(ids), SubnetConfig(2, 2, 16, 32)).hidden
        out = student(input_ids=ids).last_hidden_state
    assert (ref - out).abs().max().item() < 1e-5
    assert (tmp_path / "student" / "tokenizer.json").is_file()
    from terse.autodistil import verify_student

    info = verify_student(tmp_path / "student")["info"]
    assert info["supernet_sha256"] == supernet.manifest["files"]["model.safetensors"]
    assert supernet.costs("L2-A2-H16-F32") == supernet.costs(SubnetConfig(2, 2, 16, 32))


def test_score_and_search_against_a_teacher_folder(saved, teacher_dir):
    folder, _ = saved
    supernet = load_supernet(folder)
    corpus = make_corpus(folder.parent / "corpus", sentences=40)
    result = supernet.search(teacher_dir, corpus=corpus, heldout_tokens=128, seq_len=16,
                             max_macs_fraction=0.5)
    assert set(result.scores) == set(SPACE.subnets())
    assert supernet.costs(result.best)["macs"] <= result.constraint.max_macs
    assert result.best == min((s for s in result.scores if supernet.costs(s)["macs"] <= result.constraint.max_macs),
                              key=result.scores.get)
    assert result.to_dict()["best"]["name"] == result.best.name and len(result.to_dict()["rows"]) == 8
    with pytest.raises(NoSubnetError, match="no subnet of the 8"):
        supernet.select(result.scores, supernet.constraint(max_macs=10))


def test_supernet_refuses_mismatches():
    shape = TeacherShape(4, 4, 32, 64, 50, 64)
    net = ElasticBert(shape)
    with pytest.raises(ConfigError, match="head size"):
        Supernet(net, SearchSpace("bad", (2,), (2,), (1.0,), 16))
    bare = Supernet(net)
    with pytest.raises(ConfigError, match="records no search space"):
        bare.subnets()
    other = ElasticBert(TeacherShape(2, 4, 32, 64, 50, 64))
    with pytest.raises(ConfigError, match="not the one this supernet was made from"):
        Supernet(copy.deepcopy(net), SPACE).score(other, blocks=torch.randint(5, 50, (2, 8)))
    with pytest.raises(ConfigError, match="no tokenizer"):
        Supernet(copy.deepcopy(net), SPACE).score(net)
    with pytest.raises(ConfigError, match="not of the form"):
        bare.extract("big", "/nonexistent")
    with pytest.raises(ConfigError, match="larger than the teacher"):
        bare.extract("L9-A2-H16-F16", "/nonexistent")
    with pytest.raises(ConfigError, match="relation heads"):
        from terse.autodistil.supernet import relation_logits

        relation_logits(torch.zeros(1, 4, 8), 16)


def test_load_supernet_rejects_a_folder_that_is_not_one(tmp_path):
    with pytest.raises(ArtifactError):
        load_supernet(tmp_path)


def test_student_from_a_classifier_folder(teacher_dir, tmp_path):
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(0)
    BertForSequenceClassification(tiny_bert_config(num_labels=2)).save_pretrained(tmp_path / "clf")
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(tmp_path / "clf")
    student = load_student(tmp_path / "clf")  # no manifest: a plain `finetune --out` folder
    assert isinstance(student, Student) and student.subnet is None
    assert student.labels == ("LABEL_0", "LABEL_1")
    out = student.classify(["the cat sat ."])
    assert len(out) == 1 and out[0][0] in student.labels
    pairs = student.predict([("the cat sat", "the dog sat"), ("yes", "no")])
    assert pairs.shape == (2, 2)
    with pytest.raises(ArtifactError, match="config.json missing"):
        load_student(tmp_path / "nothing")
    BertForSequenceClassification(tiny_bert_config(num_labels=1)).save_pretrained(tmp_path / "reg")
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(tmp_path / "reg")
    with pytest.raises(ConfigError, match="regression"):
        load_student(tmp_path / "reg").classify(["the cat"])


def test_package_exports_are_lazy_and_resolve():
    assert set(autodistil.__all__) <= set(dir(autodistil))
    for name in autodistil.__all__:
        assert getattr(autodistil, name) is not None, name
    code = "import sys, terse.autodistil; print('transformers' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
