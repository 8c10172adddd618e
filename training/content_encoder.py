"""Our own content encoder (the offline stand-in for chinese-hubert-base) and its pseudo-label trainer.

Why: GPT-SoVITS turns speech into semantic tokens through HuBERT features, and those weights
cannot be downloaded here (see docs/base_model.md for the packages checked). We train a small
HuBERT-style encoder ourselves:

- iteration 0 targets: k-means clusters of per-utterance-normalised MFCC + deltas (50 Hz);
- the encoder (log-mel -> 2x conv subsampling -> transformer) predicts the cluster of masked
  frames, as HuBERT does; later iterations re-cluster one of its own layers (`label_layer`).

Interface: `ContentFeatureExtractor` mirrors `gpt_sovits.features.SSLFeatureExtractor`: raw
16 kHz waveform [B, samples] in, [B, hidden, T50] out with exactly HuBERT's frame count, so every
downstream shape (25 Hz tokens = T50 // 2) is unchanged. A SoVITS trained on it names it in
`SoVITSConfig.content_encoder` and sets `ssl_dim = hidden_size` (`sovits_config_for`);
official-weight users keep chinese-hubert-base. `open_content_encoder(dir)` loads either kind.

The model half of this file has no training-only dependencies, so it can move into
`gpt_sovits/` unchanged when the runtime loads it.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt_sovits.config import JsonConfig, SoVITSConfig
from gpt_sovits.errors import GSVError, ModelNotFoundError
from gpt_sovits.features import SSL_SAMPLE_RATE, SSLFeatureExtractor, ssl_frame_count

log = logging.getLogger(__name__)

ENCODER_FORMAT = "gsv-content-encoder"
HOP_50HZ = 320
_WHAT = "our content encoder (config.json with format 'gsv-content-encoder' + model.safetensors), from `gsv corpus train-encoder`"


class ContentEncoderError(GSVError, ValueError):
    """Bad input or training data for the content encoder."""

    code = "content_encoder_error"


@dataclass
class ContentEncoderConfig(JsonConfig):
    """Sizes of the content encoder (saved as config.json beside its weights)."""

    name: str = "gsv-content-v1"
    """What `SoVITSConfig.content_encoder` records for a SoVITS trained on these features."""
    sample_rate: int = SSL_SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400
    """25 ms analysis window."""
    hop_length: int = 160
    """10 ms mel hop; the stride-2 conv makes 50 Hz output frames."""
    n_mels: int = 80
    conv_channels: int = 256
    hidden_size: int = 768
    """Output width: becomes the SoVITS `ssl_dim` (768 keeps the official ssl_proj shape)."""
    num_layers: int = 8
    num_heads: int = 12
    ffn_size: int = 3072
    dropout: float = 0.1
    pos_conv_kernel: int = 31
    """Depthwise-conv positional encoding (like HuBERT's conv positions): any input length works."""
    mel_mean: list[float] = field(default_factory=list)
    """Global log-mel mean per band, set from the training data (empty = 0)."""
    mel_std: list[float] = field(default_factory=list)
    """Global log-mel std per band (empty = 1)."""


class ContentEncoder(nn.Module):
    """Waveform [B, S] @ 16 kHz -> hidden states [B, T50, H] (T50 = HuBERT's frame count)."""

    def __init__(self, cfg: ContentEncoderConfig) -> None:
        super().__init__()
        import librosa

        self.cfg = cfg
        mel = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=0.0, fmax=cfg.sample_rate / 2)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        mean = torch.tensor(cfg.mel_mean or [0.0] * cfg.n_mels, dtype=torch.float32)
        std = torch.tensor(cfg.mel_std or [1.0] * cfg.n_mels, dtype=torch.float32)
        self.register_buffer("mel_mean", mean)
        self.register_buffer("mel_std", std)
        c = cfg.conv_channels
        self.subsample = nn.Sequential(
            nn.Conv1d(cfg.n_mels, c, 3, padding=1), nn.GELU(), nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GELU()
        )
        self.proj = nn.Linear(c, cfg.hidden_size)
        groups = math.gcd(16, cfg.hidden_size)
        self.pos_conv = nn.Conv1d(cfg.hidden_size, cfg.hidden_size, cfg.pos_conv_kernel,
                                  padding=cfg.pos_conv_kernel // 2, groups=groups)
        self.mask_emb = nn.Parameter(torch.zeros(cfg.hidden_size).uniform_(-0.1, 0.1))
        self.input_norm = nn.LayerNorm(cfg.hidden_size)
        layer = nn.TransformerEncoderLayer(cfg.hidden_size, cfg.num_heads, cfg.ffn_size, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.ModuleList([_clone_layer(layer) for _ in range(cfg.num_layers)])
        self.final_norm = nn.LayerNorm(cfg.hidden_size)

    def log_mel(self, wav: Tensor) -> Tensor:
        """[B, S] -> normalised log-mel [B, n_mels, frames] (100 Hz)."""
        c = self.cfg
        spec = torch.stft(wav.float(), c.n_fft, c.hop_length, c.win_length, self.window, center=True, return_complex=True)
        mel = torch.matmul(self.mel_basis, spec.abs().pow(2))
        logmel = torch.log(mel.clamp_min(1e-10))
        return (logmel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def frontend(self, wav: Tensor) -> Tensor:
        """[B, S] -> projected frames [B, T50, H] before the transformer (cropped to HuBERT's count)."""
        frames = ssl_frame_count(wav.shape[-1])
        x = self.subsample(self.log_mel(wav))[:, :, :frames]
        return self.proj(x.transpose(1, 2))

    def forward(self, wav: Tensor, mask: Tensor | None = None, output_layer: int | None = None) -> Tensor:
        """Hidden states [B, T50, H]; `mask` [B, T50] (True = replaced by the mask embedding) is
        for training; `output_layer` (1-based) stops early, e.g. to cluster a middle layer."""
        x = self.frontend(wav)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x)
        x = x + F.gelu(self.pos_conv(x.transpose(1, 2))).transpose(1, 2)
        x = self.input_norm(x)
        last = len(self.layers) if output_layer is None else output_layer
        for layer in self.layers[:last]:
            x = layer(x)
        return self.final_norm(x) if last == len(self.layers) else x


def _clone_layer(layer: nn.Module) -> nn.Module:
    return copy.deepcopy(layer)


class ContentFeatureExtractor:
    """Same calls as `SSLFeatureExtractor`: [B, samples] @ 16 kHz -> [B, hidden, T50]."""

    def __init__(self, model: ContentEncoder) -> None:
        self.model = model.eval()

    @property
    def hidden_size(self) -> int:
        return int(self.model.cfg.hidden_size)

    @property
    def name(self) -> str:
        return self.model.cfg.name

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ContentFeatureExtractor":
        if dtype is None:
            self.model.to(device)
        else:
            self.model.to(device=device, dtype=dtype)
        return self

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ContentFeatureExtractor":
        return cls(load_content_encoder(directory))

    @classmethod
    def random_tiny(cls, hidden: int = 32, seed: int = 0) -> "ContentFeatureExtractor":
        cfg = tiny_config(hidden)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(ContentEncoder(cfg))

    @torch.no_grad()
    def __call__(self, wav16k: Tensor) -> Tensor:
        if wav16k.dim() == 1:
            wav16k = wav16k.unsqueeze(0)
        if wav16k.dim() != 2:
            raise ContentEncoderError(f"ContentFeatureExtractor expects [B, samples], got shape {tuple(wav16k.shape)}")
        if ssl_frame_count(wav16k.shape[-1]) < 1:
            raise ContentEncoderError(f"Waveform of {wav16k.shape[-1]} samples is too short (needs >= 400).")
        param = next(self.model.parameters())
        return self.model(wav16k.to(param.device)).to(param.dtype).transpose(1, 2)


def tiny_config(hidden: int = 32) -> ContentEncoderConfig:
    """A test-sized encoder (2 layers) with the real front end and frame rate."""
    return ContentEncoderConfig(name="tiny-content", n_mels=40, conv_channels=32, hidden_size=hidden, num_layers=2,
                                num_heads=2, ffn_size=2 * hidden, dropout=0.0, pos_conv_kernel=15)


def sovits_config_for(encoder: ContentEncoderConfig, base: SoVITSConfig | None = None) -> SoVITSConfig:
    """The SoVITS config of a base model trained on this encoder: names it and fits ssl_dim."""
    return dataclasses.replace(base or SoVITSConfig(), ssl_dim=encoder.hidden_size, content_encoder=encoder.name)


# ------------------------------------------------------------------------------ save / load


def save_content_encoder(model: ContentEncoder, directory: str | Path, extra: dict[str, Tensor] | None = None) -> Path:
    """Write `config.json` + `model.safetensors` (+ `targets.safetensors` with e.g. k-means centroids)."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(model.cfg, mel_mean=model.mel_mean.tolist(), mel_std=model.mel_std.tolist())
    data = {"format": ENCODER_FORMAT, **cfg.to_dict()}
    (out / "config.json").write_text(json.dumps(data, indent=1) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    if extra:
        save_file({k: v.detach().cpu().contiguous() for k, v in extra.items()}, str(out / "targets.safetensors"))
    return out


def is_content_encoder_dir(directory: str | Path) -> bool:
    path = Path(directory) / "config.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == ENCODER_FORMAT
    except (json.JSONDecodeError, AttributeError):
        return False


def load_content_encoder(directory: str | Path) -> ContentEncoder:
    from safetensors.torch import load_file

    path = Path(directory)
    missing = [n for n in ("config.json", "model.safetensors") if not (path / n).is_file()]
    if missing or not is_content_encoder_dir(path):
        raise ModelNotFoundError(path, _WHAT, missing=missing or ["format 'gsv-content-encoder' in config.json"])
    data = json.loads((path / "config.json").read_text())
    data.pop("format")
    model = ContentEncoder(ContentEncoderConfig.from_dict(data))
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    return model.eval()


def open_content_encoder(directory: str | Path) -> SSLFeatureExtractor | ContentFeatureExtractor:
    """Our encoder when `directory` holds one, else chinese-hubert-base (Hugging Face layout)."""
    if is_content_encoder_dir(directory):
        return ContentFeatureExtractor.from_pretrained(directory)
    return SSLFeatureExtractor.from_pretrained(directory)


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
