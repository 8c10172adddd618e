"""`gsv train sovits`: S2, the VITS-style GAN fine-tune of SoVITS from a pretrained base.

One step = a discriminator update on (real slice, detached generated slice), then a generator
update on LSGAN + feature matching + 45 x mel L1 + KL (+ the quantizer commitment, 0 while
frozen). Recipe facts (official `s2_train.py`): AdamW(1e-4, betas 0.8/0.99, eps 1e-9) for both
nets, the text branch (`enc_p.text_embedding`, `encoder_text`, `mrte`) at 0.4 x LR, ExponentialLR
0.999875 per epoch, fp16 autocast with one GradScaler, quantizer and `ssl_proj` frozen.
"""
from __future__ import annotations

import contextlib

import dataclasses
import logging
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from gpt_sovits.checkpoint import read_state, save_sovits
from gpt_sovits.checkpoint_legacy import classify_weights, read_official
from gpt_sovits.config import SoVITSConfig
from gpt_sovits.errors import CheckpointError
from gpt_sovits.sovits.commons import slice_segments
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.sovits.spectrogram import log_mel_spectrogram, spec_to_log_mel
from training.config import TrainS2Config
from training.dataset import DatasetDir, S2Dataset, collate_s2, make_batches, steps_per_epoch
from training.loop import StepLoop, TrainResult, total_steps
from training.runtime import Precision, StopSignal, resolve_device, resolve_precision, seed_everything
from training.schedules import exponential, set_lr
from training.state import Progress, latest_checkpoint, load_training_state, save_training_state
from training.tracking import RunLogger
from vocoder.discriminators import MultiPeriodDiscriminator
from vocoder.losses import (
    discriminator_loss,
    feature_loss,
    generator_loss,
    kl_loss,
    mel_loss,
    multi_resolution_stft_loss,
)

log = logging.getLogger(__name__)
TEXT_BRANCH = ("enc_p.text_embedding.", "enc_p.encoder_text.", "enc_p.mrte.")
"""Parameters trained at `text_low_lr_rate` x LR (official)."""
FROZEN = ("ssl_proj.", "quantizer.")
"""Not trained when `freeze_quantizer` (official fine-tunes): the tokens must keep their meaning."""


# ------------------------------------------------------------------------------------- models


def load_generator(base: Path, segment_frames: int | None = None,
                   generator: str | None = None) -> tuple[SynthesizerTrn, SoVITSConfig]:
    """SynthesizerTrn with its posterior encoder from any SoVITS file; a file without `enc_q`
    (an exported fine-tune) still works, but the posterior then starts from random weights.
    `generator` other than the file's own decoder kind replaces `dec` by a random one of that kind.

    Returns the model and its config (`segment_frames` only changes the training slice).
    """
    weights, info = read_state(base)
    cfg = info.config
    assert isinstance(cfg, SoVITSConfig)
    if cfg.use_sv:
        raise CheckpointError(
            f"'{base}' is a {cfg.version} model: fine-tuning the Pro variants needs speaker-verification "
            "embeddings per utterance, which `gsv prepare` does not compute yet. Use a v2 base.",
            code="unsupported_base",
        )
    fresh: tuple[str, ...] = ("enc_q.",)
    if generator is not None and generator != cfg.generator:
        log.info("'%s' has a %s decoder: replacing it with a randomly initialised %s one", base, cfg.generator,
                 generator)
        cfg = dataclasses.replace(cfg, generator=generator)
        weights = {k: v for k, v in weights.items() if not k.startswith("dec.")}
        fresh += ("dec.",)
    train_cfg = dataclasses.replace(cfg, segment_size=segment_frames) if segment_frames else cfg
    net_g = SynthesizerTrn(train_cfg, with_posterior=True)
    result = net_g.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
                                   strict=False)
    if result.unexpected_keys or any(not k.startswith(fresh) for k in result.missing_keys):
        raise CheckpointError(f"'{base}' does not fit SynthesizerTrn: missing {result.missing_keys[:5]}, "
                              f"unexpected {result.unexpected_keys[:5]}")
    if any(k.startswith("enc_q.") for k in result.missing_keys):
        log.warning("'%s' has no posterior encoder (enc_q): it starts from random weights. "
                    "Fine-tune from a pretrained s2G file for best results.", base)
    return net_g, cfg


