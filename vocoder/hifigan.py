"""HiFi-GAN generator as used for the SoVITS decoder (`dec.*` keys in a SynthesizerTrn file).

Layout, per the official v2 model: `conv_pre` (k7) plus a 1x1 `cond` projection of the style vector,
then per stage leaky_relu(0.1) -> weight-normed ConvTranspose1d -> mean of the multi-receptive-field
residual blocks, and finally leaky_relu with torch's *default* slope 0.01 (not 0.1: the official
code calls F.leaky_relu without a slope there) -> `conv_post` (bias-free in v2) -> tanh.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vocoder.config import VocoderConfig
from vocoder.errors import VocoderConfigError, VocoderInputError
from vocoder.weight_norm import WNConv1d, WNConvTranspose1d, fold_weight_norm

LRELU_SLOPE = 0.1
"""Leaky-ReLU slope inside the generator and discriminators."""
INIT_STD = 0.01
"""HiFi-GAN initialises upsampling and residual convs with N(0, 0.01) before weight norm."""


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the length of a stride-1 conv with an odd kernel."""
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """Pairs of (dilated conv, plain conv), each pair a residual step; HiFi-GAN V1 block."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, 1, dilation=d,
                     padding=same_padding(kernel_size, d), init_std=INIT_STD)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, 1, dilation=1,
                     padding=same_padding(kernel_size), init_std=INIT_STD)
            for _ in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            h = conv1(F.leaky_relu(x, LRELU_SLOPE))
            h = conv2(F.leaky_relu(h, LRELU_SLOPE))
            x = x + h
        return x


def validate_config(cfg: VocoderConfig) -> None:
    """Reject configs that would build a generator with wrong output lengths or missing parts."""
    if cfg.resblock != "1":
        raise VocoderConfigError(
            f"resblock={cfg.resblock!r} is not supported; only '1' (HiFi-GAN ResBlock1, used by "
            "every GPT-SoVITS release) is implemented"
        )
    if len(cfg.upsample_rates) != len(cfg.upsample_kernel_sizes):
        raise VocoderConfigError("upsample_rates and upsample_kernel_sizes must have equal length")
    if len(cfg.resblock_kernel_sizes) != len(cfg.resblock_dilation_sizes):
        raise VocoderConfigError(
            "resblock_kernel_sizes and resblock_dilation_sizes must have equal length"
        )
    for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
        if kernel < rate or (kernel - rate) % 2:
            raise VocoderConfigError(
                f"upsample kernel {kernel} with rate {rate}: kernel must be >= rate and differ by "
                "an even number, otherwise output length is not frames * prod(upsample_rates)"
            )
    if cfg.upsample_initial_channel % (2 ** len(cfg.upsample_rates)):
        raise VocoderConfigError(
            "upsample_initial_channel must be divisible by 2**len(upsample_rates)"
        )


def project_latents(gen: nn.Module, x: Tensor, g: Tensor | None) -> Tensor:
    """`conv_pre(x)` plus `cond(g)`, after checking shapes: the entry of every SoVITS generator
    (`gen` has `cfg`, `conv_pre` and, with gin_channels, `cond`)."""
    cfg = gen.cfg
    if x.dim() != 3 or x.size(1) != cfg.in_channels:
        raise VocoderInputError(f"Generator expects latents [B, {cfg.in_channels}, frames], got {tuple(x.shape)}")
    # Inputs follow the weights' dtype, so the generator alone can run in BF16 (on CPUs with
    # native BF16 dot products it is ~1.8x faster) while the flow before it stays in FP32.
    dtype = gen.conv_pre.weight.dtype
    x = gen.conv_pre(x.to(dtype))
    if g is not None:
        if not cfg.gin_channels:
            raise VocoderInputError("this generator has gin_channels=0; do not pass g")
        x = x + gen.cond(g.to(dtype))
    return x


class Generator(nn.Module):
    """Latent frames [B, in_channels, F] (+ style [B, gin, 1]) -> waveform [B, 1, F * hop]."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        validate_config(cfg)
        self.cfg = cfg
        ch = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.in_channels, ch, 7, 1, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
            self.ups.append(
                WNConvTranspose1d(ch >> i, ch >> (i + 1), kernel, rate,
                                  padding=(kernel - rate) // 2, init_std=INIT_STD)
            )
            for k, dils in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(ch >> (i + 1), k, dils))
        last = ch >> len(cfg.upsample_rates)
        self.conv_post = nn.Conv1d(last, 1, 7, 1, padding=3, bias=cfg.conv_post_bias)
        if cfg.gin_channels:
            self.cond = nn.Conv1d(cfg.gin_channels, ch, 1)

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def forward(self, x: Tensor, g: Tensor | None = None) -> Tensor:
        x = project_latents(self, x, g)
        n_kernels = len(self.cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * n_kernels:(i + 1) * n_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / n_kernels
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01, as in the official generator
        return x.tanh()

    def fold_weight_norm(self) -> None:
        """Bake weight norm into plain weights for inference (call after loading weights)."""
        fold_weight_norm(self)
