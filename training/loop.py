"""The epoch/batch bookkeeping both trainers share, so each trainer's loop shows only its step.

`StepLoop` walks (epoch, batch) from wherever a `Progress` says the run stands and yields the
dataset indices of each batch. The trainer runs its step on them and hands the metrics to
`record`, which counts the step, logs on the configured cadence, and the loop saves a checkpoint
every `save_every_epochs` finished epochs, every `save_every_steps` steps when set (an epoch of a
big dataset on a slow machine can outlast the session that runs it), and once more at the end.
When `stop()` turns true (a SIGTERM from a scheduler, a Ctrl-C) the loop ends after the current
step and saves, so an interrupted run loses nothing and resumes with the same command.

Resuming relies on the batches of an epoch being a pure function of the epoch number
(`make_batches` is seeded by it): a run restored at `batch_in_epoch` skips exactly the batches it
already trained on, and the counters land where an uninterrupted run would have them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from gpt_sovits.errors import GSVError
from training.state import Progress
from training.tracking import RunLogger, read_metrics

log = logging.getLogger(__name__)


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
    stopped: bool = False
    """Ended early on a stop request (SIGTERM/Ctrl-C); its last checkpoint resumes it."""


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
    save_every_steps: int = 0
    """Also save every N steps; 0 = only per epoch and at the end."""
    stop: Callable[[], bool] | None = None
    """Polled after every step; true ends the run early (with a checkpoint), e.g. `StopSignal.requested`."""
    stopped: bool = field(default=False, init=False)
    """The run ended because `stop()` asked it to."""
    first: dict[str, float] = field(default_factory=dict)
    """Metrics of the first step this invocation logged (always logged, to show the starting point)."""
    _awaiting_record: bool = field(default=False, init=False, repr=False)
    _saved_at: int = field(default=-1, init=False, repr=False)
    _unlogged: Mapping[str, Tensor | float] | None = field(default=None, init=False, repr=False)

    def __iter__(self) -> Iterator[list[int]]:
        p = self.progress
        while p.epoch < self.epochs and p.step < self.total and not self.stopped:
            batches = self.epoch_batches(p.epoch)
            for indices in batches[p.batch_in_epoch :]:
                self._awaiting_record = True
                yield indices
                if self._awaiting_record:
                    raise LoopError("a training step finished without record(metrics): the step would not be counted")
                if self.stop is not None and self.stop():
                    self.stopped = True
                    if self._unlogged is not None:
                        self._log(self._unlogged)
                    log.warning("stop requested: saving a checkpoint at step %d; run the same command to resume",
                                p.step)
                if p.step >= self.total or self.stopped:
                    break
                if self.save_every_steps and p.step % self.save_every_steps == 0:
                    self._save()
            if p.batch_in_epoch >= len(batches):  # the epoch finished (not cut short by `total` or a stop)
                p.epoch += 1
                p.batch_in_epoch = 0
                if p.epoch % self.save_every_epochs == 0:
                    self._save()
        self._save()

    def _save(self) -> None:
        """Checkpoint the current progress once per (step, epoch) position: the end-of-run save
        right after an epoch's or a step cadence's save would write the same state again."""
        key = self.progress.step * 2 + (self.progress.batch_in_epoch == 0)
        if key != self._saved_at:
            self.save()
            self._saved_at = key

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
            self._log(metrics)
            self._unlogged = None
        else:
            self._unlogged = metrics  # logged after all if a stop request makes this the run's last step

    def _log(self, metrics: Mapping[str, Tensor | float]) -> None:
        floats = self.logger.scalars(self.progress.step, dict(metrics), self.progress.epoch)
        self.first = self.first or floats

    @property
    def final(self) -> dict[str, float]:
        """Last logged metrics; a run with nothing left to do reports the last ones in its folder."""
        return self.logger.last or (read_metrics(self.logger.run_dir) or [{}])[-1]