def load_discriminator(path: Path | None, periods: list[int]) -> MultiPeriodDiscriminator:
    """MPD from an official s2D `.pth` or a `.safetensors` of ours; random when `path` is None."""
    if path is None:
        log.warning("no base discriminator given: it starts from random weights (slower, noisier start)")
        return MultiPeriodDiscriminator(periods)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        weights = load_file(str(path))
    else:
        weights = read_official(path).weight
        if classify_weights(weights) != "discriminator":
            raise CheckpointError(f"'{path}' is not a SoVITS discriminator (s2D) file.")
    n = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("discriminators."))
    periods = periods if len(periods) == n - 1 else [2, 3, 5, 7, 11, 17, 23][: n - 1]
    net_d = MultiPeriodDiscriminator(periods)
    try:
        net_d.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"'{path}' does not fit the discriminator: {exc}") from exc
    return net_d


def find_discriminator(base_sovits: Path) -> Path | None:
    """Official pretrained pairs are named s2G*.pth / s2D*.pth: find the D beside the G."""
    if "s2G" in base_sovits.name:
        candidate = base_sovits.with_name(base_sovits.name.replace("s2G", "s2D"))
        if candidate.is_file():
            return candidate
    return None


def build_optimizers(net_g: SynthesizerTrn, net_d: nn.Module, cfg: TrainS2Config) -> tuple[torch.optim.AdamW, torch.optim.AdamW]:
    """Generator groups: text branch at `text_low_lr_rate` x LR, the rest at LR. The quantizer
    path is left out while the model config freezes it (every fine-tune; pretraining may not);
    with `decoder_only` everything but `dec` is."""
    frozen = FROZEN if net_g.cfg.freeze_quantizer else ()
    base, text = [], []
    for name, param in net_g.named_parameters():
        if (frozen and name.startswith(frozen)) or (cfg.decoder_only and not name.startswith("dec.")):
            param.requires_grad_(False)
        if not param.requires_grad:
            continue
        (text if name.startswith(TEXT_BRANCH) else base).append(param)
    kw = {"lr": cfg.lr, "betas": cfg.betas, "eps": cfg.eps}
    opt_g = torch.optim.AdamW([{"params": base, "lr_scale": 1.0},
                               {"params": text, "lr_scale": cfg.text_low_lr_rate}], **kw)
    opt_d = torch.optim.AdamW([{"params": list(net_d.parameters()), "lr_scale": 1.0}], **kw)
    return opt_g, opt_d


def train_mode(net_g: SynthesizerTrn, net_d: nn.Module, decoder_only: bool = False) -> None:
    """Train mode, except the frozen quantizer path (no EMA codebook updates, as official), and
    with `decoder_only` everything but the decoder (its inputs stay deterministic up to z's noise)."""
    net_g.train()
    net_d.train()
    if decoder_only:
        for name, module in net_g.named_children():
            module.train(name == "dec")
    if net_g.cfg.freeze_quantizer:
        net_g.ssl_proj.eval()
        net_g.quantizer.eval()


# -------------------------------------------------------------------------------------- step


def _clip(params: list[Tensor], max_norm: float) -> Tensor:
    return torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))


