"""Long-run distillation (streamed corpus, held-out curve, exact resume) and task distillation."""

from __future__ import annotations

import json
import time

import pytest
import torch
from tests.fixtures.autodistil import die_after_saves, make_corpus, make_glue, make_tiny_teacher

from terse.autodistil.corpus import BlockArray, CorpusStream
from terse.autodistil.distill import DistillConfig, train_subnets
from terse.autodistil.space import SearchSpace
from terse.autodistil.supernet import ElasticBert
from terse.core.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModel, AutoTokenizer

    root = tmp_path_factory.mktemp("longrun")
    teacher_dir = make_tiny_teacher(root / "teacher")
    hf = AutoModel.from_pretrained(teacher_dir, local_files_only=True)
    return {"root": root, "teacher_dir": teacher_dir, "hf": hf,
            "tokenizer": AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True),
            "corpus": make_corpus(root / "corpus"), "glue": make_glue(root / "glue")}


def test_stream_is_deterministic_and_replays_on_resume(tiny):
    def stream():
        return CorpusStream(tiny["corpus"], tiny["tokenizer"], 12, seed=3, shuffle_blocks=16, chunk_chars=300)
    first = stream()
    batches = [first.batch(step, 5) for step in range(200)]   # several passes over the small corpus
    assert first.passes >= 1
    assert all(b.shape == (5, 12) for b in batches)
    assert all((b[:, 0] == tiny["tokenizer"].cls_token_id).all() and (b[:, -1] == tiny["tokenizer"].sep_token_id).all()
               for b in batches)
    assert not torch.equal(batches[0], batches[1])
    resumed = stream()   # a new process starting at step 170
    for step in range(170, 200):
        assert torch.equal(resumed.batch(step, 5), batches[step])
    assert torch.equal(resumed.batch(2, 5), batches[2])   # going back replays from the start
    other_seed = CorpusStream(tiny["corpus"], tiny["tokenizer"], 12, seed=4, shuffle_blocks=16, chunk_chars=300)
    assert not torch.equal(other_seed.batch(0, 5), batches[0])


def test_stream_and_array_reject_empty_input(tiny, tmp_path):
    (tmp_path / "short.txt").write_text("the cat")
    with pytest.raises(DataError, match="not enough text"):
        CorpusStream(tmp_path, tiny["tokenizer"], 64).batch(0, 2)
    with pytest.raises(DataError, match="no .txt files"):
        CorpusStream(tmp_path / "missing", tiny["tokenizer"], 64)
    with pytest.raises(DataError):
        BlockArray(torch.zeros(0, 8, dtype=torch.long))


def test_streamed_distillation_logs_heldout_and_resumes_exactly(tiny, tmp_path, monkeypatch):
    import terse.autodistil.distill as distill

    hf = tiny["hf"]
    teacher = ElasticBert.from_hf_bert(hf, dropout=0.0)
    space = SearchSpace("t", (2, 4), (2, 4), (1.0, 2.0), 8)
    cfg = DistillConfig(steps=6, batch_size=4, seq_len=12, learning_rate=3e-3, checkpoint_every=2)
    heldout = torch.randint(5, 30, (6, 12), generator=torch.Generator().manual_seed(1))
    def stream():
        return CorpusStream(tiny["corpus"], tiny["tokenizer"], 12, seed=0, shuffle_blocks=8, chunk_chars=300)
    full = ElasticBert.from_hf_bert(hf)
    reference = train_subnets(full, teacher, stream(), space, cfg, heldout=heldout, heldout_every=2,
                              out_dir=tmp_path / "ref")
    curve = json.loads((tmp_path / "ref" / "heldout.json").read_text())
    assert [c["step"] for c in curve] == [0, 2, 4, 6] == [c["step"] for c in reference["heldout_curve"]]
    assert set(curve[0]["heldout"]) == {space.largest().name, space.smallest().name}
    # the largest subnet is the teacher before training: nothing to distil yet
    assert curve[0]["heldout"][space.largest().name] == pytest.approx(0.0, abs=1e-6)
    assert all(0 <= v < 10 for c in curve for v in c["heldout"].values())
    assert reference["tokens"] == 6 * 4 * 12 and reference["tokens_per_second"] > 0

    saves = die_after_saves(monkeypatch, distill, 2)
    with pytest.raises(KeyboardInterrupt):
        train_subnets(ElasticBert.from_hf_bert(hf), teacher, stream(), space, cfg, heldout=heldout, heldout_every=2,
                      out_dir=tmp_path / "run")
    monkeypatch.undo()
    assert saves == [2, 4]
    resumed = ElasticBert.from_hf_bert(hf)
    summary = train_subnets(resumed, teacher, stream(), space, cfg, heldout=heldout, heldout_every=2,
                            out_dir=tmp_path / "run")
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert summary["loss_history"] == reference["loss_history"]
    assert [c["heldout"] for c in summary["heldout_curve"]] == [c["heldout"] for c in reference["heldout_curve"]]


