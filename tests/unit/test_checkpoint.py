"""terse.core.checkpoint: exact resume of model, optimizer and scheduler; interrupted saves."""

import shutil

import pytest
import torch

from terse.core.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from terse.core.errors import ArtifactError


def _setup(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / 20))
    return model, opt, sched


def _steps(model, opt, sched, start: int, stop: int) -> None:
    for step in range(start, stop):
        gen = torch.Generator().manual_seed(step)
        x = torch.randn(16, 4, generator=gen)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_resume_equals_uninterrupted_run(tmp_path):
    model, opt, sched = _setup(0)
    _steps(model, opt, sched, 0, 10)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, sched = _setup(0)
    _steps(model, opt, sched, 0, 4)
    save_checkpoint(tmp_path / "ckpt", model, opt, {"step": 4, "history": [1.5]}, sched)
    model, opt, sched = _setup(1)  # fresh process: different initial weights
    state = load_checkpoint(tmp_path / "ckpt", model, opt, sched)
    assert state == {"step": 4, "history": [1.5]}
    assert sched.get_last_lr() == [opt.param_groups[0]["lr"]] == [pytest.approx(1e-2 * (1 - 4 / 20))]
    _steps(model, opt, sched, 4, 10)
    for name, value in model.state_dict().items():
        assert torch.equal(value, reference[name]), name


def test_interrupted_swap_keeps_previous_checkpoint(tmp_path):
    model, opt, sched = _setup(0)
    folder = tmp_path / "ckpt"
    assert not has_checkpoint(folder)
    with pytest.raises(ArtifactError):
        load_checkpoint(folder, model, opt)
    _steps(model, opt, sched, 0, 2)
    save_checkpoint(folder, model, opt, {"step": 2})
    # a save interrupted after moving the old folder aside and before the new one took its place
    shutil.move(folder, tmp_path / "ckpt.old")
    (tmp_path / "ckpt.new").mkdir()
    assert has_checkpoint(folder)
    assert load_checkpoint(folder, *_setup(3)[:2]) == {"step": 2}
    save_checkpoint(folder, model, opt, {"step": 3})
    assert load_checkpoint(folder, *_setup(3)[:2]) == {"step": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
