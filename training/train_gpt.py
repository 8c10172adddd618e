"""`gsv train gpt`: S1, teacher-forced cross-entropy fine-tune of the text->semantic GPT.

The model sees (phones, BERT features, semantic tokens) of each utterance and learns to predict
[y_0 .. y_T-1, EOS] (`T2SModel.training_loss`). The official loss is a sum over tokens; we divide
it by the number of real targets so the gradient-clipping threshold means the same thing for any
batch size. Defaults and the choice of AdamW are explained on `TrainS1Config`.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import time
from pathlib import Path

import torch
from torch import Tensor

from gpt_sovits.checkpoint import read_state, save_gpt
from gpt_sovits.config import GPTConfig
from gpt_sovits.t2s import T2SModel
from training.config import TrainS1Config
from training.dataset import DatasetDir, S1Dataset, collate_s1, make_batches, steps_per_epoch
from training.loop import StepLoop, TrainResult, total_steps
from training.runtime import Precision, StopSignal, resolve_device, resolve_precision, seed_everything
from training.schedules import set_lr, warmup_cosine
from training.state import Progress, latest_checkpoint, load_training_state, save_training_state
from training.tracking import RunLogger

log = logging.getLogger(__name__)


def load_gpt_for_training(base: Path, dropout: float) -> tuple[T2SModel, GPTConfig]:
    """The base GPT rebuilt with training dropout (official code trains with 0.1)."""
    weights, info = read_state(base)
    cfg = info.config
    assert isinstance(cfg, GPTConfig)
    model = T2SModel(dataclasses.replace(cfg, dropout=dropout))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, strict=True)
    return model, cfg


def build_optimizer(model: torch.nn.Module, cfg: TrainS1Config) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices (embeddings and projections), not on biases, norms, alphas."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
    )


def s1_step(batch: dict[str, Tensor], model: T2SModel, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
            prec: Precision, cfg: TrainS1Config) -> dict[str, Tensor]:
    """One optimizer step of teacher-forced cross-entropy; returns detached metrics."""
    with prec.autocast():
        loss_sum, metrics = model.training_loss(batch["phones"], batch["phone_lens"], batch["bert"],
                                                batch["semantic"], batch["semantic_lens"])
    loss = loss_sum / metrics["num_targets"].clamp(min=1)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    grad = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    scaler.step(opt)
    scaler.update()
    return {"loss/ce": loss.detach(), "top3_acc": metrics["top3_acc"], "grad_norm": grad.detach()}


def train_gpt(dataset_dir: Path, base_gpt: Path, out_dir: Path, cfg: TrainS1Config, resume: bool = True,
              progress_bar: bool = True) -> TrainResult:
    """Fine-tune the GPT on a prepared dataset; writes `out_dir/gpt.safetensors` (+ .json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / "train_s1_config.json")
    device = resolve_device(cfg.device)
    prec = resolve_precision(cfg.precision, device, prefer_bf16=True)
    seed_everything(cfg.seed)
    model, model_cfg = load_gpt_for_training(Path(base_gpt), cfg.dropout)
    model = model.to(device)
    data = S1Dataset(DatasetDir(dataset_dir), model_cfg.bert_dim, cfg.max_semantic_tokens, cfg.prompt_pairs)
    opt = build_optimizer(model, cfg)
    scaler = prec.scaler()
    progress = Progress()
    ckpt = latest_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        progress, _ = load_training_state(ckpt, {"gpt": model}, {"gpt": opt}, scaler)
        log.info("resuming S1 from %s (step %d, epoch %d)", ckpt, progress.step, progress.epoch)
    schedule_steps = cfg.epochs * steps_per_epoch(len(data), cfg.batch_size, cfg.min_items_per_epoch)
    total = total_steps(schedule_steps, cfg.max_steps)
    t0 = time.monotonic()

    def epoch_batches(epoch: int) -> list[list[int]]:
        return make_batches(data.lengths(), cfg.batch_size, cfg.seed, epoch, cfg.min_items_per_epoch)

    def save() -> None:
        save_training_state(out_dir, {"gpt": model}, {"gpt": opt}, scaler, progress,
                            {"train_config": cfg.to_dict()}, cfg.keep_checkpoints)

    model.train()
    with StopSignal() as stop, RunLogger(out_dir, total, progress.step, "train gpt",
                                         progress_bar=progress_bar) as logger:
        loop = StepLoop(progress, epoch_batches, cfg.epochs, total, logger, save, cfg.log_every_steps,
                        cfg.save_every_epochs, cfg.save_every_steps, stop.requested)
        for indices in loop:
            # the schedule spans all epochs even when max_steps stops the run early
            lr = warmup_cosine(progress.step, schedule_steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
            set_lr(opt, lr)
            # seeded by step, so a resumed run draws the same prompt pairs
            rng = random.Random(cfg.seed * 1_000_003 + progress.step)
            rows = [data.sample(i, rng) for i in indices]
            batch = {k: v.to(device) for k, v in collate_s1(rows, model_cfg.eos).items()}
            metrics = s1_step(batch, model, opt, scaler, prec, cfg)
            loop.record({**metrics, "lr": lr})
        final = loop.final
    info = {"source": "gsv train gpt", "steps": progress.step, "epochs": progress.epoch}
    weights = save_gpt(model, model_cfg, out_dir / "gpt", info, dtype=torch.float16)
    return TrainResult(weights, progress.step, time.monotonic() - t0, final, loop.first, loop.stopped)
