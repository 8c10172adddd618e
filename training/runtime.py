"""Device, precision and seeding choices shared by the trainers."""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from gpt_sovits.errors import GSVError


class RuntimeConfigError(GSVError):
    """A device or precision that this machine cannot provide."""

    code = "runtime_config_error"


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; explicit cuda without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeConfigError(f"device '{name}' asked for but no CUDA GPU is visible; use --device cpu.")
    return device


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None = fp32) and whether a GradScaler is needed (fp16 only)."""

    dtype: torch.dtype | None
    device_type: str

    @property
    def name(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def resolve_precision(name: str, device: torch.device, prefer_bf16: bool = True) -> Precision:
    """`auto`: fp32 on CPU; on GPU bf16 when supported and `prefer_bf16`, else fp16.

    S2 passes prefer_bf16=False: the official recipe trains the GAN in fp16 with a GradScaler.
    """
    if name == "auto":
        if device.type != "cuda":
            return Precision(None, device.type)
        if prefer_bf16 and torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, "cuda")
        return Precision(torch.float16, "cuda")
    table = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name not in table:
        raise RuntimeConfigError(f"precision '{name}' is not one of auto, fp32, fp16, bf16.")
    if table[name] is not None and device.type != "cuda":
        raise RuntimeConfigError(f"precision {name} needs a CUDA device; on CPU use fp32 (or auto).")
    return Precision(table[name], device.type)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Temporarily switch modules to eval mode, restoring their previous flags."""
    flags = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, flag in zip(modules, flags):
            m.train(flag)