def s2_step(batch: dict[str, Tensor], net_g: SynthesizerTrn, net_d: nn.Module, opt_g: torch.optim.Optimizer,
            opt_d: torch.optim.Optimizer, scaler: torch.amp.GradScaler, prec: Precision, cfg: TrainS2Config,
            model_cfg: SoVITSConfig, adversarial: bool = True) -> dict[str, Tensor]:
    """One GAN step on a batch: discriminator update, then generator update. Returns detached losses.

    `adversarial=False` (before `cfg.adv_start_step`) skips the discriminator: mel + KL only."""
    hop, seg = model_cfg.hop_length, net_g.cfg.segment_size
    out = None
    # the global RNG is seeded and checkpointed, so resumed runs draw the same choices
    use_prior = bool(cfg.decoder_prior_share) and float(torch.rand(())) < cfg.decoder_prior_share
    with prec.autocast():
        if cfg.decoder_only or use_prior:
            # decoder_only: the latents are inputs (no gradient). A whole-model prior step instead
            # trains text encoder, flow, style and decoder end to end on the path synthesis uses.
            with torch.no_grad() if cfg.decoder_only else contextlib.nullcontext():
                if use_prior:
                    z_slice, ids_slice, ge = net_g.prior_slice(
                        batch["ssl"], batch["spec"], batch["spec_lens"], batch["phones"], batch["phone_lens"],
                        cfg.decoder_prior_noise)
                else:
                    z_slice, ids_slice, ge = net_g.posterior_slice(batch["spec"], batch["spec_lens"])
            y_hat = net_g.dec(z_slice, g=ge)
        else:
            out = net_g(batch["ssl"], batch["spec"], batch["spec_lens"], batch["phones"], batch["phone_lens"])
            y_hat, ids_slice = out.y_hat, out.ids_slice
        y = slice_segments(batch["wav"], ids_slice * hop, seg * hop)
    zero = torch.zeros((), device=y.device)
    loss_d, grad_d = zero, zero
    if adversarial:
        # --- 1. discriminator: real vs generated (detached, so G gets no gradient here)
        with prec.autocast():
            real, fake, _, _ = net_d(y, y_hat.detach())
        loss_d, _, _ = discriminator_loss(real, fake)
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.unscale_(opt_d)
        grad_d = _clip(list(net_d.parameters()), cfg.grad_clip)
        scaler.step(opt_d)

    # --- 2. generator: fool the updated D, match its features, reconstruct the mel, fit the prior
    loss_fm, loss_adv = zero, zero
    if adversarial:
        with prec.autocast():
            _, fake, fmap_real, fmap_fake = net_d(y, y_hat)
        loss_fm = feature_loss(fmap_real, fmap_fake)
        loss_adv, _ = generator_loss(fake)
    mel_real = slice_segments(spec_to_log_mel(batch["spec"].float(), model_cfg.sampling_rate,
                                              model_cfg.n_mel_channels), ids_slice, seg)
    mel_fake = log_mel_spectrogram(y_hat.squeeze(1).float(), model_cfg.sampling_rate, model_cfg.filter_length,
                                   hop, model_cfg.win_length, model_cfg.n_mel_channels)
    loss_mel = mel_loss(mel_real, mel_fake) * cfg.c_mel
    loss_stft = multi_resolution_stft_loss(y, y_hat) * cfg.c_stft if cfg.c_stft else zero
    loss_g = cfg.c_adv * (loss_adv + loss_fm) + loss_mel + loss_stft
    loss_kl = zero
    if out is not None:  # decoder_only and prior steps have no posterior to fit the prior to
        loss_kl = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.y_mask) * cfg.c_kl
        loss_g = loss_g + loss_kl + out.commit_loss.float()
    opt_g.zero_grad(set_to_none=True)
    scaler.scale(loss_g).backward()
    scaler.unscale_(opt_g)
    grad_g = _clip([p for p in net_g.parameters() if p.requires_grad], cfg.grad_clip)
    scaler.step(opt_g)
    scaler.update()
    return {"loss/d": loss_d.detach(), "loss/g_total": loss_g.detach(), "loss/g_adv": loss_adv.detach(),
            "loss/fm": loss_fm.detach(), "loss/mel": loss_mel.detach(), "loss/stft": loss_stft.detach(),
            "loss/kl": loss_kl.detach(),
            "grad_norm/g": grad_g.detach(), "grad_norm/d": grad_d.detach()}


