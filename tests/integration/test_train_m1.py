import json

from terse.cli import main
from terse.nn.gpt import GPTConfig
from terse.nn.train_lm import TrainConfig
from terse.textcomp.compressor import CoderParams, compress, decompress
from terse.textcomp.model import load_byte_lm
from terse.textcomp.training import train_m1


def _corpus(tmp_path):
    text = tmp_path / "text"
    (text / "train").mkdir(parents=True)
    (text / "valid").mkdir()
    (text / "train" / "a.txt").write_text("the cat sat on the mat. " * 200)
    (text / "train" / "b.txt").write_text("a dog ran in the fog. " * 200)
    (text / "valid" / "c.txt").write_text("the dog sat in the fog. " * 40)
    return text


def test_training_learns_resumes_and_exports_a_usable_model(tmp_path):
    data = _corpus(tmp_path)
    model_config = GPTConfig(d_model=32, n_layers=1, n_heads=2, window=16)
    config = TrainConfig(seq_len=32, batch_size=8, max_steps=30, learning_rate=3e-3, warmup_steps=5,
                         eval_every=15, eval_sequences=8, checkpoint_every=10, mixed_precision="no")
    run = tmp_path / "run"
    first = train_m1(data, run, model_config, config.replace(max_steps=15))
    assert first["step"] == 15
    resumed = train_m1(data, run, model_config, config)
    assert resumed["step"] == 30 and resumed["tokens_seen"] == 30 * 8 * 32
    bits = [h["valid_bits"] for h in resumed["history"]]
    assert bits[-1] < bits[0] < 8.5  # it learns, from near-uniform 8 bits/byte
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))  # resumed exactly where it stopped
    lm = load_byte_lm(run / "model")
    assert lm.info["steps"] == 30
    text = b"the cat ran on the mat in the fog. " * 80
    blob = compress(text, lm, CoderParams(threads=1))
    assert decompress(blob, lm) == text
    assert len(blob) < 0.6 * len(text)


def test_train_m1_cli_reports_bad_config(tmp_path, capsys):
    data = _corpus(tmp_path)
    code = main(["text", "train-m1", "--data", str(data), "--out", str(tmp_path / "r"), "--d-model", "30"])
    assert code == 1
    assert "divisible" in capsys.readouterr().err
