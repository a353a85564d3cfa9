"""``terse autodistil`` end to end on a tiny teacher, corpus and GLUE folder (in-process, tmp_path)."""

from __future__ import annotations

import json

import pytest
import torch
from tests.fixtures.autodistil import make_corpus, make_glue, make_tiny_teacher

from terse.cli.main import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("autodistil")
    return {"teacher": make_tiny_teacher(root / "teacher"), "corpus": make_corpus(root / "corpus"),
            "glue": make_glue(root / "glue"), "root": root}


def test_train_search_extract_finetune_eval(tiny, capsys):
    from transformers import AutoModel

    root = tiny["root"]
    sn = root / "sn"
    assert main(["autodistil", "train-supernet", "--out", str(sn), "--space", "tiny", "--teacher", str(tiny["teacher"]),
                 "--corpus", str(tiny["corpus"]), "--corpus-tokens", "2000", "--steps", "3", "--batch-size", "4",
                 "--seq-len", "16", "--device", "cpu"]) == 0
    assert (sn / "supernet" / "manifest.json").is_file()
    scores = root / "scores.json"
    assert main(["autodistil", "search", "--supernet", str(sn / "supernet"), "--teacher", str(tiny["teacher"]),
                 "--corpus", str(tiny["corpus"]), "--heldout-tokens", "256", "--seq-len", "16",
                 "--max-macs-fraction", "0.5", "--out", str(scores), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "selected under MACs <=" in out
    chosen = out.strip().splitlines()[-1].split(": ")[1].split(" ")[0]
    from terse.autodistil.space import SearchSpace

    saved = json.loads(scores.read_text())
    rows = saved["rows"]
    assert len(rows) == len(SearchSpace.from_dict(saved["space"]).subnets()) > 4
    assert any(r["pareto"] for r in rows) and not all(r["pareto"] for r in rows)
    student = root / "student"
    assert main(["autodistil", "extract", "--supernet", str(sn / "supernet"), "--subnet", chosen, "--out", str(student)]) == 0
    model = AutoModel.from_pretrained(student, local_files_only=True)
    assert model.config.num_hidden_layers == int(chosen.split("-")[0][1:])
    clf = root / "clf"
    assert main(["autodistil", "finetune", "--model", str(student), "--task", "sst-2", "--glue", str(tiny["glue"]),
                 "--epochs", "1", "--out", str(clf), "--device", "cpu"]) == 0
    assert "best-epoch (optimistic)" in capsys.readouterr().out
    assert main(["autodistil", "eval", "--model", str(clf), "--task", "SST-2", "--glue", str(tiny["glue"]),
                 "--device", "cpu"]) == 0
    assert "SST-2 dev: accuracy" in capsys.readouterr().out
    torch.set_num_threads(1)


def test_bad_inputs_are_one_line_errors(tiny, tmp_path, capsys):
    sn = tiny["root"] / "sn" / "supernet"
    if not sn.is_dir():
        pytest.skip("needs the supernet of the end-to-end test")
    cases = [
        (["autodistil", "search", "--supernet", str(sn), "--teacher", str(tiny["teacher"]), "--corpus", str(tiny["corpus"]),
          "--heldout-tokens", "128", "--seq-len", "16", "--max-macs", "10", "--device", "cpu"], "no subnet of the"),
        (["autodistil", "extract", "--supernet", str(sn), "--subnet", "big", "--out", str(tmp_path / "x")], "not of the form"),
        (["autodistil", "extract", "--supernet", str(sn), "--subnet", "L9-A2-H16-F16", "--out", str(tmp_path / "x")],
         "larger than the teacher"),
        (["autodistil", "finetune", "--model", str(tiny["teacher"]), "--task", "MNLI", "--glue", str(tiny["glue"])],
         "unknown GLUE task"),
        (["autodistil", "eval", "--model", str(tmp_path), "--task", "SST-2", "--glue", str(tiny["glue"])],
         "not a Hugging Face model folder"),
        (["autodistil", "train-supernet", "--out", str(tmp_path / "o"), "--space", "huge", "--teacher", str(tiny["teacher"]),
          "--corpus", str(tiny["corpus"])], "unknown space"),
        (["autodistil", "extract", "--supernet", str(tmp_path), "--subnet", "L1-A1-H8-F8", "--out", str(tmp_path / "x")],
         "manifest.json is missing"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_task_distillation_and_package_for_pipeline(tiny, tmp_path, capsys):
    """finetune --teacher fine-tunes the teacher once (cached) and distils from it; package
    writes a student that transformers' pipeline names the classes of."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from terse.autodistil import load_student

    cache = tmp_path / "cache"
    common = ["--task", "SST-2", "--glue", str(tiny["glue"]), "--epochs", "1", "--device", "cpu",
              "--teacher", str(tiny["teacher"]), "--teacher-cache", str(cache)]
    clf = tmp_path / "clf"
    assert main(["autodistil", "finetune", "--model", str(tiny["teacher"]), "--out", str(clf), *common]) == 0
    first = capsys.readouterr().out
    assert "task teacher:" in first and len(list(cache.iterdir())) == 1
    assert main(["autodistil", "finetune", "--model", str(tiny["teacher"]), "--distill-weight", "1.0",
                 "--augment-examples", "16", "--relation-weight", "1.0", *common]) == 0
    assert len(list(cache.iterdir())) == 1   # the cached teacher was reused
    capsys.readouterr()
    student = tmp_path / "student"
    assert main(["autodistil", "package", "--model", str(clf), "--out", str(student),
                 "--labels", "negative,positive"]) == 0
    assert "labels negative, positive" in capsys.readouterr().out
    model = AutoModelForSequenceClassification.from_pretrained(student, local_files_only=True)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    classify = pipeline("text-classification", model=model,
                        tokenizer=AutoTokenizer.from_pretrained(student, local_files_only=True))
    assert classify("the movie is very good .")[0]["label"] in ("negative", "positive")
    assert load_student(student).labels == ("negative", "positive")
    for argv, message in [
        (["autodistil", "package", "--model", str(clf), "--out", str(student)], "exists"),
        (["autodistil", "package", "--model", str(clf), "--out", str(tmp_path / "x"), "--labels", "a,b,c"],
         "3 labels given"),
        (["autodistil", "finetune", "--model", str(tiny["teacher"]), "--task", "STS-B", "--glue", str(tiny["glue"]),
          "--epochs", "1", "--device", "cpu", "--teacher", str(clf)], "not a STS-B classifier"),
        (["autodistil", "finetune", "--model", str(tiny["teacher"]), "--task", "SST-2", "--glue", str(tiny["glue"]),
          "--epochs", "1", "--device", "cpu", "--augment-examples", "16"], "labelled by the teacher"),
        (["autodistil", "finetune", "--model", str(tiny["teacher"]), "--task", "SST-2", "--glue", str(tiny["glue"]),
          "--epochs", "1", "--device", "cpu", "--relation-weight", "1"], "relation loss needs it"),
        (["autodistil", "finetune", "--model", str(tiny["teacher"]), "--task", "SST-2", "--glue", str(tiny["glue"]),
          "--epochs", "1", "--device", "cpu", "--teacher", "default", "--relation-weight", "-1"], ">= 0"),
    ]:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "x").exists()


def test_standalone_distillation_of_one_subnet(tiny, tmp_path, capsys):
    out = tmp_path / "standalone"
    assert main(["autodistil", "train-supernet", "--out", str(out), "--subnet", "L2-A2-H16-F32", "--teacher",
                 str(tiny["teacher"]), "--corpus", str(tiny["corpus"]), "--stream", "--steps", "2", "--batch-size", "4",
                 "--seq-len", "16", "--device", "cpu"]) == 0
    assert "standalone-L2-A2-H16-F32 (1 subnets)" in capsys.readouterr().out
    assert main(["autodistil", "train-supernet", "--out", str(tmp_path / "bad"), "--subnet", "L2-A2-H20-F32",
                 "--teacher", str(tiny["teacher"]), "--corpus", str(tiny["corpus"]), "--device", "cpu"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_continued_distillation_starts_from_the_earlier_weights(tiny, tmp_path, capsys):
    from terse.autodistil import load_supernet

    def train(out, steps, teacher=tiny["teacher"], *extra):
        return main(["autodistil", "train-supernet", "--out", str(out), "--steps", str(steps), "--subnet",
                     "L2-A2-H16-F32", "--teacher", str(teacher), "--corpus", str(tiny["corpus"]), "--stream",
                     "--batch-size", "4", "--seq-len", "16", "--device", "cpu", *extra])

    first, second = tmp_path / "first", tmp_path / "second"
    assert train(first, 3) == 0
    assert train(second, 2, tiny["teacher"], "--seed", "1", "--init-from", str(first / "supernet")) == 0
    earlier, later = load_supernet(first / "supernet"), load_supernet(second / "supernet")
    assert later.info["earlier_runs"][0]["tokens"] == earlier.info["tokens"] == 3 * 4 * 16
    assert later.info["tokens_total"] == (3 + 2) * 4 * 16
    assert later.info["distill"]["seed"] == 1
    # the continued run trained on: its weights moved on from the earlier run's
    before, after = earlier.net.state_dict(), later.net.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in after)
    capsys.readouterr()
    other = make_tiny_teacher(tmp_path / "other-teacher", hidden_size=48)
    assert train(tmp_path / "bad", 1, other, "--init-from", str(first / "supernet")) == 1
    err = capsys.readouterr().err
    assert "another teacher shape" in err and "Traceback" not in err
