"""`VocoderConfig`: sizes of the HiFi-GAN generator (the SoVITS `dec`) and its discriminators.

Defaults are the official GPT-SoVITS v2 values (s2.json). `SoVITSConfig.vocoder_config()` derives
one from a SoVITS config, so a SoVITS JSON stays the single source of truth for its decoder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from gpt_sovits.config import JsonConfig


@dataclass
class VocoderConfig(JsonConfig):
    """HiFi-GAN (V1-style, ResBlock1) generator conditioned on a global style vector."""

    in_channels: int = 192
    """Channels of the latent fed to `conv_pre` (SoVITS inter_channels)."""
    gin_channels: int = 512
    """Width of the global conditioning vector `g` added after `conv_pre`; 0 disables `cond`."""
    resblock: str = "1"
    """Residual block type; only "1" (HiFi-GAN V1 ResBlock1) exists in released models."""
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    """Kernel of each parallel residual block (multi-receptive-field fusion)."""
    resblock_dilation_sizes: list[list[int]] = field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    )
    """Dilations per residual block (one convs1/convs2 pair per dilation)."""
    upsample_rates: list[int] = field(default_factory=lambda: [10, 8, 2, 2, 2])
    """Stride of each transposed conv; their product is the hop (samples per latent frame)."""
    upsample_initial_channel: int = 512
    """Channels after `conv_pre`; halved by every upsampling stage."""
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 8, 2, 2])
    """Kernel of each transposed conv; (kernel - rate) must be even for exact lengths."""
    conv_post_bias: bool = False
    """Whether `conv_post` has a bias (False in GPT-SoVITS v2; True in plain HiFi-GAN)."""
    sampling_rate: int = 32000
    """Output sample rate in Hz."""
    discriminator_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    """Periods of the period discriminators (v2Pro/v2ProPlus add 17 and 23)."""
    generator: str = "hifigan"
    """"hifigan" (every official release) or "istft" (`vocoder.istft`, for models trained here)."""
    istft_channels: int = 256
    """Width of the iSTFT generator's ConvNeXt blocks."""
    istft_layers: int = 8
    """Number of ConvNeXt blocks in the iSTFT generator."""
    istft_subframes: int = 4
    """STFT frames per latent frame (the iSTFT hop is hop_length / istft_subframes)."""

    @property
    def hop_length(self) -> int:
        """Samples produced per latent frame."""
        return math.prod(self.upsample_rates)
