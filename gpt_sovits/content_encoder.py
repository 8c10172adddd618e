"""Our own content encoder: the offline stand-in for chinese-hubert-base, as a runtime model.

Why: GPT-SoVITS turns speech into semantic tokens through HuBERT features, and those weights
cannot be downloaded here (docs/base_model.md lists what was checked). We train a small
HuBERT-style encoder (log-mel -> 2x conv subsampling -> transformer) ourselves; its training code
(pseudo labels, k-means, masked prediction) lives in `training.content_encoder`, which re-exports
every name of this module. This module holds only what inference needs: the model, its config,
the feature extractor and the folder format.

Interface: `ContentFeatureExtractor` mirrors `gpt_sovits.features.SSLFeatureExtractor`: raw
16 kHz waveform [B, samples] in, [B, hidden, T50] out with exactly HuBERT's frame count, so every
downstream shape (25 Hz tokens = T50 // 2) is unchanged. A SoVITS trained on it names it in
`SoVITSConfig.content_encoder` and sets `ssl_dim = hidden_size` (`sovits_config_for`); official
weight users keep chinese-hubert-base. `open_content_encoder(dir)` loads either kind.

Folder format: `config.json` (`"format": "gsv-content-encoder"`, the `ContentEncoderConfig`
fields including `name` and the mel statistics), `model.safetensors`, and optionally
`targets.safetensors` (k-means centroids of the training iteration; not needed to run).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt_sovits.config import JsonConfig, SoVITSConfig
from gpt_sovits.errors import GSVError, ModelNotFoundError
from gpt_sovits.features import SSL_SAMPLE_RATE, SSLFeatureExtractor, ssl_frame_count

if TYPE_CHECKING:
    from gpt_sovits.phone_align import PhoneAlignFeatureExtractor

ENCODER_FORMAT = "gsv-content-encoder"
"""The `format` value in config.json that marks a folder as ours (not a Hugging Face HuBERT)."""
OFFICIAL_CONTENT_ENCODER = "chinese-hubert-base"
"""`SoVITSConfig.content_encoder` of the official GPT-SoVITS weights."""
_WHAT = (
    "our content encoder (config.json with format 'gsv-content-encoder' + model.safetensors), "
    "from `gsv corpus train-encoder`"
)


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
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(cfg.num_layers)])
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


class ContentFeatureExtractor:
    """Same calls as `SSLFeatureExtractor`: [B, samples] @ 16 kHz -> [B, hidden, T50]."""

    def __init__(self, model: ContentEncoder) -> None:
        self.model = model.eval()

    @property
    def hidden_size(self) -> int:
        return int(self.model.cfg.hidden_size)

    @property
    def name(self) -> str:
        """The encoder's name; a SoVITS trained on it records the same `content_encoder`."""
        return self.model.cfg.name

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ContentFeatureExtractor":
        """Move the wrapped model (in place) and return self, like nn.Module.to."""
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
        """A 2-layer random encoder named "tiny-content" (`tiny_config`), for tests."""
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
    """True when `directory/config.json` says it is ours (a Hugging Face HuBERT folder is not)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == ENCODER_FORMAT
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return False


def read_content_encoder_config(directory: str | Path) -> ContentEncoderConfig:
    """The config of an encoder folder without loading its weights (name and width checks)."""
    path = Path(directory)
    if not is_content_encoder_dir(path):
        raise ModelNotFoundError(path, _WHAT, missing=["config.json with format 'gsv-content-encoder'"])
    data = json.loads((path / "config.json").read_text())
    data.pop("format")
    return ContentEncoderConfig.from_dict(data)


def load_content_encoder(directory: str | Path) -> ContentEncoder:
    """The eval-mode encoder of a folder written by `save_content_encoder`."""
    from safetensors.torch import load_file

    path = Path(directory)
    missing = [n for n in ("config.json", "model.safetensors") if not (path / n).is_file()]
    if missing or not is_content_encoder_dir(path):
        raise ModelNotFoundError(path, _WHAT, missing=missing or ["format 'gsv-content-encoder' in config.json"])
    model = ContentEncoder(read_content_encoder_config(path))
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    return model.eval()


def open_content_encoder(
    directory: str | Path,
) -> "SSLFeatureExtractor | ContentFeatureExtractor | PhoneAlignFeatureExtractor":
    """Our encoder when `directory` holds one, a phone aligner (`gpt_sovits.phone_align`) when
    it holds that, else chinese-hubert-base (Hugging Face layout)."""
    from gpt_sovits.phone_align import PhoneAlignFeatureExtractor, is_aligner_dir

    if is_content_encoder_dir(directory):
        return ContentFeatureExtractor.from_pretrained(directory)
    if is_aligner_dir(directory):
        return PhoneAlignFeatureExtractor.from_pretrained(directory)
    return SSLFeatureExtractor.from_pretrained(directory)


def content_features(extractor, wav16k: Tensor, texts: list[str] | None) -> Tensor:  # noqa: ANN001
    """Features [B, C, T50] of 16 kHz waveforms [B, S] from any content encoder: the transcripts
    go to encoders that align speech to text (`needs_transcript`); the others hear audio only."""
    if getattr(extractor, "needs_transcript", False):
        return extractor(wav16k, texts)
    return extractor(wav16k)
