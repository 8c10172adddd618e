"""v2Pro/v2ProPlus end to end on tiny models: the ERes2NetV2 sv embedding feeds the SoVITS style."""
from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from gpt_sovits.audio import resample
from gpt_sovits.bundle import CONFIGS_DIR, ModelConfigError
from gpt_sovits.config import SoVITSConfig
from gpt_sovits.errors import CheckpointError, GSVError
from gpt_sovits.features import SSLFeatureExtractor
from gpt_sovits.pipeline import ModelBundle, SynthesisParams, Synthesizer, VoicePrompt
from speaker_encoder.eres2net import ERes2NetV2, ERes2NetV2Config

try:
    from . import official_ckpt_factory as factory
except ImportError:  # tests/ is not a package: pytest puts this folder on sys.path
    import official_ckpt_factory as factory

TEXT = "Hello world. This is a test of the pipeline."
EXACT = SynthesisParams(top_k=1, noise_scale=0.0, seed=7, text_lang="en", max_tokens_per_phone=3.0)
TINY_SV = ERes2NetV2Config.load(CONFIGS_DIR / "eres2netv2_tiny.json")


def _clip(voices_dir: Path, speaker: str) -> tuple[np.ndarray, int, str]:
    audio, sr = sf.read(voices_dir / speaker / "ref.flac", dtype="float32")
    return audio, sr, (voices_dir / speaker / "ref.txt").read_text().strip()


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return ModelBundle.random_tiny(seed=0, pro=True)


@pytest.fixture(scope="module")
def voice(bundle, voices_dir) -> VoicePrompt:
    audio, sr, text = _clip(voices_dir, "en_slt")
    return VoicePrompt.from_audio(bundle, audio, sr, text, "en")


def test_tiny_pro_configs_fit_together(bundle):
    cfg = SoVITSConfig.load(CONFIGS_DIR / "sovits_tiny_pro.json")
    assert cfg.use_sv and cfg.sv_dim == TINY_SV.sv_dim
    assert bundle.sovits_config == cfg and bundle.speaker_verifier.config == TINY_SV
    assert not bundle.speaker_verifier.training
    assert bundle.sovits.sv_emb.in_features == TINY_SV.sv_dim
    plain = ModelBundle.random_tiny(seed=0)
    assert plain.speaker_verifier is None and not plain.sovits_config.use_sv and plain.name != bundle.name
    # The GPT is built before the verifier, so `pro` leaves the seed's GPT weights unchanged.
    for (key, a), b in zip(plain.gpt.state_dict().items(), bundle.gpt.state_dict().values()):
        assert torch.equal(a, b), key


def test_voice_sv_embedding_is_the_verifier_output(bundle, voice, voices_dir):
    audio, sr, _ = _clip(voices_dir, "en_slt")
    expected = bundle.speaker_verifier.embed_wav(torch.from_numpy(resample(audio, sr, 16000))[None])
    assert voice.sv_emb.shape == (1, TINY_SV.sv_dim)
    torch.testing.assert_close(voice.sv_emb, expected)
    with torch.inference_mode():
        ge = bundle.sovits.style(voice.refer_specs, sv_emb=expected)
    torch.testing.assert_close(voice.style(bundle), ge)
    assert voice.style(bundle).shape == (1, bundle.sovits_config.gin_channels, 1)


def test_sv_embedding_changes_the_style(bundle, voice, voices_dir):
    audio, sr, text = _clip(voices_dir, "en_allison")
    other = VoicePrompt.from_audio(bundle, audio, sr, text, "en")
    assert not torch.allclose(voice.sv_emb, other.sv_emb)
    with torch.inference_mode():
        own = bundle.sovits.style(voice.refer_specs, sv_emb=voice.sv_emb)
        swapped = bundle.sovits.style(voice.refer_specs, sv_emb=other.sv_emb)
    # Same spectrogram, other speaker embedding: only the sv branch differs, and ge follows it.
    assert (own - swapped).abs().max() > 1e-3 * own.abs().max()


def test_synthesize_and_stream_with_a_pro_bundle(bundle, voice):
    synth = Synthesizer(bundle)
    audio = synth.synthesize(TEXT, voice, EXACT)
    assert audio.dtype == np.float32 and audio.size > 0 and np.isfinite(audio).all()
    assert np.array_equal(audio, synth.synthesize(TEXT, voice, EXACT))
    chunks = list(synth.stream(TEXT, voice, EXACT))
    joined = np.concatenate([c.samples for c in chunks])
    assert chunks[-1].is_last and len(joined) == len(audio)


