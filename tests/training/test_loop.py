from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from training.loop import LoopError, StepLoop, total_steps
from training.state import Progress
from training.tracking import RunLogger, read_metrics

PER_EPOCH = 4


def _batches(epoch: int) -> list[list[int]]:
    # indices that name their epoch and position, so a skipped or repeated batch shows
    return [[epoch * 100 + i, epoch * 100 + i + 50] for i in range(PER_EPOCH)]


@dataclasses.dataclass
class Run:
    """Drives a StepLoop like a trainer does and keeps what it saw."""

    run_dir: Path
    progress: Progress = dataclasses.field(default_factory=Progress)
    seen: list[list[int]] = dataclasses.field(default_factory=list)
    saves: list[Progress] = dataclasses.field(default_factory=list)
    epochs_started: list[int] = dataclasses.field(default_factory=list)
    final: dict = dataclasses.field(default_factory=dict)

    def go(self, total: int, epochs: int = 3, log_every: int = 3, save_every_epochs: int = 2,
           save_every_steps: int = 0, stop_after: int | None = None) -> StepLoop:
        def epoch_batches(epoch: int) -> list[list[int]]:
            self.epochs_started.append(epoch)
            return _batches(epoch)

        with RunLogger(self.run_dir, total, self.progress.step, tensorboard=False, progress_bar=False) as logger:
            loop = StepLoop(self.progress, epoch_batches, epochs, total, logger,
                            lambda: self.saves.append(dataclasses.replace(self.progress)), log_every, save_every_epochs,
                            save_every_steps, None if stop_after is None else lambda: self.progress.step >= stop_after)
            for indices in loop:
                self.seen.append(indices)
                # a loss that depends on the step, as a tensor, the way the trainers hand it over
                loop.record({"loss": torch.tensor(float(self.progress.step)), "lr": 0.5})
            self.final = loop.final
        return loop


def _all_batches(epochs: int) -> list[list[int]]:
    return [b for e in range(epochs) for b in _batches(e)]


def test_straight_run_counts_logs_and_saves_on_cadence(tmp_path) -> None:
    run = Run(tmp_path)
    loop = run.go(total=10)
    assert run.seen == _all_batches(3)[:10]  # stops mid-epoch 2 at the step cap
    assert run.progress == Progress(step=10, epoch=2, batch_in_epoch=2)
    # saved when epoch 2 finished (every 2 epochs) and once at the end; epoch 1 is not a save point
    assert run.saves == [Progress(8, 2, 0), Progress(10, 2, 2)]
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 3, 6, 9, 10]  # first, every 3rd, and the last
    assert [r["epoch"] for r in records] == [0, 0, 1, 2, 2]
    assert [r["loss"] for r in records] == [0.0, 2.0, 5.0, 8.0, 9.0]  # the metrics of that very step
    assert loop.first == {"loss": 0.0, "lr": 0.5}
    assert run.final == {"loss": 9.0, "lr": 0.5}


def test_resume_mid_epoch_continues_exactly_where_the_straight_run_would(tmp_path) -> None:
    straight = Run(tmp_path / "straight")
    straight.go(total=10)

    split = Run(tmp_path / "split")
    split.go(total=6)  # stops at epoch 1, batch 2
    assert split.progress == Progress(step=6, epoch=1, batch_in_epoch=2)
    saved = split.saves[-1]
    assert saved == split.progress

    resumed = Run(tmp_path / "split", progress=dataclasses.replace(saved))
    loop = resumed.go(total=10)
    assert split.seen + resumed.seen == straight.seen  # no batch skipped or trained twice
    assert resumed.epochs_started == [1, 2]  # the interrupted epoch is rebuilt, then the next
    assert resumed.progress == straight.progress
    assert resumed.saves == [Progress(8, 2, 0), Progress(10, 2, 2)]
    # the resumed invocation logs its own first step, then keeps the global cadence
    assert [r["step"] for r in read_metrics(tmp_path / "split")] == [1, 3, 6, 7, 9, 10]
    assert loop.first == {"loss": 6.0, "lr": 0.5}