def test_distillation_loss_definition():
    from terse.autodistil.glue import FinetuneConfig, distillation_loss

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    labels = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(distillation_loss(logits, labels, logits * 3, False, FinetuneConfig(distill_weight=0.0)), ce)
    # the teacher term vanishes where the student already matches the teacher
    assert distillation_loss(logits, labels, logits.clone(), False, FinetuneConfig(distill_weight=1.0)).abs() < 1e-6
    far = distillation_loss(logits, labels, -logits, False, FinetuneConfig(distill_weight=1.0))
    assert far > 0.1
    scores, gold, teacher = torch.tensor([[1.0], [2.0]]), torch.tensor([1.0, 4.0]), torch.tensor([[1.0], [3.0]])
    half = distillation_loss(scores, gold, teacher, True, FinetuneConfig(distill_weight=0.5))
    assert float(half) == pytest.approx(0.5 * (4.0 / 2) + 0.5 * (1.0 / 2))
    with pytest.raises(ConfigError):
        FinetuneConfig(distill_weight=1.5)


def test_task_distillation_with_a_cached_teacher(tiny, tmp_path):
    from terse.autodistil.glue import FinetuneConfig, finetune, task_teacher

    cfg = FinetuneConfig(epochs=1, batch_size=16, max_len=16)
    cache = tmp_path / "teachers"
    folder = task_teacher(tiny["teacher_dir"], tiny["glue"], "SST-2", cfg, cache)
    assert json.loads((folder / "teacher_scores.json").read_text())["task"] == "SST-2"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert task_teacher(tiny["teacher_dir"], tiny["glue"], "sst-2", cfg.replace(temperature=4.0), cache) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp          # reused, not retrained
    assert task_teacher(folder, tiny["glue"], "SST-2", cfg, cache) == folder    # a classifier is used as it is
    assert task_teacher(tiny["teacher_dir"], tiny["glue"], "SST-2", cfg.replace(seed=1), cache) != folder
    with pytest.raises(ConfigError, match="not a STS-B classifier"):
        task_teacher(folder, tiny["glue"], "STS-B", cfg, cache)
    result = finetune(tiny["teacher_dir"], tiny["glue"], "SST-2", cfg, teacher_dir=folder)
    assert result["train_examples"] == 64 and 0 <= result["last"]["score"] <= 100
    sts = task_teacher(tiny["teacher_dir"], tiny["glue"], "STS-B", cfg, cache)
    assert finetune(tiny["teacher_dir"], tiny["glue"], "STS-B", cfg, teacher_dir=sts)["task"] == "STS-B"
    with pytest.raises(ConfigError, match="not a SST-2 classifier"):
        finetune(tiny["teacher_dir"], tiny["glue"], "SST-2", cfg, teacher_dir=sts)


