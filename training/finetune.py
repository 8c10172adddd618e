"""`gsv finetune`: the one-minute recipe, prepare -> S2 (SoVITS) -> S1 (GPT) -> our weight files.

Output folder::

    OUT/
      gpt.safetensors + gpt.json         fine-tuned GPT (fp16, our format)
      sovits.safetensors + sovits.json   fine-tuned SoVITS (fp16, no posterior encoder)
      finetune.json                      summary: inputs, configs, losses, timings
      dataset/                           the prepared dataset (`training.dataset`)
      s2/  s1/                           training runs: configs, metrics.jsonl, TensorBoard, checkpoints
      base_tiny/                         only with random_tiny: the random base models used

Every stage resumes: rerunning the same command after an interruption skips finished dataset
items and continues training from the last checkpoint.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpt_sovits.checkpoint import save_gpt, save_sovits
from gpt_sovits.errors import GSVError, ModelNotFoundError
from training.config import PrepareConfig, TrainS1Config, TrainS2Config
from training.dataset import atomic_write_text
from training.features import FeatureModels
from training.prepare import PrepareReport, prepare_dataset
from training.runtime import resolve_device
from training.train_gpt import train_gpt
from training.train_sovits import TrainResult, train_sovits
from training.transcripts import SourceAudio, WhisperTranscriber

log = logging.getLogger(__name__)


@dataclass
class BaseModels:
    """Where the pretrained models come from (paths), or random tiny ones for tests."""

    gpt: Path | None = None
    sovits: Path | None = None
    hubert: Path | None = None
    bert: Path | None = None
    discriminator: Path | None = None
    random_tiny: bool = False
    seed: int = 0

    def check(self) -> None:
        """Every needed path exists, else a ModelNotFoundError that says which one."""
        if self.random_tiny:
            return
        needed = {"gpt": "the base GPT (--base-gpt, e.g. s1bert25hz-*.ckpt)",
                  "sovits": "the base SoVITS (--base-sovits, e.g. s2G2333k.pth)",
                  "hubert": "the chinese-hubert-base folder (--hubert)"}
        for name, what in needed.items():
            path = getattr(self, name)
            if path is None or not Path(path).exists():
                raise ModelNotFoundError(path or f"<no --{name} given>", what)


@dataclass
class FinetuneResult:
    out_dir: Path
    gpt: Path
    sovits: Path
    seconds: float
    dataset: PrepareReport
    s2: TrainResult
    s1: TrainResult
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """What a person needs after the run: time, losses, where the weights are, how to use them."""
        def losses(r: TrainResult, keys: tuple[str, ...]) -> str:
            return ", ".join(f"{k} {r.first.get(k, float('nan')):.3g} -> {r.final.get(k, float('nan')):.3g}"
                             for k in keys if k in r.final)
        return "\n".join([
            f"fine-tune finished in {self.seconds / 60:.1f} min",
            f"  data:   {self.dataset.summary()}",
            f"  SoVITS: {self.s2.steps} steps, {losses(self.s2, ('loss/mel', 'loss/kl', 'loss/g_total'))}",
            f"  GPT:    {self.s1.steps} steps, {losses(self.s1, ('loss/ce', 'top3_acc'))}",
            f"  weights: {self.gpt}",
            f"           {self.sovits}",
            "use them:",
            f"  gsv clone RECORDING.wav --gpt-weights {self.gpt} --sovits-weights {self.sovits}",
            "  or upload both files with the voice to the service (voice weights).",
        ])


def make_random_tiny_base(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the GPT and SoVITS of `ModelBundle.random_tiny(seed)` as base files (the SoVITS with a
    seeded random posterior encoder, which the bundle does not need), so the fine-tuned weights
    attach to that same bundle."""
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.sovits.model import SynthesizerTrn

    gpt_path, sovits_path = out_dir / "gpt.safetensors", out_dir / "sovits.safetensors"
    if gpt_path.is_file() and sovits_path.is_file():
        return gpt_path, sovits_path  # a rerun: keep the files the dataset and runs were made with
    bundle = ModelBundle.random_tiny(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        sovits = SynthesizerTrn(bundle.sovits_config, with_posterior=True)
    sovits.load_state_dict(bundle.sovits.state_dict(), strict=False)
    gpt_path = save_gpt(bundle.gpt, bundle.gpt_config, out_dir / "gpt", {"source": f"random-tiny-{seed}"})
    sovits_path = save_sovits(sovits, bundle.sovits_config, out_dir / "sovits", {"source": f"random-tiny-{seed}"})
    return gpt_path, sovits_path


def _feature_models(base: BaseModels, sovits: Path, device: str) -> FeatureModels:
    if base.random_tiny:
        return FeatureModels.random_tiny(base.seed, sovits)
    assert base.hubert is not None
    return FeatureModels.from_paths(sovits, base.hubert, base.bert, resolve_device(device))


def finetune(sources: list[SourceAudio], out_dir: Path, base: BaseModels, prepare_cfg: PrepareConfig,
             s2_cfg: TrainS2Config, s1_cfg: TrainS1Config, asr_model: Path | None = None,
             progress: bool = True) -> FinetuneResult:
    """Run the whole recipe into `out_dir`; see the module docstring for the layout."""
    t0 = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base.check()
    gpt_base, sovits_base = base.gpt, base.sovits
    if base.random_tiny:
        gpt_base, sovits_base = make_random_tiny_base(out_dir / "base_tiny", base.seed)
    assert gpt_base is not None and sovits_base is not None
    transcriber = WhisperTranscriber(asr_model, prepare_cfg.device) if asr_model else None

    log.info("1/3 preparing the dataset")
    models = _feature_models(base, Path(sovits_base), prepare_cfg.device)
    report = prepare_dataset(sources, out_dir / "dataset", prepare_cfg, models, transcriber,
                             str(asr_model or ""), progress)
    del models  # free HuBERT/BERT before training
    log.info("2/3 fine-tuning SoVITS (S2)")
    s2 = train_sovits(out_dir / "dataset", Path(sovits_base), out_dir / "s2", s2_cfg, base.discriminator,
                      progress_bar=progress)
    _stop_if_asked(s2, "SoVITS", out_dir / "s2")
    log.info("3/3 fine-tuning the GPT (S1)")
    s1 = train_gpt(out_dir / "dataset", Path(gpt_base), out_dir / "s1", s1_cfg, progress_bar=progress)
    _stop_if_asked(s1, "GPT", out_dir / "s1")

    gpt_out, sovits_out = _publish(s1.weights, out_dir / "gpt"), _publish(s2.weights, out_dir / "sovits")
    result = FinetuneResult(out_dir, gpt_out, sovits_out, time.monotonic() - t0, report, s2, s1)
    _write_summary(result, base, prepare_cfg, s2_cfg, s1_cfg)
    return result


class FinetuneStopped(GSVError):
    """A SIGTERM/Ctrl-C ended a stage early; its checkpoint is saved and the same command resumes."""

    code = "finetune_stopped"


def _stop_if_asked(result: TrainResult, stage: str, run_dir: Path) -> None:
    # the next stage must not start from a half-trained one: stop the whole recipe here
    if result.stopped:
        raise FinetuneStopped(f"stopped during the {stage} stage at step {result.steps}; its checkpoint is in "
                              f"{run_dir}. Run the same command again to resume from there.")


def _publish(weights: Path, stem: Path) -> Path:
    """Copy a run's `<name>.safetensors` + `.json` to the top of the output folder."""
    target = stem.with_name(stem.name + ".safetensors")
    shutil.copyfile(weights.with_suffix(".json"), stem.with_name(stem.name + ".json.tmp"))
    shutil.copyfile(weights, target.with_name(target.name + ".tmp"))
    target.with_name(target.name + ".tmp").replace(target)
    stem.with_name(stem.name + ".json.tmp").replace(stem.with_name(stem.name + ".json"))
    return target


def _write_summary(result: FinetuneResult, base: BaseModels, prepare_cfg: PrepareConfig,
                   s2_cfg: TrainS2Config, s1_cfg: TrainS1Config) -> None:
    data = {
        "gpt": str(result.gpt), "sovits": str(result.sovits), "seconds": round(result.seconds, 1),
        "base": {k: str(v) if isinstance(v, Path) else v for k, v in vars(base).items()},
        "dataset": {"accepted": result.dataset.accepted, "seconds": round(result.dataset.kept_seconds, 2),
                    "rejected": len(result.dataset.rejected)},
        "s2": {"steps": result.s2.steps, "first": result.s2.first, "final": result.s2.final},
        "s1": {"steps": result.s1.steps, "first": result.s1.first, "final": result.s1.final},
        "configs": {"prepare": prepare_cfg.to_dict(), "s2": s2_cfg.to_dict(), "s1": s1_cfg.to_dict()},
    }
    atomic_write_text(result.out_dir / "finetune.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
