"""GE2E encoder: weights loading, similarity ordering on the bundled voices, parity with resemblyzer."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import speaker_encoder
from gpt_sovits.audio import load_audio, resample
from gpt_sovits.errors import ModelNotFoundError
from speaker_encoder import cosine
from speaker_encoder.ge2e import GE2EConfig, GE2EEncoder, load_ge2e, resemblyzer_weights_path
from speaker_encoder.vad import normalize_volume, trim_long_silences

CLIPS = [("en_slt", "ref"), ("en_slt", "clone"), ("en_allison", "ref"), ("en_allison", "clone")]


@pytest.fixture(scope="module")
def model() -> GE2EEncoder:
    encoder, config = speaker_encoder.load()
    assert isinstance(encoder, speaker_encoder.Model) and isinstance(config, speaker_encoder.Config)
    return encoder


@pytest.fixture(scope="module")
def audio(voices_dir: Path) -> dict[tuple[str, str], tuple[np.ndarray, int]]:
    return {(voice, name): load_audio(voices_dir / voice / f"{name}.flac") for voice, name in CLIPS}


@pytest.fixture(scope="module")
def embeddings(model: GE2EEncoder, audio: dict) -> dict[tuple[str, str], np.ndarray]:
    return {key: model.embed(*audio[key]) for key in CLIPS}


def test_embeddings_are_unit_vectors(embeddings: dict) -> None:
    for emb in embeddings.values():
        assert emb.shape == (256,) and emb.dtype == np.float32
        assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
        assert (emb >= 0).all()  # ReLU before normalisation


def test_same_speaker_scores_clearly_higher(embeddings: dict) -> None:
    same_slt = cosine(embeddings["en_slt", "ref"], embeddings["en_slt", "clone"])
    same_allison = cosine(embeddings["en_allison", "ref"], embeddings["en_allison", "clone"])
    different = [
        cosine(embeddings["en_slt", a], embeddings["en_allison", b]) for a in ("ref", "clone") for b in ("ref", "clone")
    ]
    # The shared README measured 0.96-0.97 same-voice and 0.66-0.69 for this pair with resemblyzer.
    assert min(same_slt, same_allison) > 0.9
    assert max(different) < 0.8
    assert min(same_slt, same_allison) - max(different) > 0.15


def test_parity_with_resemblyzer(model: GE2EEncoder, audio: dict, embeddings: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resemblyzer = pytest.importorskip("resemblyzer")
    theirs_model = resemblyzer.VoiceEncoder(device="cpu", verbose=False)
    for key in [("en_slt", "ref"), ("en_allison", "ref"), ("en_allison", "clone")]:
        wav, sr = audio[key]
        theirs = theirs_model.embed_utterance(resemblyzer.preprocess_wav(wav, source_sr=sr))
        assert cosine(embeddings[key], theirs) > 0.999, key


def test_vad_trimming_matches_resemblyzer(audio: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resemblyzer_audio = pytest.importorskip("resemblyzer.audio")
    wav, _ = audio["en_allison", "ref"]
    gap = np.concatenate([wav, np.zeros(3 * 16000, dtype=np.float32), wav])
    gap = normalize_volume(gap, -30.0)
    ours = trim_long_silences(gap)
    theirs = resemblyzer_audio.trim_long_silences(gap)
    np.testing.assert_array_equal(ours, theirs)
    assert len(ours) < len(gap) - 2 * 16000  # most of the 3 s pause is gone


def test_rate_invariance(model: GE2EEncoder, audio: dict, embeddings: dict) -> None:
    wav, sr = audio["en_allison", "ref"]
    upsampled = resample(wav, sr, 44100)
    assert cosine(model.embed(upsampled, 44100), embeddings["en_allison", "ref"]) > 0.99


def test_partial_starts(model: GE2EEncoder) -> None:
    assert model.partial_starts(8000) == [0]  # shorter than one partial: still one, zero-padded
    # 3 s = 301 frames: starts every 77 frames; the last covers 91% of a partial, so it is kept.
    assert model.partial_starts(48000) == [0, 77, 154]
    # 2 s: the second partial (from frame 77) is 77% real audio, kept; at 1.875 s only 69%, dropped.
    assert model.partial_starts(32000) == [0, 77]
    assert model.partial_starts(30000) == [0]


def test_silence_and_empty_input_raise(model: GE2EEncoder) -> None:
    with pytest.raises(ValueError, match="No speech"):
        model.embed(np.zeros(32000, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="No speech"):
        model.embed(np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="mono"):
        model.embed(np.zeros((2, 16000), dtype=np.float32), 16000)


def test_forward_batches_partials(model: GE2EEncoder) -> None:
    out = model(torch.rand(3, 160, 40))
    assert out.shape == (3, 256)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_without_vad_still_separates_speakers(audio: dict) -> None:
    encoder, _ = load_ge2e(config=GE2EConfig(trim_silence=False))
    slt = encoder.embed(*audio["en_slt", "ref"])
    allison = encoder.embed(*audio["en_allison", "ref"])
    slt_clone = encoder.embed(*audio["en_slt", "clone"])
    assert cosine(slt, slt_clone) > cosine(slt, allison) + 0.15


def test_weights_path_found_without_importing_resemblyzer() -> None:
    path = resemblyzer_weights_path()
    assert path.name == "pretrained.pt" and path.parent.name == "resemblyzer"


def test_load_errors_and_safetensors_round_trip(model: GE2EEncoder, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        speaker_encoder.load(tmp_path / "missing.pt")
    assert "resemblyzer" in str(info.value) and "missing.pt" in str(info.value)
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "ge2e.safetensors"))
    model.config.save(tmp_path / "config.json")
    loaded, config = speaker_encoder.load(tmp_path / "ge2e.safetensors")
    assert config == model.config
    mels = torch.rand(1, 160, 40)
    torch.testing.assert_close(loaded(mels), model(mels))
    torch.save({"lstm.weight_ih_l0": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError):
        speaker_encoder.load(tmp_path / "bad.pt")


def test_cosine_helper() -> None:
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == 0.0
    assert cosine(torch.tensor([1.0, 1.0]), np.array([2.0, 2.0])) == pytest.approx(1.0)
    assert cosine(np.zeros(3), np.ones(3)) == 0.0
    with pytest.raises(ValueError):
        cosine(np.ones(3), np.ones(4))
