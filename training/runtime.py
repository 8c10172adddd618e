"""Device, precision and seeding choices shared by the trainers."""
from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from gpt_sovits.errors import GSVError


log = logging.getLogger(__name__)


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


class StopSignal:
    """Turns the first SIGTERM/SIGINT into a request the training loop polls between steps.

    A scheduler's SIGTERM (preemption, a session that ends) or a Ctrl-C then costs at most the
    step in flight: the loop saves a checkpoint and returns normally. A second signal restores the
    previous handler and re-sends itself, so a stuck run can still be killed. Outside the main
    thread (where Python cannot install handlers) it installs nothing and never fires.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._requested = False
        self._previous: dict[int, object] = {}

    def requested(self) -> bool:
        return self._requested

    def _handle(self, signum: int, _frame: object) -> None:
        if self._requested:  # second signal: give up on the graceful stop
            self._restore()
            signal.raise_signal(signum)
            return
        self._requested = True
        log.warning("%s received: finishing the current step and saving a checkpoint "
                    "(send it again to stop at once)", signal.Signals(signum).name)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()
