"""iSTFT generator: exact inverse STFT, lengths, conditioning, config checks, SoVITS round trip."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gpt_sovits.config import SoVITSConfig
from gpt_sovits.sovits.model import SynthesizerTrn
from vocoder.build import build_generator
from vocoder.checkpoint import load, save
from vocoder.config import VocoderConfig
from vocoder.errors import VocoderConfigError, VocoderInputError
from vocoder.hifigan import Generator
from vocoder.istft import InverseSTFT, ISTFTGenerator

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_config(**kw) -> VocoderConfig:
    cfg = SoVITSConfig.load(CONFIGS / "sovits_tiny.json").vocoder_config()
    return dataclasses.replace(cfg, **{"generator": "istft", "istft_channels": 16, "istft_layers": 2, **kw})


def test_inverse_stft_inverts_torch_stft() -> None:
    torch.manual_seed(0)
    n_fft, hop = 64, 16
    audio = torch.randn(2, hop * 40)
    spec = torch.stft(audio, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True)
    out = InverseSTFT(n_fft, hop)(spec.real, spec.imag)
    assert out.shape == (2, 1, hop * spec.shape[-1])
    # torch centres frame t on sample t*hop, ours on t*hop + hop/2; away from the two edges the
    # overlap-add is complete and the round trip is exact
    shifted = audio[:, n_fft: hop * 40 - n_fft]
    assert torch.allclose(out[:, 0, n_fft + hop // 2: hop * 40 - n_fft + hop // 2], shifted, atol=1e-5)


def test_inverse_stft_rejects_a_window_that_is_not_four_hops() -> None:
    with pytest.raises(VocoderConfigError, match="4 x hop"):
        InverseSTFT(48, 16)


@pytest.mark.parametrize("frames", [1, 3, 17])
def test_output_is_frames_times_hop_and_clipped(frames: int) -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    gen = build_generator(cfg).eval()
    assert isinstance(gen, ISTFTGenerator)
    with torch.no_grad():
        audio = gen(torch.randn(2, cfg.in_channels, frames) * 10, torch.randn(2, cfg.gin_channels, 1))
    assert audio.shape == (2, 1, frames * 640)
    assert float(audio.abs().max()) <= 1.0 and float(audio.abs().max()) > 0


def test_style_and_latents_change_the_audio_and_batches_are_independent() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    gen = ISTFTGenerator(cfg).eval().requires_grad_(False)
    x, g1, g2 = torch.randn(1, cfg.in_channels, 6), torch.randn(1, cfg.gin_channels, 1), torch.randn(1, cfg.gin_channels, 1)
    a, b = gen(x, g1), gen(x, g2)
    assert (a - b).abs().mean() > 1e-3 * a.abs().mean()
    assert (gen(x * 2, g1) - a).abs().mean() > 1e-3 * a.abs().mean()
    both = gen(torch.cat([x, x]), torch.cat([g1, g2]))
    assert torch.allclose(both[0], a[0], atol=1e-5) and torch.allclose(both[1], b[0], atol=1e-5)


def test_bad_inputs_and_configs_are_refused() -> None:
    gen = ISTFTGenerator(tiny_config())
    with pytest.raises(VocoderInputError, match="latents"):
        gen(torch.randn(1, 5, 4))
    with pytest.raises(VocoderConfigError, match="divide the hop"):
        ISTFTGenerator(tiny_config(istft_subframes=3 * 7))
    with pytest.raises(VocoderConfigError, match="1 or even"):
        ISTFTGenerator(tiny_config(istft_subframes=5))
    with pytest.raises(VocoderConfigError, match="unknown"):
        build_generator(tiny_config(generator="wavenet"))
    assert isinstance(build_generator(dataclasses.replace(tiny_config(), generator="hifigan")), Generator)


def test_checkpoint_round_trip_keeps_the_kind_and_the_audio(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gen = ISTFTGenerator(tiny_config()).eval()
    save(gen, tmp_path / "voc")
    loaded, cfg = load(tmp_path / "voc")
    assert cfg.generator == "istft" and isinstance(loaded, ISTFTGenerator)
    x, g = torch.randn(1, cfg.in_channels, 5), torch.randn(1, cfg.gin_channels, 1)
    with torch.no_grad():
        assert torch.equal(gen(x, g), loaded(x, g))


def test_sovits_config_selects_the_decoder_and_trains_through_it() -> None:
    torch.manual_seed(0)
    base = SoVITSConfig.load(CONFIGS / "sovits_tiny.json")
    assert isinstance(SynthesizerTrn(base).dec, Generator)
    cfg = dataclasses.replace(base, generator="istft", istft_channels=16, istft_layers=2)
    model = SynthesizerTrn(cfg, with_posterior=True)
    assert isinstance(model.dec, ISTFTGenerator)
    assert not any(k.startswith("dec.ups") for k in model.state_dict())
    # the generator learns from a plain waveform loss: one step moves the output toward a target
    z, g = torch.randn(1, cfg.inter_channels, 4), torch.randn(1, cfg.gin_channels, 1)
    target = torch.sin(torch.arange(4 * 640) * 0.05)[None, None] * 0.3
    opt = torch.optim.Adam(model.dec.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = (model.dec(z, g) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