def test_epoch_order_groups_lengths_into_whole_batches():
    import random

    from terse.autodistil.glue import epoch_order

    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(1000)]
    plain = epoch_order(lengths, 32, random.Random(5), False)
    grouped = epoch_order(lengths, 32, random.Random(5), True, window_batches=8)
    assert sorted(plain) == sorted(grouped) == list(range(1000))
    assert grouped == epoch_order(lengths, 32, random.Random(5), True, window_batches=8)   # seeded

    def padded(order):
        return sum(max(lengths[i] for i in order[s:s + 32]) * len(order[s:s + 32]) for s in range(0, 1000, 32))

    assert padded(grouped) < 0.7 * padded(plain)
    first_batches = [max(lengths[i] for i in grouped[s:s + 32]) for s in range(0, 320, 32)]
    assert first_batches != sorted(first_batches)   # batches are not visited shortest first


def test_single_subnet_space_is_the_standalone_baseline():
    from terse.autodistil.distill import sandwich
    from terse.autodistil.space import SubnetConfig

    for name in ("L3-A9-H288-F720", "L4-A7-H224-F784", "L5-A5-H160-F400", "L2-A3-H96-F333", "L6-A12-H384-F1536"):
        sub = SubnetConfig.parse(name)
        space = SearchSpace.single(sub)
        assert space.subnets() == [sub] and space.name == f"standalone-{name}"
        assert sandwich(space, step=7, seed=0) == [sub]   # each step trains that one architecture


def test_transfer_examples_are_learned_from_the_teacher_only(tiny, tmp_path):
    from terse.autodistil.glue import FinetuneConfig, distillation_loss, finetune, task_teacher

    logits, labels = torch.tensor([[2.0, -1.0], [0.5, 0.3]]), torch.tensor([0, 1])
    teacher = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])   # last column: has a gold label
    hard_only = distillation_loss(logits, labels, teacher, False, FinetuneConfig(distill_weight=0.0))
    assert torch.isclose(hard_only, torch.nn.functional.cross_entropy(logits[:1], labels[:1]))
    cfg = FinetuneConfig(epochs=1, batch_size=16, max_len=16, max_train_examples=32)
    folder = task_teacher(tiny["teacher_dir"], tiny["glue"], "SST-2", cfg, tmp_path / "teachers")
    result = finetune(tiny["teacher_dir"], tiny["glue"], "SST-2", cfg.replace(transfer_examples=20), teacher_dir=folder)
    assert (result["train_examples"], result["transfer_examples"]) == (32, 20)
    with pytest.raises(ConfigError, match="labelled by the teacher"):
        finetune(tiny["teacher_dir"], tiny["glue"], "SST-2", cfg.replace(transfer_examples=20))


def test_augmented_inputs_are_made_from_the_training_sentences(tiny):
    import random

    from terse.autodistil.augment import augmented_inputs, perturb

    rng = random.Random(0)
    sentence = "the quick brown fox jumps over the lazy dog"
    for _ in range(50):
        words = perturb(sentence, rng).split()
        assert words and set(words) <= set(sentence.split()) and len(words) <= 9
    pairs = [("the cat sat on the mat", "a dog ran in the park"), ("red apples are sweet", "green pears are sour"),
             ("the sun is hot today", "it rains in the north")]
    vocabulary = {w for p in pairs for s in p for w in s.split()}
    made = augmented_inputs(pairs, 40, tiny["hf"], tiny["tokenizer"], seed=1)
    assert len(made) == 40 and all(len(x) == 2 for x in made)
    assert all(set(s.split()) <= vocabulary for x in made for s in x)
    assert made == augmented_inputs(pairs, 40, tiny["hf"], tiny["tokenizer"], seed=1)   # same for every student
    assert made != augmented_inputs(pairs, 40, tiny["hf"], tiny["tokenizer"], seed=2)
    singles = augmented_inputs([(a,) for a, _ in pairs], 10, tiny["hf"], tiny["tokenizer"])
    assert len(singles) == 10 and all(len(x) == 1 and x[0] for x in singles)
    assert augmented_inputs(pairs, 0, tiny["hf"], tiny["tokenizer"]) == []


