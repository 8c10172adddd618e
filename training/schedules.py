"""Learning-rate schedules as pure functions of the step/epoch counter.

Keeping the schedule a function (instead of a stateful `torch.optim.lr_scheduler`) means a resumed
run only needs the counter to land on exactly the same LR, and the training loops set the LR in
one visible line. Param groups may carry an `lr_scale` entry (S2's slower text branch).
"""
from __future__ import annotations

import math

from torch.optim import Optimizer


def warmup_cosine(step: int, total_steps: int, peak_lr: float, warmup_steps: int, min_ratio: float) -> float:
    """LR for optimizer step `step` (0-based): linear warmup to `peak_lr`, cosine down to
    `peak_lr * min_ratio` at `total_steps - 1`, flat after that."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    floor = peak_lr * min_ratio
    return floor + (peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def exponential(epoch: int, base_lr: float, gamma: float) -> float:
    """Official S2 schedule: ExponentialLR stepped once per finished epoch (epoch is 0-based)."""
    return base_lr * gamma**epoch


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Set every param group to `lr * group['lr_scale']` (scale 1 when absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