def test_cap_on_an_epoch_boundary_rolls_the_epoch_over(tmp_path) -> None:
    run = Run(tmp_path)
    run.go(total=8)
    assert run.progress == Progress(step=8, epoch=2, batch_in_epoch=0)
    assert run.saves == [Progress(8, 2, 0)]  # the epoch save point is also the final state: written once
    resumed = Run(tmp_path, progress=dataclasses.replace(run.progress))
    resumed.go(total=12)
    assert resumed.epochs_started == [2]  # starts the next epoch at its first batch
    assert resumed.seen == _batches(2)
    assert resumed.progress == Progress(step=12, epoch=3, batch_in_epoch=0)


def test_epochs_end_the_run_before_the_step_cap(tmp_path) -> None:
    run = Run(tmp_path)
    run.go(total=total_steps(2 * PER_EPOCH, None), epochs=2, save_every_epochs=1)
    assert run.seen == _all_batches(2)
    assert run.saves == [Progress(4, 1, 0), Progress(8, 2, 0)]


def test_a_finished_run_yields_nothing_and_reports_the_last_logged_metrics(tmp_path) -> None:
    Run(tmp_path).go(total=5)
    again = Run(tmp_path, progress=Progress(step=5, epoch=1, batch_in_epoch=1))
    loop = again.go(total=5)
    assert again.seen == [] and again.epochs_started == []
    assert again.saves == [Progress(5, 1, 1)]  # still writes the final checkpoint
    assert loop.first == {}
    assert again.final["step"] == 5 and again.final["loss"] == 4.0  # read back from metrics.jsonl


def test_step_cadence_saves_inside_long_epochs(tmp_path) -> None:
    run = Run(tmp_path)
    run.go(total=10, save_every_steps=3)
    # every 3rd step, the 2-epoch save point, and the end (the cap at step 10 is not a cadence step)
    assert run.saves == [Progress(3, 0, 3), Progress(6, 1, 2), Progress(8, 2, 0), Progress(9, 2, 1),
                         Progress(10, 2, 2)]


def test_a_stop_request_ends_after_the_step_with_a_checkpoint_that_resumes_exactly(tmp_path) -> None:
    straight = Run(tmp_path / "straight")
    straight.go(total=10)

    stopped = Run(tmp_path / "split")
    loop = stopped.go(total=10, stop_after=5)
    assert loop.stopped
    assert stopped.progress == Progress(step=5, epoch=1, batch_in_epoch=1)
    assert stopped.saves == [Progress(5, 1, 1)]  # saved once, where it stopped
    assert read_metrics(tmp_path / "split")[-1]["step"] == 5  # the last step is logged, not lost

    resumed = Run(tmp_path / "split", progress=dataclasses.replace(stopped.saves[-1]))
    again = resumed.go(total=10)
    assert not again.stopped
    assert stopped.seen + resumed.seen == straight.seen
    assert resumed.progress == straight.progress


def test_total_steps_is_the_schedule_unless_max_steps_is_smaller() -> None:
    assert total_steps(40, None) == 40
    assert total_steps(40, 0) == 40  # 0 means "no cap", as in the configs
    assert total_steps(40, 7) == 7
    assert total_steps(40, 100) == 40


def test_misuse_is_reported(tmp_path) -> None:
    with RunLogger(tmp_path, 4, tensorboard=False, progress_bar=False) as logger:
        loop = StepLoop(Progress(), _batches, 1, 4, logger, lambda: None)
        with pytest.raises(LoopError, match="without a batch"):
            loop.record({"loss": 1.0})
        batches = iter(loop)
        next(batches)
        with pytest.raises(LoopError, match="without record"):
            next(batches)
        loop2 = StepLoop(Progress(), _batches, 1, 4, logger, lambda: None)
        with pytest.raises(LoopError, match="twice"):
            for _ in loop2:
                loop2.record({"loss": 1.0})
                loop2.record({"loss": 1.0})
