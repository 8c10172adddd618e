"""Training of our content encoder (the offline stand-in for chinese-hubert-base).

The model, its config, the feature extractor and the folder format are runtime code and live in
`gpt_sovits.content_encoder`; they are re-exported here so `from training.content_encoder import
ContentEncoder, ...` keeps working. This module holds the HuBERT-style pseudo-label trainer:

- iteration 0 targets: k-means clusters of per-utterance-normalised MFCC + deltas (50 Hz);
- the encoder (log-mel -> 2x conv subsampling -> transformer) predicts the cluster of masked
  frames, as HuBERT does; later iterations re-cluster one of its own layers (`label_layer`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt_sovits.config import JsonConfig
from gpt_sovits.content_encoder import (  # noqa: F401 - re-exported for existing imports
    ENCODER_FORMAT,
    ContentEncoder,
    ContentEncoderConfig,
    ContentEncoderError,
    ContentFeatureExtractor,
    is_content_encoder_dir,
    load_content_encoder,
    open_content_encoder,
    read_content_encoder_config,
    save_content_encoder,
    sovits_config_for,
    tiny_config,
)
from gpt_sovits.features import SSL_SAMPLE_RATE, ssl_frame_count

log = logging.getLogger(__name__)

HOP_50HZ = 320


# --------------------------------------------------------------------------- pseudo labels


def mfcc_features(wav16k: np.ndarray, n_mfcc: int = 13) -> np.ndarray:
    """MFCC + delta + delta-delta at 50 Hz, per-utterance mean/variance normalised: [T50, 3*n_mfcc]."""
    import librosa

    frames = ssl_frame_count(len(wav16k))
    if frames < 1:
        raise ContentEncoderError(f"Audio of {len(wav16k)} samples is too short for content features.")
    x = np.asarray(wav16k, dtype=np.float32)
    mfcc = librosa.feature.mfcc(y=x, sr=SSL_SAMPLE_RATE, n_mfcc=n_mfcc, n_fft=512, win_length=400,
                                hop_length=HOP_50HZ, n_mels=40, center=True)
    n = mfcc.shape[1]
    width = min(9, n if n % 2 == 1 else n - 1)  # librosa wants an odd width <= the frame count
    if width >= 3:
        feats = np.concatenate([mfcc, librosa.feature.delta(mfcc, width=width),
                                librosa.feature.delta(mfcc, order=2, width=width)])
    else:
        feats = np.concatenate([mfcc, np.zeros_like(mfcc), np.zeros_like(mfcc)])
    feats = feats[:, :frames].T
    return ((feats - feats.mean(0)) / (feats.std(0) + 1e-5)).astype(np.float32)


def kmeans(x: Tensor, k: int, iters: int = 30, seed: int = 0) -> Tensor:
    """Lloyd's k-means with k-means++ seeding; returns centroids [k, D]. Empty clusters are
    re-seeded from the points farthest from their centroid."""
    if x.shape[0] < k:
        raise ContentEncoderError(f"k-means needs at least k={k} frames, got {x.shape[0]}; use more audio or fewer clusters.")
    gen = torch.Generator().manual_seed(seed)
    x = x.float()
    centroids = x[torch.randint(x.shape[0], (1,), generator=gen)]
    dist = torch.cdist(x, centroids).squeeze(1) ** 2
    for _ in range(1, k):
        pick = torch.multinomial(dist / dist.sum() if dist.sum() > 0 else torch.ones_like(dist), 1, generator=gen)
        centroids = torch.cat([centroids, x[pick]])
        dist = torch.minimum(dist, (torch.cdist(x, x[pick]).squeeze(1)) ** 2)
    for _ in range(iters):
        d = torch.cdist(x, centroids)
        assign = d.argmin(1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            far = d.gather(1, assign[:, None]).squeeze(1).topk(int(empty.sum())).indices
            centroids[empty] = x[far]
    return centroids


def assign_clusters(x: Tensor, centroids: Tensor, chunk: int = 65536) -> Tensor:
    """Nearest centroid of every row of x: [N] long."""
    return torch.cat([torch.cdist(part.float(), centroids).argmin(1) for part in x.split(chunk)])


@dataclass
class PseudoLabelConfig(JsonConfig):
    """One HuBERT-style training iteration (`gsv corpus train-encoder`)."""

    steps: int = 20000
    batch_size: int = 8
    crop_seconds: float = 4.0
    """Random crop per item; shorter utterances shorten the whole batch."""
    lr: float = 5e-4
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    n_clusters: int = 100
    """k-means classes (HuBERT: 100 from MFCC, 500 from its own layer)."""
    kmeans_iters: int = 30
    kmeans_max_frames: int = 200_000
    """k-means is fit on a random subset of this many frames, then every frame is assigned."""
    label_layer: int = 0
    """0 = iteration 0 (MFCC targets); N > 0 = cluster layer N of the `--init` encoder."""
    mask_prob: float = 0.08
    """Fraction of frames that start a masked span (HuBERT p)."""
    mask_length: int = 10
    """Frames per masked span (HuBERT l: about half of the frames end up masked)."""
    unmasked_weight: float = 0.0
    """Loss weight of unmasked frames (HuBERT alpha = 1 means masked-only)."""
    seed: int = 0


@dataclass
class LabelledAudio:
    """Training material: 16 kHz waveforms and their frame targets (same frame count)."""

    wavs: list[np.ndarray]
    labels: list[np.ndarray]
    centroids: Tensor


def make_labels(wavs: list[np.ndarray], cfg: PseudoLabelConfig, teacher: ContentEncoder | None = None,
                device: str | torch.device = "cpu") -> LabelledAudio:
    """Cluster MFCCs (iteration 0) or the teacher's `label_layer` (run on `device`) and label every frame."""
    keep = [w for w in wavs if ssl_frame_count(len(w)) >= 2]
    if not keep:
        raise ContentEncoderError("No utterance is long enough (>= 0.05 s at 16 kHz) to train the content encoder.")
    if cfg.label_layer > 0:
        if teacher is None:
            raise ContentEncoderError("label_layer > 0 clusters an encoder's layer: pass the previous encoder (--init).")
        teacher = teacher.to(device).eval()
        with torch.no_grad():
            feats = [teacher(torch.from_numpy(w)[None].to(device), output_layer=cfg.label_layer)[0].float().cpu()
                     for w in keep]
    else:
        feats = [torch.from_numpy(mfcc_features(w)) for w in keep]
    allf = torch.cat(feats)
    log.info("k-means: %d clusters from %d of %d frames (%s targets)", cfg.n_clusters,
             min(cfg.kmeans_max_frames, allf.shape[0]), allf.shape[0],
             f"layer {cfg.label_layer}" if cfg.label_layer > 0 else "MFCC")
    gen = torch.Generator().manual_seed(cfg.seed)
    sample = allf[torch.randperm(allf.shape[0], generator=gen)[: cfg.kmeans_max_frames]]
    centroids = kmeans(sample, cfg.n_clusters, cfg.kmeans_iters, cfg.seed)
    labels = [assign_clusters(f, centroids).numpy() for f in feats]
    return LabelledAudio(keep, labels, centroids)


