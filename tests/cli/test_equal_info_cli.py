"""`terse text tokenize | train-m2 | eval-m2 | generate` in-process, with a tiny M1."""

from __future__ import annotations

import json

import numpy as np

from terse.cli import main

PROSE = "It is a truth universally acknowledged, that a single man in possession of a good fortune. " * 3


def test_tokenize_decode_save(tmp_path, tiny_m1_dir, capsys):
    src = tmp_path / "in.txt"
    src.write_text(PROSE + "ünïcödé ✓\n")
    ids_file = tmp_path / "ids.npy"
    assert main(["text", "tokenize", str(src), "-o", str(ids_file), "--m1", str(tiny_m1_dir), "--window-bits", "32",
                 "--token-bits", "8", "--save", str(tmp_path / "tok")]) == 0
    assert "bytes/token" in capsys.readouterr().err
    ids = np.load(ids_file)
    assert len(ids) % 4 == 0 and ids.max() < 256
    back = tmp_path / "back.txt"
    assert main(["text", "tokenize", str(ids_file), "--decode", "-o", str(back), "-t", str(tmp_path / "tok")]) == 0
    assert back.read_text() == src.read_text()
    for spec in ("bytes", "gzip"):
        assert main(["text", "tokenize", str(src), "-t", spec]) == 0


def test_tokenize_bad_input(tmp_path, tiny_m1_dir, capsys):
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    assert main(["text", "tokenize", str(binary), "--m1", str(tiny_m1_dir)]) == 1
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["text", "tokenize", str(binary), "-t", "nonsense"]) == 1
    assert "--tokenizer must be one of" in capsys.readouterr().err
    assert main(["text", "tokenize", str(binary), "--window-bits", "12", "--m1", str(tiny_m1_dir)]) == 1
    assert "window_bits" in capsys.readouterr().err
    assert main(["text", "tokenize", str(binary), "--decode", "-t", "bytes"]) == 1
    assert "not a .npy" in capsys.readouterr().err
    bad_ids = tmp_path / "bad.npy"
    np.save(bad_ids, np.array([70000, 3], dtype=np.int64))
    assert main(["text", "tokenize", str(bad_ids), "--decode", "--m1", str(tiny_m1_dir), "-o",
                 str(tmp_path / "out.txt")]) == 1
    assert "out of range" in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists()


def test_train_eval_generate(tmp_path, tiny_m1_dir, capsys):
    data = tmp_path / "text"
    for split, n in (("train", 3), ("valid", 1)):
        (data / split).mkdir(parents=True)
        for i in range(n):
            (data / split / f"doc{i}.txt").write_text(PROSE)
    out = tmp_path / "run"
    assert main(["text", "train-m2", "--data", str(data), "--out", str(out), "--m1", str(tiny_m1_dir),
                 "--train-bytes", "3000", "--seq-len", "16"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "equal_info_b16_v65536" and result["bits_per_byte"] > 0
    assert main(["text", "eval-m2", "--model", str(out / "model"), "--data", str(data / "valid"),
                 "--sequences", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["bits_per_byte"] > 0
    assert main(["text", "generate", "--model", str(out / "model"), "--tokens", "5", "--prompt", "It is"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("It is") and "steps/byte" in captured.err
    assert main(["text", "generate", "--model", str(tmp_path), "--tokens", "5"]) == 1
    assert main(["text", "train-m2", "--data", str(data), "--out", str(out), "--size", "xl", "-t", "bytes"]) == 1
    assert "size" in capsys.readouterr().err
