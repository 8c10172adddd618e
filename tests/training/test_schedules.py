from __future__ import annotations

import pytest
import torch

from training.schedules import exponential, set_lr, warmup_cosine


def test_warmup_then_cosine_to_the_floor() -> None:
    lrs = [warmup_cosine(s, 100, 1e-3, 10, 0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:100]))
    assert lrs[99] == pytest.approx(1e-4) and lrs[119] == pytest.approx(1e-4)


def test_exponential_per_epoch_matches_torch() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-4)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999875)
    for epoch in range(5):
        assert exponential(epoch, 1e-4, 0.999875) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()


def test_set_lr_applies_group_scales() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [a]}, {"params": [b], "lr_scale": 0.4}], lr=1.0)
    set_lr(opt, 2e-4)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-4, 0.8e-4])