def test_finetune_learns_augmented_inputs_from_the_teacher(tiny, tmp_path):
    from terse.autodistil.glue import FinetuneConfig, finetune, task_teacher

    cfg = FinetuneConfig(epochs=1, batch_size=16, max_len=16, max_train_examples=32)
    folder = task_teacher(tiny["teacher_dir"], tiny["glue"], "STS-B", cfg, tmp_path / "teachers")
    result = finetune(tiny["teacher_dir"], tiny["glue"], "STS-B", cfg.replace(augment_examples=24), teacher_dir=folder)
    assert (result["augmented_examples"], result["transfer_examples"]) == (24, 0)
    with pytest.raises(ConfigError, match="labelled by the teacher"):
        finetune(tiny["teacher_dir"], tiny["glue"], "STS-B", cfg.replace(augment_examples=24))
    with pytest.raises(ConfigError, match=">= 0"):
        FinetuneConfig(augment_examples=-1)


def test_relation_loss_pulls_the_student_towards_the_task_teacher_attention(tiny, tmp_path):
    import copy

    from transformers import AutoModelForSequenceClassification

    from terse.autodistil.glue import FinetuneConfig, _RelationDistiller, finetune, load_task_teacher, task_spec, task_teacher

    cfg = FinetuneConfig(epochs=4, batch_size=16, max_len=16, max_train_examples=32, learning_rate=1e-3)
    folder = task_teacher(tiny["teacher_dir"], tiny["glue"], "STS-B", cfg, tmp_path / "teachers")
    teacher = load_task_teacher(folder, task_spec("STS-B"))
    ids = torch.tensor([[2, 7, 8, 9, 3, 10, 11, 3], [2, 12, 13, 3, 14, 3, 0, 0]])
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)

    def relation_gap(student) -> float:
        distiller = _RelationDistiller(teacher, student.eval())
        with torch.no_grad():
            student(input_ids=ids, token_type_ids=types, attention_mask=mask)
            gap = distiller.loss(ids, types, mask, torch.autocast("cpu", enabled=False)).item()
        distiller.close()
        return gap

    assert relation_gap(copy.deepcopy(teacher)) < 1e-6   # a model has no gap to itself
    student = make_tiny_teacher(tmp_path / "student", seed=1)   # other weights, same tokenizer
    gaps = {}
    for weight in (0.0, 100.0):
        out = tmp_path / f"student-{weight}"
        finetune(student, tiny["glue"], "STS-B", cfg.replace(relation_weight=weight), out_dir=out, teacher_dir=folder)
        gaps[weight] = relation_gap(AutoModelForSequenceClassification.from_pretrained(out, local_files_only=True))
    assert gaps[100.0] < 0.8 * gaps[0.0]   # (random tiny models attend almost uniformly: small gaps)
    with pytest.raises(ConfigError, match="relation loss"):
        finetune(tiny["teacher_dir"], tiny["glue"], "STS-B", cfg.replace(relation_weight=1.0))
    with pytest.raises(ConfigError, match=">= 0"):
        FinetuneConfig(relation_weight=-1.0)


def test_training_seconds_leave_out_a_paused_step(tiny, monkeypatch):
    import terse.autodistil.distill as distill

    teacher = ElasticBert.from_hf_bert(tiny["hf"], dropout=0.0)
    space = SearchSpace("t", (2, 4), (2, 4), (1.0, 2.0), 8)
    cfg = DistillConfig(steps=8, batch_size=2, seq_len=12, checkpoint_every=100)
    real = distill.random_padding
    calls = []

    def paused_once(*args):   # the process stopped for 3 s inside step 5
        calls.append(1)
        if len(calls) == 5:
            time.sleep(3.0)
        return real(*args)

    monkeypatch.setattr(distill, "random_padding", paused_once)
    stream = CorpusStream(tiny["corpus"], tiny["tokenizer"], 12, seed=0, shuffle_blocks=8, chunk_chars=300)
    summary = train_subnets(ElasticBert.from_hf_bert(tiny["hf"]), teacher, stream, space, cfg)
    assert summary["seconds"] > 3.0
    assert 0 < summary["active_seconds"] < summary["seconds"] - 1.5  # a median step under 0.15 s
