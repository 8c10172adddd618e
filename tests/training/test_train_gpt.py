from __future__ import annotations

import torch
from safetensors.torch import load_file

from gpt_sovits.checkpoint import load_gpt
from training.config import TrainS1Config
from training.state import latest_checkpoint
from training.tracking import read_metrics
from training.train_gpt import train_gpt


def _cfg(**kw) -> TrainS1Config:
    base = dict(batch_size=4, lr=1e-3, warmup_steps=3, log_every_steps=1, device="cpu", epochs=15)
    return TrainS1Config(**{**base, **kw})


def test_cross_entropy_goes_down(slt_dataset, tiny_base, tmp_path) -> None:
    ds, _ = slt_dataset
    result = train_gpt(ds.root, tiny_base[0], tmp_path / "run", _cfg(max_steps=24), progress_bar=False)
    losses = [r["loss/ce"] for r in read_metrics(tmp_path / "run")]
    assert len(losses) == 24 == result.steps
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
    model, cfg = load_gpt(result.weights)
    base, _ = load_gpt(tiny_base[0])
    assert not torch.equal(model.ar_predict_layer.weight, base.ar_predict_layer.weight)
    assert (tmp_path / "run" / "train_s1_config.json").is_file()


def test_resume_continues_from_the_saved_step_with_identical_state(slt_dataset, tiny_base, tmp_path) -> None:
    ds, _ = slt_dataset
    straight = tmp_path / "straight"
    train_gpt(ds.root, tiny_base[0], straight, _cfg(max_steps=8), progress_bar=False)
    split = tmp_path / "split"
    train_gpt(ds.root, tiny_base[0], split, _cfg(max_steps=5), progress_bar=False)
    first_half = load_file(str(latest_checkpoint(split) / "optim_gpt.safetensors"))
    assert int(first_half["0.step"]) == 5
    result = train_gpt(ds.root, tiny_base[0], split, _cfg(max_steps=8), progress_bar=False)
    assert result.steps == 8
    assert [r["step"] for r in read_metrics(split)] == list(range(1, 9))
    a, b = latest_checkpoint(straight), latest_checkpoint(split)
    for name in ("gpt.safetensors", "optim_gpt.safetensors"):
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        assert ta.keys() == tb.keys()
        for key in ta:
            torch.testing.assert_close(ta[key], tb[key], rtol=0, atol=1e-6, msg=f"{name}:{key}")


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_the_run_resumes(slt_dataset, tiny_base, tmp_path,
                                                                              monkeypatch) -> None:
    import os
    import signal

    from training import train_gpt as module

    ds, _ = slt_dataset
    real_step, calls = module.s1_step, []

    def step_then_sigterm(*args, **kwargs):
        out = real_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:  # a scheduler's SIGTERM lands while step 3 is being recorded
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(module, "s1_step", step_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    run = tmp_path / "run"
    result = train_gpt(ds.root, tiny_base[0], run, _cfg(max_steps=8, log_every_steps=5), progress_bar=False)
    assert result.stopped and result.steps == 3 and len(calls) == 3
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is gone with the run
    assert int(load_file(str(latest_checkpoint(run) / "optim_gpt.safetensors"))["0.step"]) == 3
    assert [r["step"] for r in read_metrics(run)] == [1, 3]  # step 3 is logged although not a cadence step

    monkeypatch.setattr(module, "s1_step", real_step)
    again = train_gpt(ds.root, tiny_base[0], run, _cfg(max_steps=8, log_every_steps=5), progress_bar=False)
    assert not again.stopped and again.steps == 8
    assert [r["step"] for r in read_metrics(run)] == [1, 3, 4, 5, 8]
