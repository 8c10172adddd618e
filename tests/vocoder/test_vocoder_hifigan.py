"""HiFi-GAN generator: lengths, conditioning, folding, config checks and the checkpoint round trip."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vocoder
from gpt_sovits.config import SoVITSConfig
from gpt_sovits.errors import CheckpointError, ModelNotFoundError
from vocoder.checkpoint import save
from vocoder.config import VocoderConfig
from vocoder.errors import VocoderConfigError, VocoderInputError
from vocoder.hifigan import Generator

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_config() -> VocoderConfig:
    return SoVITSConfig.load(CONFIGS / "sovits_tiny.json").vocoder_config()


def lively(gen: Generator) -> Generator:
    """Unit weight-norm gains and zero biases, so the random net's output follows its input
    (at HiFi-GAN's N(0, 0.01) init the signal dies out and only bias patterns reach the output)."""
    with torch.no_grad():
        for name, param in gen.named_parameters():
            if name.endswith("weight_g"):
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
    return gen


def test_public_surface() -> None:
    assert sorted(vocoder.__all__) == ["Config", "Model", "load"]
    assert vocoder.Config is VocoderConfig and vocoder.Model is Generator


@pytest.mark.parametrize("frames", [1, 4, 33])
def test_output_is_frames_times_hop_in_tanh_range(frames: int) -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    gen = Generator(cfg).eval()
    with torch.no_grad():
        audio = gen(torch.randn(2, cfg.in_channels, frames), torch.randn(2, cfg.gin_channels, 1))
    assert audio.shape == (2, 1, frames * 640)
    assert cfg.hop_length == 640
    assert float(audio.abs().max()) <= 1.0


def test_style_conditioning_changes_output_and_fold_keeps_it() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    gen = lively(Generator(cfg)).eval().requires_grad_(False)
    x = torch.randn(1, cfg.in_channels, 5)
    g1, g2 = torch.randn(1, cfg.gin_channels, 1), torch.randn(1, cfg.gin_channels, 1)
    a, b = gen(x, g1), gen(x, g2)
    assert float((a - b).norm() / a.norm()) > 0.05
    gen.fold_weight_norm()
    torch.testing.assert_close(gen(x, g1), a, atol=1e-6, rtol=1e-5)


def test_v2_shapes_from_sovits_config() -> None:
    cfg = SoVITSConfig.load(CONFIGS / "sovits_v2proplus.json").vocoder_config()
    assert cfg.discriminator_periods == [2, 3, 5, 7, 11, 17, 23]
    with torch.device("meta"):
        gen = Generator(cfg)
    shapes = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    assert shapes["conv_pre.weight"] == (768, 192, 7)
    assert shapes["ups.0.weight_v"] == (768, 384, 20)
    assert shapes["cond.weight"] == (768, 1024, 1)
    assert shapes["conv_post.weight"] == (1, 24, 7) and "conv_post.bias" not in shapes
    assert shapes["resblocks.14.convs2.2.weight_g"] == (24, 1, 1)


@pytest.mark.parametrize("change,match", [
    ({"resblock": "2"}, "resblock"),
    ({"upsample_kernel_sizes": [15, 16, 8, 2, 2]}, "even"),
    ({"upsample_rates": [10, 8]}, "equal length"),
    ({"upsample_initial_channel": 100}, "divisible"),
])
def test_invalid_configs_are_rejected(change: dict, match: str) -> None:
    data = tiny_config().to_dict() | change
    with pytest.raises(VocoderConfigError, match=match):
        Generator(VocoderConfig.from_dict(data))


def test_wrong_latent_width_is_a_clear_error() -> None:
    gen = Generator(tiny_config())
    with pytest.raises(VocoderInputError, match="latents"):
        gen(torch.randn(1, 7, 3))


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    gen = Generator(cfg).eval()
    weights, config = save(gen, tmp_path / "voc.safetensors")
    assert weights.name == "voc.safetensors" and config.name == "voc.json"
    assert json.loads(config.read_text())["in_channels"] == cfg.in_channels
    loaded, loaded_cfg = vocoder.load(tmp_path / "voc")
    assert loaded_cfg == cfg and not loaded.training
    x, g = torch.randn(1, cfg.in_channels, 3), torch.randn(1, cfg.gin_channels, 1)
    torch.testing.assert_close(loaded(x, g), gen(x, g))


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="missing"):
        vocoder.load(tmp_path / "absent")
    gen = Generator(tiny_config())
    save(gen, tmp_path / "voc")
    other = tiny_config().to_dict() | {"upsample_initial_channel": 128}
    (tmp_path / "voc.json").write_text(json.dumps(other))
    with pytest.raises(CheckpointError, match="do not fit"):
        vocoder.load(tmp_path / "voc.json")


def test_bf16_generator_takes_fp32_latents_and_stays_close() -> None:
    """The generator alone may run in BF16 (fast path on CPUs with native BF16): it casts its
    FP32 inputs itself, and its audio stays within a few percent of the FP32 result."""
    torch.manual_seed(0)
    gen = lively(Generator(tiny_config())).eval()
    gen.fold_weight_norm()
    x, g = torch.randn(1, gen.cfg.in_channels, 12), torch.randn(1, gen.cfg.gin_channels, 1)
    with torch.no_grad():
        ref = gen(x, g)
        out = gen.to(torch.bfloat16)(x, g)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    rel = (out.float() - ref).norm() / ref.norm()
    assert 0 < rel < 0.05
