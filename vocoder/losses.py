"""GAN-TTS losses used by the GPT-SoVITS S2 trainer (VITS/HiFi-GAN formulation).

All losses are computed in float32 even under autocast, as the official trainer does, because the
squared LSGAN terms and exp() in the KL overflow easily in fp16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vocoder.errors import VocoderInputError

FEATURE_LOSS_WEIGHT = 2.0
"""HiFi-GAN doubles the feature-matching term (the official `feature_loss` returns loss * 2)."""


def discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> tuple[Tensor, list[float], list[float]]:
    """LSGAN: sum over discriminators of mean((1 - D(y))^2) + mean(D(y_hat)^2).

    Returns the total plus per-discriminator real and fake terms as floats for logging.
    """
    if len(real) != len(fake):
        raise VocoderInputError("real and fake score lists differ in length")
    total = torch.zeros((), device=real[0].device)
    real_terms: list[float] = []
    fake_terms: list[float] = []
    for dr, dg in zip(real, fake):
        r = torch.mean((1.0 - dr.float()) ** 2)
        g = torch.mean(dg.float() ** 2)
        total = total + r + g
        real_terms.append(float(r.detach()))
        fake_terms.append(float(g.detach()))
    return total, real_terms, fake_terms


def generator_loss(fake: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """LSGAN generator term: sum over discriminators of mean((1 - D(y_hat))^2)."""
    terms = [torch.mean((1.0 - dg.float()) ** 2) for dg in fake]
    return torch.stack(terms).sum(), terms


def feature_loss(real_maps: list[list[Tensor]], fake_maps: list[list[Tensor]]) -> Tensor:
    """Feature matching: 2 * sum of mean |fmap_real - fmap_fake| over every layer of every D.

    Real feature maps are detached: only the generator learns from this term.
    """
    total = torch.zeros((), device=real_maps[0][0].device)
    for layers_r, layers_g in zip(real_maps, fake_maps):
        for fr, fg in zip(layers_r, layers_g):
            total = total + torch.mean(torch.abs(fr.detach().float() - fg.float()))
    return total * FEATURE_LOSS_WEIGHT


def kl_loss(z_p: Tensor, logs_q: Tensor, m_p: Tensor, logs_p: Tensor, mask: Tensor) -> Tensor:
    """VITS KL between the posterior (pushed through the flow, z_p) and the prior N(m_p, e^logs_p).

    Per element: logs_p - logs_q - 1/2 + (z_p - m_p)^2 * e^(-2 logs_p) / 2, summed under the mask
    and divided by the number of unmasked frames (mask [B, 1, T] broadcasts over channels).
    """
    z_p, logs_q, m_p, logs_p, mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p) ** 2 * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * mask) / torch.sum(mask)


def mel_loss(mel_real: Tensor, mel_fake: Tensor) -> Tensor:
    """L1 between log-mel spectrograms (the trainer multiplies by c_mel = 45)."""
    if mel_real.shape != mel_fake.shape:
        raise VocoderInputError(
            f"mel shapes differ: {tuple(mel_real.shape)} vs {tuple(mel_fake.shape)}"
        )
    return F.l1_loss(mel_fake.float(), mel_real.float())


STFT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))
"""(n_fft, hop) of the multi-resolution STFT loss: ~16, 32 and 64 ms windows at 32 kHz."""


def multi_resolution_stft_loss(real: Tensor, fake: Tensor,
                               resolutions: tuple[tuple[int, int], ...] = STFT_RESOLUTIONS) -> Tensor:
    """Mean over resolutions of spectral convergence + L1 of log magnitudes (Parallel WaveGAN's
    auxiliary loss). real, fake: [B, 1, T] or [B, T] waveforms of equal shape."""
    if real.shape != fake.shape:
        raise VocoderInputError(f"waveform shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
    real, fake = real.reshape(-1, real.shape[-1]).float(), fake.reshape(-1, fake.shape[-1]).float()
    total = torch.zeros((), device=real.device)
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=real.device)
        mag_r = torch.stft(real, n_fft, hop, window=window, return_complex=True).abs().clamp(min=1e-5)
        mag_f = torch.stft(fake, n_fft, hop, window=window, return_complex=True).abs().clamp(min=1e-5)
        convergence = torch.linalg.norm(mag_r - mag_f) / torch.linalg.norm(mag_r)
        total = total + convergence + F.l1_loss(mag_f.log(), mag_r.log())
    return total / len(resolutions)
