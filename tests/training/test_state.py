from __future__ import annotations

import json

import pytest
import torch

from training.state import (
    Progress,
    TrainingStateError,
    flatten_optimizer,
    latest_checkpoint,
    load_training_state,
    save_training_state,
    unflatten_optimizer,
)


def _model_and_opt(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW([{"params": model[0].parameters(), "lr_scale": 0.4},
                             {"params": model[2].parameters()}], lr=1e-3, betas=(0.8, 0.99))
    return model, opt


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        loss = model(torch.randn(3, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_optimizer_state_round_trips_through_tensors_and_json() -> None:
    model, opt = _model_and_opt()
    _train(model, opt, 3)
    tensors, meta = flatten_optimizer(opt)
    meta = json.loads(json.dumps(meta))  # must survive JSON
    _, fresh = _model_and_opt(seed=1)
    unflatten_optimizer(fresh, tensors, meta)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert isinstance(fresh.param_groups[0]["betas"], tuple)
    for pid in a["state"]:
        for key, value in a["state"][pid].items():
            assert torch.equal(value, b["state"][pid][key])


def test_save_load_restores_weights_optimizer_rng_and_progress(tmp_path) -> None:
    model, opt = _model_and_opt()
    _train(model, opt, 2)
    ckpt = save_training_state(tmp_path, {"net": model}, {"opt": opt}, None, Progress(7, 1, 3), {"note": "x"})
    expected_noise = torch.rand(3)
    model2, opt2 = _model_and_opt(seed=5)
    progress, extra = load_training_state(latest_checkpoint(tmp_path), {"net": model2}, {"opt": opt2}, None)
    assert ckpt == latest_checkpoint(tmp_path)
    assert progress == Progress(7, 1, 3) and extra == {"note": "x"}
    assert torch.equal(torch.rand(3), expected_noise)  # RNG continues where the run left off
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    for pid, entry in opt.state_dict()["state"].items():
        assert all(torch.equal(v, opt2.state_dict()["state"][pid][k]) for k, v in entry.items())


def test_old_checkpoints_are_pruned_and_mismatch_is_reported(tmp_path) -> None:
    model, opt = _model_and_opt()
    for step in (1, 2, 3):
        save_training_state(tmp_path, {"net": model}, {"opt": opt}, None, Progress(step=step), keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_00000002", "step_00000003"]
    other = torch.nn.Linear(4, 2)
    with pytest.raises(TrainingStateError):
        load_training_state(latest_checkpoint(tmp_path), {"net": other}, {}, None)
    assert latest_checkpoint(tmp_path / "fresh") is None
