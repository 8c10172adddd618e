"""Training logs: `metrics.jsonl` (always), TensorBoard (when installed) and a tqdm bar.

The JSONL file is the source of truth tests and scripts read; TensorBoard is for people. Losses
arrive as tensors and are turned into floats only on logging steps, so the GPU is not synced
every step.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


class RunLogger:
    """Writes scalars for one run folder; use as a context manager so files get closed."""

    def __init__(self, run_dir: Path, total_steps: int, initial_step: int = 0, desc: str = "train",
                 tensorboard: bool = True, progress_bar: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self._tb = self._open_tensorboard() if tensorboard else None
        self._bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, desc=desc, unit="step", dynamic_ncols=True)
        self._t0 = time.monotonic()
        self.last: dict[str, float] = {}

    def _open_tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is in the `train` extra; JSONL still works without it
            log.info("tensorboard not installed: logging to metrics.jsonl only")
            return None
        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def scalars(self, step: int, values: dict[str, torch.Tensor | float], epoch: int | None = None) -> dict[str, float]:
        """Record `values` at `step`; returns them as floats (also kept in `self.last`)."""
        floats = {k: float(v.detach().float().item()) if torch.is_tensor(v) else float(v) for k, v in values.items()}
        record: dict[str, Any] = {"step": step, "time_s": round(time.monotonic() - self._t0, 3), **floats}
        if epoch is not None:
            record["epoch"] = epoch
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in floats.items():
                self._tb.add_scalar(key, value, step)
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in list(floats.items())[:4]}, refresh=False)
        else:  # no bar (e.g. --no-progress, batch jobs): a periodic log line instead
            log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in floats.items()))
        self.last = floats
        return floats

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        self._jsonl.close()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of `metrics.jsonl` (for summaries and tests)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
