"""Behaviour of SynthesizerTrn on tiny random models: shapes, lengths, style, folding, training."""
from __future__ import annotations

import pytest
import torch

from gpt_sovits.config import SoVITSConfig
from gpt_sovits.sovits.errors import SoVITSConfigError, SoVITSInputError
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.sovits.spectrogram import linear_spectrogram

from .conftest import activate, load_config


def _inputs(cfg: SoVITSConfig, tokens: int = 20, phones: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    codes = torch.randint(0, cfg.codebook_size, (1, 1, tokens))
    text = torch.randint(0, cfg.n_symbols, (1, phones))
    return codes, text


def _ge(model: SynthesizerTrn, frames: int = 60) -> torch.Tensor:
    return model.style([torch.rand(1, model.cfg.spec_channels, frames)])


@pytest.mark.parametrize("tokens", [1, 7, 25])
def test_decode_gives_1280_samples_per_token(tiny_model: SynthesizerTrn, tokens: int) -> None:
    codes, text = _inputs(tiny_model.cfg, tokens)
    audio = tiny_model.decode(codes, text, _ge(tiny_model))
    assert audio.shape == (1, 1, tokens * 1280)
    assert tiny_model.cfg.samples_per_token == 1280
    assert audio.abs().max() <= 1.0  # tanh output


@pytest.mark.parametrize("tokens,speed", [(50, 1.25), (50, 0.8), (13, 2.0)])
def test_speed_resamples_latent_frames(tiny_model: SynthesizerTrn, tokens: int, speed: float) -> None:
    codes, text = _inputs(tiny_model.cfg, tokens)
    audio = tiny_model.decode(codes, text, _ge(tiny_model), speed=speed)
    assert audio.shape[-1] == (int(2 * tokens / speed) + 1) * 640
    if (tokens, speed) == (50, 1.25):
        assert audio.shape[-1] == 51840  # measured on the official model (reference 1.8)


def test_noise_scale_zero_is_deterministic_and_generator_reproducible(tiny_model: SynthesizerTrn) -> None:
    activate(tiny_model)
    codes, text = _inputs(tiny_model.cfg)
    ge = _ge(tiny_model)
    a = tiny_model.decode(codes, text, ge, noise_scale=0.0)
    torch.manual_seed(123)
    b = tiny_model.decode(codes, text, ge, noise_scale=0.0)
    assert torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    c = tiny_model.decode(codes, text, ge, noise_scale=0.5, generator=g1)
    d = tiny_model.decode(codes, text, ge, noise_scale=0.5, generator=g2)
    assert torch.equal(c, d)
    assert not torch.allclose(a, c)  # the noise does something


def test_style_shape_and_reference_averaging(tiny_model: SynthesizerTrn) -> None:
    spec_a = linear_spectrogram(torch.randn(32000) * 0.1)
    spec_b = linear_spectrogram(torch.randn(48000) * 0.2)
    ge_a, ge_b = tiny_model.style([spec_a]), tiny_model.style(spec_b)
    assert ge_a.shape == (1, tiny_model.cfg.gin_channels, 1)
    both = tiny_model.style([spec_a, spec_b])
    torch.testing.assert_close(both, (ge_a + ge_b) / 2)


def test_style_uses_only_the_first_ref_enc_in_bins(tiny_model: SynthesizerTrn) -> None:
    spec = torch.rand(1, 1025, 40)
    changed = spec.clone()
    changed[:, tiny_model.cfg.ref_enc_in:] = 5.0
    torch.testing.assert_close(tiny_model.style(spec), tiny_model.style(changed))


def test_pro_style_needs_sv_embedding_and_projects_for_mrte(tiny_pro_cfg: SoVITSConfig) -> None:
    model = SynthesizerTrn(tiny_pro_cfg, with_posterior=False).eval()
    spec = torch.rand(1, 1025, 30)
    with pytest.raises(SoVITSInputError, match="speaker-verification"):
        model.style([spec])
    sv = torch.randn(1, tiny_pro_cfg.sv_dim)
    ge = model.style([spec, spec * 0.5], sv)  # one embedding shared by both references
    assert ge.shape == (1, 64, 1)
    assert model.mrte_style(ge).shape == (1, tiny_pro_cfg.mrte_hidden, 1)
    per_ref = model.style([spec, spec * 0.5], torch.cat([sv, sv]))
    torch.testing.assert_close(ge, per_ref)
    with pytest.raises(SoVITSInputError, match="sv_emb must hold"):
        model.style([spec, spec], torch.randn(3, tiny_pro_cfg.sv_dim))
    codes, text = _inputs(tiny_pro_cfg, 6)
    assert model.decode(codes, text, ge).shape == (1, 1, 6 * 1280)


@pytest.mark.parametrize("t50,expected", [(249, 124), (250, 125), (251, 125), (2, 1)])
def test_extract_latent_halves_frames(tiny_model: SynthesizerTrn, t50: int, expected: int) -> None:
    ssl = torch.randn(2, tiny_model.cfg.ssl_dim, t50)
    codes = tiny_model.extract_latent(ssl)
    assert codes.shape == (2, 1, expected)
    assert codes.dtype == torch.int64
    assert int(codes.max()) < tiny_model.cfg.codebook_size


def test_extract_latent_picks_the_nearest_code(tiny_model: SynthesizerTrn) -> None:
    ssl = torch.randn(1, tiny_model.cfg.ssl_dim, 40)
    codes = tiny_model.extract_latent(ssl)[0, 0]
    projected = tiny_model.ssl_proj(ssl)[0].t()  # [T, D]
    embed = tiny_model.quantizer.vq.layers[0]._codebook.embed
    brute = torch.cdist(projected, embed).argmin(dim=1)
    assert torch.equal(codes, brute)


def test_fold_weight_norm_keeps_outputs(tiny_model: SynthesizerTrn) -> None:
    activate(tiny_model)
    codes, text = _inputs(tiny_model.cfg, 12)
    ge = _ge(tiny_model)
    before = tiny_model.decode(codes, text, ge, noise_scale=0.0)
    folded = tiny_model.fold_weight_norm()
    after = tiny_model.decode(codes, text, ge, noise_scale=0.0)
    assert folded > 0
    assert not any(k.endswith("weight_g") for k in tiny_model.state_dict())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    assert tiny_model.fold_weight_norm() == 0  # idempotent


def test_decode_rejects_bad_inputs(tiny_model: SynthesizerTrn) -> None:
    codes, text = _inputs(tiny_model.cfg)
    ge = _ge(tiny_model)
    with pytest.raises(SoVITSInputError, match=r"\[1, 1, T\]"):
        tiny_model.decode(codes[0], text, ge)
    with pytest.raises(SoVITSInputError, match="phone ids"):
        tiny_model.decode(codes, text[:, :0], ge)
    with pytest.raises(SoVITSInputError, match="phone ids must lie"):
        tiny_model.decode(codes, text + tiny_model.cfg.n_symbols, ge)
    with pytest.raises(SoVITSInputError, match="integer"):
        tiny_model.decode(codes.float(), text, ge)
    with pytest.raises(SoVITSInputError, match="ge must be"):
        tiny_model.decode(codes, text, ge[:, :3])
    with pytest.raises(SoVITSInputError, match="speed"):
        tiny_model.decode(codes, text, ge, speed=0.0)
    with pytest.raises(SoVITSInputError, match="ssl features"):
        tiny_model.extract_latent(torch.randn(1, 7, 10))


def test_config_validation() -> None:
    with pytest.raises(SoVITSConfigError, match="mrte_hidden"):
        SynthesizerTrn(load_config("tiny", gin_channels=48))
    with pytest.raises(SoVITSConfigError, match="25hz"):
        SynthesizerTrn(load_config("tiny", semantic_frame_rate="50hz"))


def test_training_forward_shapes_and_gradients(tiny_cfg: SoVITSConfig) -> None:
    model = activate(SynthesizerTrn(tiny_cfg)).train()
    b, frames = 2, 70
    ssl = torch.randn(b, tiny_cfg.ssl_dim, frames)
    spec = torch.rand(b, tiny_cfg.spec_channels, frames)
    lengths = torch.tensor([70, 50])
    text = torch.randint(0, tiny_cfg.n_symbols, (b, 12))
    out = model(ssl, spec, lengths, text, torch.tensor([12, 8]), generator=torch.Generator().manual_seed(0))
    assert out.y_hat.shape == (b, 1, tiny_cfg.segment_size * 640)
    assert out.z.shape == out.z_p.shape == out.m_p.shape == (b, tiny_cfg.inter_channels, frames)
    assert out.y_mask.shape == (b, 1, frames) and out.y_mask[1, 0, 50:].sum() == 0
    assert ((out.ids_slice >= 0) & (out.ids_slice <= lengths - tiny_cfg.segment_size)).all()
    assert float(out.commit_loss) == 0.0  # frozen quantizer
    (out.y_hat.abs().mean() + out.m_p.pow(2).mean()).backward()
    assert model.enc_p.encoder_text.attn_layers[0].conv_q.weight.grad is not None
    assert model.ref_enc.fc.fc.weight.grad is not None
    assert model.ssl_proj.weight.grad is None  # frozen with the quantizer


def test_decoder_training_slices_match_the_posterior_and_the_synthesis_path(tiny_cfg: SoVITSConfig) -> None:
    """`prior_slice` with noise 0 decodes exactly what `decode` makes from the same tokens, and
    `posterior_slice` gives the latents `forward` decodes, without the prior."""
    import dataclasses

    frames = 40
    model = activate(SynthesizerTrn(dataclasses.replace(tiny_cfg, segment_size=frames), with_posterior=True)).eval()
    ssl, spec = torch.randn(1, tiny_cfg.ssl_dim, frames), torch.rand(1, tiny_cfg.spec_channels, frames)
    lengths, text = torch.tensor([frames]), torch.randint(0, tiny_cfg.n_symbols, (1, 9))
    with torch.no_grad():
        z, starts, ge = model.prior_slice(ssl, spec, lengths, text, torch.tensor([9]), noise_scale=0.0)
        assert z.shape == (1, tiny_cfg.inter_channels, frames) and int(starts[0]) == 0
        assert torch.allclose(ge, model.style([spec]), atol=1e-6)
        expected = model.decode(model.extract_latent(ssl), text, ge, noise_scale=0.0)
        assert torch.allclose(model.dec(z, g=ge), expected, atol=1e-5)
        gen = torch.Generator().manual_seed(3)
        zq, _, _ = model.posterior_slice(spec, lengths, generator=gen)
        out = model(ssl, spec, lengths, text, torch.tensor([9]), generator=torch.Generator().manual_seed(3))
        assert torch.allclose(zq, out.z, atol=1e-6)


def test_posterior_free_model_cannot_train(tiny_cfg: SoVITSConfig) -> None:
    model = SynthesizerTrn(tiny_cfg, with_posterior=False)
    assert not any(k.startswith("enc_q.") for k in model.state_dict())
    with pytest.raises(SoVITSInputError, match="with_posterior=False"):
        model(torch.randn(1, tiny_cfg.ssl_dim, 40), torch.rand(1, 1025, 40), torch.tensor([40]),
              torch.zeros(1, 3, dtype=torch.long), torch.tensor([3]))
