import os
import subprocess
import sys

import pytest

from terse.cli import main


@pytest.fixture()
def sample(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_bytes("Plain text with ünïcödé, for the CLI.\n".encode() * 40)
    return path


def test_help_everywhere(capsys):
    for argv in (["--help"], ["text", "--help"], ["text", "compress", "--help"], ["text", "decompress", "--help"],
                 ["text", "train-m1", "--help"], ["demo", "--help"]):
        assert main(argv) == 0
    assert "compress" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["no-such-command"], ["text", "compress"], ["text", "compress", "x", "--no-such-flag"],
                                  ["walloc", "encode", "--level", "x"]])
def test_usage_errors_are_messages_not_tracebacks(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Error:" in err


def test_group_without_command_shows_help_without_traceback():
    run = subprocess.run([sys.executable, "-m", "terse.cli.main", "text"], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "compress" in run.stdout + run.stderr


def test_compress_decompress_round_trip(tmp_path, sample, tiny_m1_dir, capsys):
    assert main(["text", "compress", str(sample), "--model", str(tiny_m1_dir)]) == 0
    packed = tmp_path / "sample.txt.trs"
    assert packed.exists()
    original = sample.read_bytes()
    sample.unlink()
    assert main(["text", "decompress", str(packed), "--model", str(tiny_m1_dir)]) == 0
    assert sample.read_bytes() == original
    assert "bits/byte" in capsys.readouterr().err


@pytest.mark.parametrize("options", [["--level", "1"], ["--level", "0"], ["--model", "none"]])
def test_levels_round_trip(tmp_path, sample, tiny_m1_dir, options, capsys):
    if "0" in options:
        options = [*options, "--model", str(tiny_m1_dir)]  # the static level with the tiny model
    out = tmp_path / "s.trs"
    assert main(["text", "compress", str(sample), "-o", str(out), *options]) == 0
    assert main(["text", "decompress", str(out), "-o", str(tmp_path / "back"), "--model", str(tiny_m1_dir)]
                if "0" in options else ["text", "decompress", str(out), "-o", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back").read_bytes() == sample.read_bytes()


def test_bad_level_and_model_none_without_mixing(tmp_path, sample, capsys):
    assert main(["text", "compress", str(sample), "--level", "7"]) == 1
    assert "--level must be one of" in capsys.readouterr().err
    assert main(["text", "compress", str(sample), "--level", "0", "--model", "none"]) == 1
    assert "needs context mixing" in capsys.readouterr().err
    assert not (tmp_path / "sample.txt.trs").exists()


def test_existing_output_needs_force(tmp_path, sample, tiny_m1_dir, capsys):
    out = tmp_path / "out.trs"
    out.write_bytes(b"precious")
    assert main(["text", "compress", str(sample), "-o", str(out), "--model", str(tiny_m1_dir)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["text", "compress", str(sample), "-o", str(out), "--model", str(tiny_m1_dir), "--force"]) == 0
    assert out.read_bytes().startswith(b"TRSE")


@pytest.mark.parametrize("content", [b"", b"random junk that is not terse" * 3, b"TRSE\x01\x00garbage"])
def test_bad_input_one_line_error_and_no_output(tmp_path, content, tiny_m1_dir, capsys):
    bad = tmp_path / "bad.trs"
    bad.write_bytes(content)
    assert main(["text", "decompress", str(bad), "--model", str(tiny_m1_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("terse: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.trs"]


def test_truncated_file_leaves_no_output(tmp_path, sample, tiny_m1_dir, capsys):
    assert main(["text", "compress", str(sample), "--model", str(tiny_m1_dir)]) == 0
    packed = tmp_path / "sample.txt.trs"
    packed.write_bytes(packed.read_bytes()[:-7])
    out = tmp_path / "restored.txt"
    assert main(["text", "decompress", str(packed), "-o", str(out), "--model", str(tiny_m1_dir)]) == 1
    assert not out.exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_missing_input_and_bad_names(tmp_path, tiny_m1_dir, capsys):
    assert main(["text", "compress", str(tmp_path / "nope.txt"), "--model", str(tiny_m1_dir)]) == 1
    assert "no such file" in capsys.readouterr().err
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    assert main(["text", "decompress", str(plain)]) == 1
    assert "does not end in .trs" in capsys.readouterr().err
    assert main(["text", "compress", str(plain), "--model", str(tmp_path / "no-model")]) == 1
    assert "no M1 model" in capsys.readouterr().err


def test_stdin_stdout_pipeline(tmp_path, tiny_m1_dir):
    data = "piped text, ÿ and \x00 bytes\n".encode() * 20
    env = {**os.environ, "TERSE_PROGRESS": "0"}
    run = [sys.executable, "-m", "terse.cli.main"]
    packed = subprocess.run([*run, "text", "compress", "-", "--model", str(tiny_m1_dir)], input=data,
                            capture_output=True, env=env, check=True).stdout
    assert packed.startswith(b"TRSE")
    restored = subprocess.run([*run, "text", "decompress", "-", "--model", str(tiny_m1_dir)], input=packed,
                              capture_output=True, env=env, check=True).stdout
    assert restored == data


def test_only_coding_commands_follow_the_load(monkeypatch, capsys):
    cli_main = sys.modules["terse.cli.main"]  # terse.cli.main is also the name of the function
    calls = []
    monkeypatch.setattr(cli_main, "follow_load_at_start", lambda: calls.append(1))
    main(["text", "compress", "--help"])
    main(["-v", "walloc", "decode", "--help"])
    assert len(calls) == 2
    main(["text", "train-m1", "--help"])
    assert len(calls) == 2