def mel_statistics(model: ContentEncoder, wavs: list[np.ndarray], max_items: int = 200) -> tuple[Tensor, Tensor]:
    """Global per-band log-mel mean/std over (up to) `max_items` utterances."""
    saved_mean, saved_std = model.mel_mean.clone(), model.mel_std.clone()
    model.mel_mean.zero_()
    model.mel_std.fill_(1.0)
    with torch.no_grad():
        mels = torch.cat([model.log_mel(torch.from_numpy(w)[None])[0].T for w in wavs[:max_items]])
    model.mel_mean.copy_(saved_mean)
    model.mel_std.copy_(saved_std)
    return mels.mean(0), mels.std(0).clamp_min(1e-3)


def span_mask(batch: int, frames: int, prob: float, length: int, gen: torch.Generator) -> Tensor:
    """HuBERT/wav2vec2 span masking: each frame starts a span of `length` with probability `prob`
    (at least one span per row)."""
    starts = torch.rand(batch, frames, generator=gen) < prob
    starts[torch.arange(batch), torch.randint(frames, (batch,), generator=gen)] = True
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    for offset in range(min(length, frames)):
        mask[:, offset:] |= starts[:, : frames - offset]
    return mask


def sample_batch(data: LabelledAudio, cfg: PseudoLabelConfig, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random aligned crops: waveforms [B, S] and labels [B, T] with T = ssl_frame_count(S)."""
    idx = torch.randint(len(data.wavs), (cfg.batch_size,), generator=gen).tolist()
    want = max(1, int(cfg.crop_seconds * SSL_SAMPLE_RATE) // HOP_50HZ)
    frames = min([want] + [len(data.labels[i]) for i in idx])
    wavs, labels = [], []
    for i in idx:
        start = int(torch.randint(len(data.labels[i]) - frames + 1, (1,), generator=gen))
        s0 = start * HOP_50HZ
        wav = data.wavs[i][s0 : s0 + frames * HOP_50HZ + 80]
        wavs.append(np.pad(wav, (0, frames * HOP_50HZ + 80 - len(wav))))
        labels.append(data.labels[i][start : start + frames])
    return torch.from_numpy(np.stack(wavs)), torch.from_numpy(np.stack(labels)).long()


def masked_prediction_loss(model: ContentEncoder, head: nn.Linear, wav: Tensor, labels: Tensor, mask: Tensor,
                           unmasked_weight: float = 0.0) -> Tensor:
    """Cross-entropy of the cluster targets on masked frames (+ weighted unmasked frames)."""
    logits = head(model(wav, mask=mask))
    ce = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    loss = ce[mask].mean()
    if unmasked_weight > 0 and (~mask).any():
        loss = loss + unmasked_weight * ce[~mask].mean()
    return loss


@dataclass
class EncoderTrainResult:
    model: ContentEncoder
    head: nn.Linear
    centroids: Tensor
    losses: list[float]


def train_content_encoder(
    wavs: list[np.ndarray],
    model_cfg: ContentEncoderConfig,
    cfg: PseudoLabelConfig,
    init: ContentEncoder | None = None,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, float], None] | None = None,
) -> EncoderTrainResult:
    """One pseudo-label iteration: label, then train masked prediction for `cfg.steps` steps.

    `wavs` are 16 kHz mono float32. `init` continues from an encoder (and is the label teacher
    when `cfg.label_layer > 0`). The flat loop: LR schedule, batch, mask, loss, step.
    """
    from training.schedules import set_lr, warmup_cosine

    torch.manual_seed(cfg.seed)
    data = make_labels(wavs, cfg, teacher=init, device=device)
    model = init if init is not None else ContentEncoder(model_cfg)
    if init is None:
        mean, std = mel_statistics(model, data.wavs)
        model.mel_mean.copy_(mean)
        model.mel_std.copy_(std)
    head = nn.Linear(model.cfg.hidden_size, cfg.n_clusters)
    model.to(device).train()
    head.to(device).train()
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    for step in range(cfg.steps):
        set_lr(optimizer, warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio))
        wav, labels = sample_batch(data, cfg, gen)
        mask = span_mask(wav.shape[0], labels.shape[1], cfg.mask_prob, cfg.mask_length, gen)
        loss = masked_prediction_loss(model, head, wav.to(device), labels.to(device), mask.to(device), cfg.unmasked_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return EncoderTrainResult(model, head.eval(), data.centroids, losses)