def test_voice_round_trip_keeps_the_sv_embedding(tmp_path, bundle, voice):
    voice.save(tmp_path)
    loaded = VoicePrompt.load(tmp_path)
    torch.testing.assert_close(loaded.sv_emb, voice.sv_emb)
    torch.testing.assert_close(loaded.style(bundle), voice.style(bundle))


def test_pro_sovits_without_verifier_says_what_is_missing(bundle, voice, voices_dir):
    bare = replace(bundle, speaker_verifier=None)
    audio, sr, text = _clip(voices_dir, "en_slt")
    with pytest.raises(GSVError) as err:
        VoicePrompt.from_audio(bare, audio, sr, text, "en")
    assert err.value.code == "model_not_found"
    assert "pretrained_eres2netv2w24s4ep4.ckpt" in str(err.value) and "--sv" in str(err.value)
    # Voices made earlier carry their sv embedding, so they still synthesize without the verifier.
    assert Synthesizer(bare).synthesize("Read this.", voice, EXACT).size > 0


def test_verifier_width_must_fit_the_sovits(bundle):
    wrong = ERes2NetV2(dataclasses.replace(TINY_SV, m_channels=4))
    with pytest.raises(ModelConfigError, match="sv_emb takes 2560"):
        replace(bundle, speaker_verifier=wrong)


# ------------------------------------------------------------ official-layout files + sv_path


def _write_official_pro(root: Path, version: str, sv_config: ERes2NetV2Config | None = TINY_SV) -> dict[str, Path]:
    """Tiny official GPT/SoVITS files, a saved tiny HuBERT and ERes2NetV2 safetensors (+ sidecar)."""
    cfg = dataclasses.replace(factory.tiny_sovits(version), sv_dim=TINY_SV.sv_dim)
    gpt_weights = factory.random_weights(factory.gpt_shapes(factory.TINY_GPT), seed=3)
    gpt = factory.write_official_gpt(root / "s1v3.ckpt", gpt_weights, factory.official_gpt_config(factory.TINY_GPT))
    sovits, _ = factory.write_tiny_sovits(root / f"s2G{version}.pth", cfg, seed=4)
    SSLFeatureExtractor.random_tiny(hidden=cfg.ssl_dim, seed=5).model.save_pretrained(root / "hubert")
    torch.manual_seed(6)
    verifier = ERes2NetV2(TINY_SV).eval()
    save_file(verifier.state_dict(), str(root / "sv.safetensors"))
    if sv_config is not None:
        sv_config.save(root / "sv.json")
    return {"gpt": gpt, "sovits": sovits, "hubert_dir": root / "hubert", "sv_path": root / "sv.safetensors"}


@pytest.mark.parametrize("version", ["v2Pro", "v2ProPlus"])
def test_official_pro_files_load_with_sv_path_and_synthesize(tmp_path, voices_dir, version):
    paths = _write_official_pro(tmp_path, version)
    loaded = ModelBundle.from_paths(**paths)
    assert loaded.sovits_config.version == version and loaded.sovits_config.use_sv
    if version == "v2ProPlus":
        assert loaded.sovits_config.upsample_kernel_sizes[0] == 20
    torch.manual_seed(6)
    source = ERes2NetV2(TINY_SV).eval()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.speaker_verifier.state_dict()[key], value), key
    audio, sr, text = _clip(voices_dir, "en_slt")
    voice = VoicePrompt.from_audio(loaded, audio, sr, text, "en")
    torch.testing.assert_close(
        voice.sv_emb, source.embed_wav(torch.from_numpy(resample(audio, sr, 16000))[None])
    )
    out = Synthesizer(loaded).synthesize("Good morning.", voice, EXACT)
    assert out.size > 0 and np.isfinite(out).all()


def test_sv_weights_that_do_not_fit_are_refused(tmp_path):
    paths = _write_official_pro(tmp_path, "v2Pro", sv_config=None)
    with pytest.raises(CheckpointError) as err:  # tiny weights, no sidecar: default sizes do not fit
        ModelBundle.from_paths(**paths)
    assert str(tmp_path / "sv.json") in str(err.value)
    dataclasses.replace(TINY_SV, m_channels=4).save(tmp_path / "sv.json")
    with pytest.raises(CheckpointError):  # a sidecar that does not describe the weights
        ModelBundle.from_paths(**paths)
