"""The epoch/batch bookkeeping both trainers share, so each trainer's loop shows only its step.

`StepLoop` walks (epoch, batch) from wherever a `Progress` says the run stands and yields the
dataset indices of each batch. The trainer runs its step on them and hands the metrics to
`record`, which counts the step, logs on the configured cadence, and the loop saves a checkpoint
every `save_every_epochs` finished epochs and once more at the end.

Resuming relies on the batches of an epoch being a pure function of the epoch number
(`make_batches` is seeded by it): a run restored at `batch_in_epoch` skips exactly the batches it
already trained on, and the counters land where an uninterrupted run would have them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from gpt_sovits.errors import GSVError
from training.state import Progress
from training.tracking import RunLogger, read_metrics


class LoopError(GSVError):
    """The trainer drove `StepLoop` wrongly (a batch without `record`, or `record` without a batch)."""

    code = "training_loop_error"


@dataclass
class TrainResult:
    """What a training run produced (also printed by the CLI)."""

    weights: Path
    steps: int
    seconds: float
    final: dict[str, float] = field(default_factory=dict)
    """Last logged metrics."""
    first: dict[str, float] = field(default_factory=dict)
    """First logged metrics of this invocation (to show the drop)."""


def total_steps(schedule_steps: int, max_steps: int | None) -> int:
    """Steps a run stops after: the whole schedule, or `max_steps` when that is set and smaller."""
    return min(schedule_steps, max_steps or 1 << 62)


@dataclass
class StepLoop:
    """Iterate it for the batches of a run; call `record(metrics)` once after each step."""

    progress: Progress
    """Updated in place: a checkpoint saved by `save` captures where the run stands."""
    epoch_batches: Callable[[int], list[list[int]]]
    """Batches (dataset indices) of an epoch, called at the start of each epoch (a resumed one too)."""
    epochs: int
    total: int
    """Step count at which the run stops, even mid-epoch (see `total_steps`)."""
    logger: RunLogger
    save: Callable[[], object]
    """Writes a training checkpoint of the current `progress`."""
    log_every: int = 1
    save_every_epochs: int = 1
    first: dict[str, float] = field(default_factory=dict)
    """Metrics of the first step this invocation logged (always logged, to show the starting point)."""
    _awaiting_record: bool = field(default=False, init=False, repr=False)

    def __iter__(self) -> Iterator[list[int]]:
        p = self.progress
        while p.epoch < self.epochs and p.step < self.total:
            batches = self.epoch_batches(p.epoch)
            for indices in batches[p.batch_in_epoch :]:
                self._awaiting_record = True
                yield indices
                if self._awaiting_record:
                    raise LoopError("a training step finished without record(metrics): the step would not be counted")
                if p.step >= self.total:
                    break
            if p.batch_in_epoch >= len(batches):  # the epoch finished (not cut short by `total`)
                p.epoch += 1
                p.batch_in_epoch = 0
                if p.epoch % self.save_every_epochs == 0:
                    self.save()
        self.save()

    def record(self, metrics: Mapping[str, Tensor | float]) -> None:
        """Count the step just taken; log `metrics` on logging steps (tensors are only synced then)."""
        if not self._awaiting_record:
            raise LoopError("record() called without a batch from the loop, or twice for one batch")
        self._awaiting_record = False
        p = self.progress
        p.step += 1
        p.batch_in_epoch += 1
        self.logger.advance()
        if p.step % self.log_every == 0 or p.step == self.total or not self.first:
            floats = self.logger.scalars(p.step, dict(metrics), p.epoch)
            self.first = self.first or floats

    @property
    def final(self) -> dict[str, float]:
        """Last logged metrics; a run with nothing left to do reports the last ones in its folder."""
        return self.logger.last or (read_metrics(self.logger.run_dir) or [{}])[-1]