# -------------------------------------------------------------------------------------- loop


def train_sovits(dataset_dir: Path, base_sovits: Path, out_dir: Path, cfg: TrainS2Config,
                 base_discriminator: Path | None = None, resume: bool = True, progress_bar: bool = True) -> TrainResult:
    """Fine-tune SoVITS on a prepared dataset; writes `out_dir/sovits.safetensors` (+ .json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / "train_s2_config.json")
    device = resolve_device(cfg.device)
    prec = resolve_precision(cfg.precision, device, prefer_bf16=False)
    seed_everything(cfg.seed)
    net_g, model_cfg = load_generator(Path(base_sovits), cfg.segment_frames, cfg.generator)
    net_d = load_discriminator(base_discriminator or find_discriminator(Path(base_sovits)), cfg.discriminator_periods)
    net_g, net_d = net_g.to(device), net_d.to(device)
    data = S2Dataset(DatasetDir(dataset_dir), model_cfg.hop_length, cfg.max_frames, cfg.seed)
    opt_g, opt_d = build_optimizers(net_g, net_d, cfg)
    scaler = prec.scaler()
    progress = Progress()
    ckpt = latest_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        progress, _ = load_training_state(ckpt, {"generator": net_g, "discriminator": net_d},
                                          {"g": opt_g, "d": opt_d}, scaler)
        log.info("resuming S2 from %s (step %d, epoch %d)", ckpt, progress.step, progress.epoch)
    total = total_steps(cfg.epochs * steps_per_epoch(len(data), cfg.batch_size, cfg.min_items_per_epoch),
                        cfg.max_steps)
    t0 = time.monotonic()

    def epoch_batches(epoch: int) -> list[list[int]]:
        data.epoch = epoch  # long utterances get a fresh random crop each epoch
        return make_batches(data.lengths(), cfg.batch_size, cfg.seed, epoch, cfg.min_items_per_epoch)

    def save() -> None:
        save_training_state(out_dir, {"generator": net_g, "discriminator": net_d}, {"g": opt_g, "d": opt_d},
                            scaler, progress, {"train_config": cfg.to_dict()}, cfg.keep_checkpoints)

    train_mode(net_g, net_d, cfg.decoder_only)
    with StopSignal() as stop, RunLogger(out_dir, total, progress.step, "train sovits",
                                         progress_bar=progress_bar) as logger:
        loop = StepLoop(progress, epoch_batches, cfg.epochs, total, logger, save, cfg.log_every_steps,
                        cfg.save_every_epochs, cfg.save_every_steps, stop.requested)
        for indices in loop:
            lr = exponential(progress.epoch, cfg.lr, cfg.lr_decay)  # decays per finished epoch, not per step
            set_lr(opt_g, lr)
            set_lr(opt_d, lr)
            batch = {k: v.to(device) for k, v in collate_s2([data[i] for i in indices]).items()}
            adversarial = progress.step >= cfg.adv_start_step  # mel + KL only before it
            metrics = s2_step(batch, net_g, net_d, opt_g, opt_d, scaler, prec, cfg, model_cfg, adversarial)
            loop.record({**metrics, "lr": lr})
        final = loop.final
    weights = export_sovits(net_g, model_cfg, out_dir / "sovits", {"steps": progress.step, "epochs": progress.epoch})
    return TrainResult(weights, progress.step, time.monotonic() - t0, final, loop.first, loop.stopped)


def export_sovits(net_g: SynthesizerTrn, cfg: SoVITSConfig, path: Path, info: dict) -> Path:
    """Inference weights in our format: fp16, without the training-only posterior encoder."""
    state = {k: v for k, v in net_g.state_dict().items() if not k.startswith("enc_q.")}
    return save_sovits(state, cfg, path, {"source": "gsv train sovits", **info}, dtype=torch.float16)
