"""AutoDistil invariants on tiny BERTs built in code: max subnet == teacher, extracted ==
supernet slice, costs vs a hand count, loss masking, sandwich, resume, search, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from tests.fixtures.autodistil import die_after_saves, make_tiny_teacher, tiny_bert_config

from terse.autodistil.distill import DistillConfig, relation_loss, sandwich, train_subnets
from terse.autodistil.search import Constraint, NoSubnetError, pareto_front, select
from terse.autodistil.space import (
    SearchSpace,
    SubnetConfig,
    TeacherShape,
    count_macs,
    count_params,
    default_spaces,
    layer_map,
)
from terse.autodistil.supernet import ElasticBert
from terse.core.checkpoint import has_checkpoint
from terse.core.errors import ConfigError, DataError

MINILM = TeacherShape(num_layers=6, num_heads=12, hidden_size=384, intermediate_size=1536, vocab_size=30522)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny")


@pytest.fixture(scope="module")
def teacher(teacher_dir):
    from terse.autodistil.teacher import load_teacher

    return load_teacher(teacher_dir)


@pytest.fixture(scope="module")
def supernet(teacher):
    net = ElasticBert.from_hf_bert(teacher[0]).eval()
    # Perturb every weight so slices of a "trained" supernet differ from the teacher's.
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net


def _batch(vocab: int = 30, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 5:] = 0
    return ids * mask, mask


def test_max_subnet_equals_teacher(teacher):
    hf, _, shape = teacher
    net = ElasticBert.from_hf_bert(hf).eval()
    ids, mask = _batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        out = net(ids, mask, shape.max_subnet).hidden
    assert (ref - out).abs().max().item() < 1e-5


def test_extracted_student_equals_supernet_slice(supernet, teacher, tmp_path):
    from transformers import AutoModel

    from terse.autodistil.extract import extract_student, verify_student

    sub = SubnetConfig(num_layers=3, num_heads=2, hidden_size=16, intermediate_size=40)
    extract_student(supernet, sub, tmp_path / "student", teacher[1])
    student = AutoModel.from_pretrained(tmp_path / "student", local_files_only=True).eval()
    ids, mask = _batch(seed=3)
    with torch.no_grad():
        ref = supernet(ids, mask, sub).hidden
        out = student(input_ids=ids, attention_mask=mask).last_hidden_state
    assert out.shape == (3, 12, 16)
    assert (ref - out).abs().max().item() < 1e-5
    assert sum(p.numel() for n, p in student.named_parameters() if not n.startswith("pooler")) == \
        count_params(sub, vocab_size=supernet.shape.vocab_size, max_positions=64)
    verify_student(tmp_path / "student")
    with open(tmp_path / "student" / "model.safetensors", "r+b") as handle:  # corrupt one byte
        handle.seek(-3, 2)
        byte = handle.read(1)
        handle.seek(-3, 2)
        handle.write(bytes([byte[0] ^ 1]))
    from terse.core.errors import ArtifactError

    with pytest.raises(ArtifactError, match="sha256"):
        verify_student(tmp_path / "student")


def test_slices_are_views_not_state(supernet):
    """Running a small subnet must not change what the largest one computes."""
    ids, mask = _batch()
    with torch.no_grad():
        before = supernet(ids, mask).hidden
        supernet(ids, mask, SubnetConfig(1, 1, 8, 8))
        after = supernet(ids, mask).hidden
    assert torch.equal(before, after)


def test_layer_map_every_other():
    assert layer_map(6, 6) == [0, 1, 2, 3, 4, 5]
    assert layer_map(6, 3) == [0, 2, 4]
    assert layer_map(12, 9) == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert layer_map(12, 7) == [0, 1, 3, 5, 6, 8, 10]
    with pytest.raises(ConfigError):
        layer_map(6, 7)


def test_macs_match_hand_count_and_module_shapes():
    sub = SubnetConfig(num_layers=2, num_heads=2, hidden_size=16, intermediate_size=32)
    # per layer, n=10: QKV 3*10*16*16 + scores/context 2*10*10*16 + out 10*16*16 + FFN 2*10*16*32
    assert count_macs(sub, seq_len=10) == 2 * (7680 + 3200 + 2560 + 10240)
    # the linear part equals what the extracted model's Linear modules do on 10 tokens
    from transformers import BertModel

    from terse.autodistil.extract import bert_config_for

    shape = TeacherShape(4, 4, 32, 64, 50, 64)
    model = BertModel(bert_config_for(sub, shape), add_pooling_layer=False)
    linear = sum(10 * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert count_macs(sub, seq_len=10) == linear + 2 * 2 * 10 * 10 * 16
    # MiniLM-L6-H384 at n=128: 1.434 GMACs, 22.57M parameters without the pooler
    assert count_macs(MINILM.max_subnet) == 1_434_451_968
    assert count_params(MINILM.max_subnet) == 22_565_376


def test_default_spaces_are_data_and_fit_the_teacher():
    spaces = default_spaces(MINILM)
    assert set(spaces) == {"base", "small", "tiny", "k1"}
    for name in ("base", "small", "tiny"):
        space = spaces[name]
        assert len(space.layers) == len(space.heads) == len(space.mlp_ratios) == 4
        assert len(space) == 64
        assert all(s.hidden_size == 32 * s.num_heads for s in space.subnets())
        assert set(space.subnets()) <= set(spaces["k1"].subnets())
    assert spaces["base"].largest() == MINILM.max_subnet
    assert SearchSpace.from_dict(spaces["tiny"].to_dict()) == spaces["tiny"]
    with pytest.raises(ConfigError, match="unknown keys"):
        SearchSpace.from_dict({**spaces["tiny"].to_dict(), "widths": [1]})
    with pytest.raises(ConfigError, match="larger than the teacher"):
        SubnetConfig(7, 12, 384, 1536).check_fits(MINILM)
    with pytest.raises(ConfigError, match="head size"):
        SubnetConfig(6, 4, 256, 512).check_fits(MINILM)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_relation_loss_zero_for_teacher_and_ignores_padding(supernet, teacher, kind):
    net = ElasticBert.from_hf_bert(teacher[0]).eval()
    ids, mask = _batch()
    small = SubnetConfig(2, 2, 16, 32)
    with torch.no_grad():
        t = net(ids, mask, return_qkv=True).qkv
        assert relation_loss(t, t, mask, 4, kind).item() == pytest.approx(0.0, abs=1e-6)
        s = supernet(ids, mask, small, return_qkv=True).qkv
        base = relation_loss(t, s, mask, 4, kind).item()
        assert base > 1e-4
        # different tokens at padded positions: real-token relations are unchanged, so is the loss
        ids2 = ids.clone()
        ids2[mask == 0] = 7
        t2 = net(ids2, mask, return_qkv=True).qkv
        s2 = supernet(ids2, mask, small, return_qkv=True).qkv
        assert relation_loss(t2, s2, mask, 4, kind).item() == pytest.approx(base, rel=1e-5)
    with pytest.raises(ConfigError):
        relation_loss(t, t, mask, 4, "cosine")


def test_relation_kl_matches_the_direct_definition_exactly():
    # MiniLMv2's KL of softmaxed relations with padded keys removed, written out directly: the
    # shared-teacher, additive-mask form must give the same bits, loss and gradients
    from terse.autodistil.supernet import relation_logits

    def direct(t_qkv, s_qkv, mask, heads):
        real = mask.bool()
        pad = ~real[:, None, None, :]
        total = 0.0
        for t, s in zip(t_qkv, s_qkv, strict=True):
            rt, rs = relation_logits(t, heads), relation_logits(s, heads)
            pt = torch.softmax(rt.masked_fill(pad, float("-inf")), -1)
            log_pt = torch.log_softmax(rt.masked_fill(pad, float("-inf")), -1)
            log_ps = torch.log_softmax(rs.masked_fill(pad, float("-inf")), -1)
            kl = (pt * (log_pt - log_ps)).masked_fill(pad, 0.0).sum(-1)
            total = total + kl[real[:, None, :].expand_as(kl)].mean()
        return total / 3

    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(6, 20, dtype=torch.long)
    for b in range(6):
        mask[b, 20 - 3 * b:] = 0
    t = [torch.randn(6, 20, 48, generator=gen) for _ in range(3)]
    s1 = [torch.randn(6, 20, 36, generator=gen).requires_grad_(True) for _ in range(3)]
    s2 = [x.detach().clone().requires_grad_(True) for x in s1]
    ours, reference = relation_loss(t, s1, mask, 4, "kl"), direct(t, s2, mask, 4)
    ours.backward()
    reference.backward()
    assert torch.equal(ours, reference)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(s1, s2, strict=True))


def test_sandwich_rule():
    space = SearchSpace("t", (1, 2, 3), (1, 2), (1.0, 2.0), 8)
    picks = sandwich(space, step=5, seed=0)
    assert picks[0] == space.largest() and picks[1] == space.smallest()
    assert len(picks) == 4 == len(set(picks))
    assert picks == sandwich(space, step=5, seed=0)
    assert any(sandwich(space, step=s, seed=0)[2:] != picks[2:] for s in range(6, 12))


def test_training_lowers_loss_and_resume_is_exact(teacher, tmp_path):
    _, _, shape = teacher
    hf = teacher[0]
    teacher_net = ElasticBert.from_hf_bert(hf, dropout=0.0)
    space = SearchSpace("t", (2, 4), (2, 4), (1.0, 2.0), 8)
    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(5, 30, (16, 12), generator=g)
    cfg = DistillConfig(steps=6, batch_size=4, seq_len=12, learning_rate=3e-3, checkpoint_every=3, dropout=0.0)

    def fresh():
        net = ElasticBert.from_hf_bert(hf, dropout=0.0)
        torch.manual_seed(5)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.2 * torch.randn_like(p))
        return net

    from terse.autodistil.distill import heldout_losses

    probe = [space.smallest(), space.largest()]
    before = heldout_losses(fresh(), teacher_net, blocks, probe)
    full = fresh()
    summary = train_subnets(full, teacher_net, blocks, space, cfg)
    assert summary["steps_done"] == 6
    after = heldout_losses(full, teacher_net, blocks, probe)
    assert all(after[s] < before[s] for s in probe)
    # a run that saved a checkpoint at step 3; a new process resumes from it: identical weights
    first = fresh()
    train_subnets(first, teacher_net, blocks, space, cfg, out_dir=tmp_path)
    assert has_checkpoint(tmp_path / "checkpoint")
    resumed = fresh()
    summary2 = train_subnets(resumed, teacher_net, blocks, space, cfg, out_dir=tmp_path)
    assert summary2["steps_done"] == 6
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ConfigError):
        train_subnets(copy.deepcopy(full), teacher_net, blocks, None, cfg)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_interrupted_distillation_resumes_to_the_uninterrupted_result(teacher, tmp_path, monkeypatch, dropout):
    """Killed right after its second checkpoint, a rerun ends bit-identical to a run never
    interrupted (weights and losses), dropout included."""
    import terse.autodistil.distill as distill

    hf = teacher[0]
    teacher_net = ElasticBert.from_hf_bert(hf, dropout=0.0)
    space = SearchSpace("t", (2, 4), (2, 4), (1.0, 2.0), 8)
    blocks = torch.randint(5, 30, (16, 12), generator=torch.Generator().manual_seed(0))
    cfg = DistillConfig(steps=7, batch_size=4, seq_len=12, learning_rate=3e-3, checkpoint_every=2, dropout=dropout)
    full = ElasticBert.from_hf_bert(hf)
    reference = train_subnets(full, teacher_net, blocks, space, cfg)

    saves = die_after_saves(monkeypatch, distill, 2)
    with pytest.raises(KeyboardInterrupt):
        train_subnets(ElasticBert.from_hf_bert(hf), teacher_net, blocks, space, cfg, out_dir=tmp_path)
    monkeypatch.undo()
    assert saves == [2, 4]
    torch.manual_seed(123)  # the new process's global RNG differs from the first one's
    resumed = ElasticBert.from_hf_bert(hf)
    summary = train_subnets(resumed, teacher_net, blocks, space, cfg, out_dir=tmp_path)
    assert summary["steps_done"] == 7
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for key in ("loss_first", "loss_last_100", "loss_history", "steps_planned"):
        assert summary[key] == reference[key], key


def test_search_selects_under_budget_and_explains_failure():
    space = SearchSpace("t", (2, 4), (2, 4), (1.0, 2.0), 8)
    shape = TeacherShape(4, 4, 32, 64, 50, 64)
    scores = {s: 1.0 / (count_macs(s) ** 0.5) for s in space.subnets()}  # bigger = better
    best = select(scores, shape, Constraint(max_macs=count_macs(SubnetConfig(2, 4, 32, 32))))
    assert count_macs(best) <= count_macs(SubnetConfig(2, 4, 32, 32))
    assert best == max((s for s in scores if count_macs(s) <= count_macs(SubnetConfig(2, 4, 32, 32))), key=count_macs)
    front = pareto_front(scores, shape)
    assert [scores[s] for s in front] == sorted((scores[s] for s in front), reverse=True)
    with pytest.raises(NoSubnetError, match="no subnet of the 8 searched satisfies MACs <= 10"):
        select(scores, shape, Constraint(max_macs=10))
    with pytest.raises(ConfigError):
        Constraint(max_params=-1)
    # a latency constraint uses the given measurement, in loss order
    fastest = min(scores, key=count_macs)
    assert select(scores, shape, Constraint(max_latency_ms=1.0), latency=lambda s: 0.5 if s == fastest else 5.0) == fastest


def test_teacher_must_be_bert_like():
    from transformers import GPT2Config

    from terse.autodistil.teacher import teacher_shape

    with pytest.raises(ConfigError, match="not a BERT-like encoder"):
        teacher_shape(GPT2Config())
    with pytest.raises(ConfigError, match="hidden_act"):
        teacher_shape(tiny_bert_config(hidden_act="relu"))


def test_glue_tsv_errors_and_metrics(tmp_path):
    import numpy as np

    from terse.autodistil.glue import f1_binary, matthews, pearson, read_tsv, spearman, task_spec

    with pytest.raises(ConfigError, match="unknown GLUE task 'MNLI-X'"):
        task_spec("MNLI-X")
    spec = task_spec("rte")
    bad = tmp_path / "bad.tsv"
    bad.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    with pytest.raises(DataError, match=r"bad.tsv:3: malformed row"):
        read_tsv(bad, spec)
    bad.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(DataError, match="label 'maybe'"):
        read_tsv(bad, spec)
    bad.write_text("idx\ttext\n0\ta\n")
    with pytest.raises(DataError, match="lacks the RTE columns"):
        read_tsv(bad, spec)
    a, b = np.array([1.0, 2.0, 2.0, 3.0, 0.5]), np.array([1.0, 3.0, 2.0, 4.0, 0.0])
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert spearman(a, b) == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4, 0], [1, 3, 2, 4, 0])[0, 1])  # tied ranks averaged
    pred, gold = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]  # tp 2, fp 1, tn 1, fn 1
    assert matthews(pred, gold) == pytest.approx(1 / 6)
    assert f1_binary(pred, gold) == pytest.approx(2 / 3)


def test_extract_refuses_weights_that_do_not_fit_and_writes_nothing(supernet, teacher, tmp_path, monkeypatch):
    from terse.autodistil.extract import extract_student
    from terse.core.errors import ArtifactError

    sub = SubnetConfig(num_layers=2, num_heads=2, hidden_size=16, intermediate_size=40)
    state = supernet.subnet_state_dict(sub)
    monkeypatch.setattr(supernet, "subnet_state_dict", lambda s: {k: v for k, v in state.items() if "layer.1." not in k})
    with pytest.raises(ArtifactError, match="do not fit"):
        extract_student(supernet, sub, tmp_path / "student", teacher[1])
    assert not (tmp_path / "student").exists()
