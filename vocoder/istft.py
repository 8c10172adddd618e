"""iSTFT generator: a cheaper, faster-learning SoVITS decoder for models trained from scratch.

A HiFi-GAN generator builds the waveform with transposed convolutions at every rate up to 32 kHz;
on a CPU most of an S2 training step is spent there, and it needs on the order of 10^5 steps
before speech is intelligible. This generator instead works at a low frame rate (the latent rate
times `istft_subframes`, 200 Hz by default) with ConvNeXt blocks, predicts a log-magnitude and a
phase per STFT bin, and turns them into samples with a fixed inverse STFT (overlap-add).

Layout (`dec.*` keys): `conv_pre` (k7) + `cond` (1x1 projection of the style vector) -> `up`
(transposed conv from latent frames to sub-frames) -> `blocks` (ConvNeXt: depthwise k7 conv,
LayerNorm, 4x-style MLP, per-channel layer scale) -> `norm` -> `head` (Linear to 2 x bins) ->
inverse STFT with a Hann window of 4 sub-frame hops. It has the HiFi-GAN generator's interface
(`forward(latents, g)`, `hop_length`, `fold_weight_norm`), so SoVITS, streaming and export code
treat both alike. Official GPT-SoVITS weights always use HiFi-GAN; `SoVITSConfig.generator` says
which one a file of ours holds.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vocoder.config import VocoderConfig
from vocoder.errors import VocoderConfigError
from vocoder.hifigan import project_latents

OVERLAP = 4
"""STFT window length in sub-frame hops (75% overlap, where a Hann window's overlap-add is flat)."""
MAX_LOG_MAGNITUDE = 6.0
"""Cap on the predicted log-magnitude before exp(): keeps an untrained head from overflowing."""


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (time mixing) then a per-frame MLP (channel mixing), scaled residual."""

    def __init__(self, dim: int, hidden: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, hidden)
        self.pw2 = nn.Linear(hidden, dim)
        # a small layer scale makes every block start near the identity, so deep stacks train stably
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class InverseSTFT(nn.Module):
    """(real, imag) [B, n_fft/2+1, T] -> samples [B, 1, T * hop], frame t centred on its own hop.

    Written as one transposed convolution with a windowed inverse-DFT basis, so it runs the same
    under PyTorch, ONNX and TensorRT (torch.istft does not export). Dividing by the overlap-added
    squared window makes analysis-synthesis exact wherever the frames overlap fully.
    """

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        if n_fft % 2 or n_fft != OVERLAP * hop:
            raise VocoderConfigError(f"n_fft must be {OVERLAP} x hop and even, got n_fft={n_fft}, hop={hop}")
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        angle = 2 * math.pi * k * n / n_fft
        # irfft: the DC and Nyquist bins count once, every other bin twice (its mirror image)
        weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
        weight[0] = weight[-1] = 1.0
        cos_basis = weight * torch.cos(angle) * window / n_fft
        sin_basis = -weight * torch.sin(angle) * window / n_fft
        self.register_buffer("basis", torch.cat([cos_basis, sin_basis])[:, None, :].float(), persistent=False)
        self.register_buffer("window_sq", (window ** 2)[None, None, :].float(), persistent=False)

    def forward(self, real: Tensor, imag: Tensor) -> Tensor:
        frames = real.shape[-1]
        basis = self.basis.to(real.dtype)
        audio = F.conv_transpose1d(torch.cat([real, imag], dim=1), basis, stride=self.hop)
        ones = torch.ones(1, 1, frames, dtype=real.dtype, device=real.device)
        envelope = F.conv_transpose1d(ones, self.window_sq.to(real.dtype), stride=self.hop)
        audio = audio / envelope.clamp(min=1e-4)
        trim = (self.n_fft - self.hop) // 2
        return audio[..., trim:trim + frames * self.hop]


def validate_istft_config(cfg: VocoderConfig) -> None:
    hop = cfg.hop_length
    if cfg.istft_subframes < 1 or hop % cfg.istft_subframes:
        raise VocoderConfigError(
            f"istft_subframes={cfg.istft_subframes} must divide the hop ({hop} samples per latent frame)"
        )
    if cfg.istft_subframes > 1 and cfg.istft_subframes % 2:
        raise VocoderConfigError(f"istft_subframes must be 1 or even, got {cfg.istft_subframes}")
    if cfg.istft_channels < 1 or cfg.istft_layers < 1:
        raise VocoderConfigError("istft_channels and istft_layers must be positive")


class ISTFTGenerator(nn.Module):
    """Latent frames [B, in_channels, F] (+ style [B, gin, 1]) -> waveform [B, 1, F * hop]."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        validate_istft_config(cfg)
        self.cfg = cfg
        dim, r = cfg.istft_channels, cfg.istft_subframes
        sub_hop = cfg.hop_length // r
        self.conv_pre = nn.Conv1d(cfg.in_channels, dim, 7, padding=3)
        if cfg.gin_channels:
            self.cond = nn.Conv1d(cfg.gin_channels, dim, 1)
        # kernel 2r, stride r, padding r/2 gives exactly r sub-frames per latent frame (r even);
        # r = 1 needs no upsampling at all
        self.up = nn.ConvTranspose1d(dim, dim, 2 * r, r, padding=r // 2) if r > 1 else nn.Identity()
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(dim, 3 * dim, 1.0 / cfg.istft_layers) for _ in range(cfg.istft_layers)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 2 * (OVERLAP * sub_hop // 2 + 1))  # log-magnitude and phase per bin
        self.istft = InverseSTFT(OVERLAP * sub_hop, sub_hop)

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def forward(self, x: Tensor, g: Tensor | None = None) -> Tensor:
        dtype = self.conv_pre.weight.dtype
        x = self.up(project_latents(self, x, g))
        for block in self.blocks:
            x = block(x)
        log_mag, phase = self.head(self.norm(x.transpose(1, 2))).transpose(1, 2).float().chunk(2, dim=1)
        # the inverse STFT runs in FP32 even for a BF16 generator: phase and overlap-add need the bits
        magnitude = torch.exp(log_mag.clamp(max=MAX_LOG_MAGNITUDE))
        audio = self.istft(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return audio.clamp(-1.0, 1.0).to(dtype)

    def fold_weight_norm(self) -> None:
        """Nothing to fold: this generator has no weight norm (kept for the shared interface)."""
