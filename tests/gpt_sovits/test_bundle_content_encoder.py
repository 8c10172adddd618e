"""A base model on our own content encoder loads like one on chinese-hubert-base, and only with it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from gpt_sovits.bundle import ModelBundle, ModelConfigError
from gpt_sovits.checkpoint import save_sovits
from gpt_sovits.content_encoder import ContentFeatureExtractor, load_content_encoder, save_content_encoder
from gpt_sovits.models_dir import resolve_models_dir
from gpt_sovits.pipeline import SynthesisParams, Synthesizer, VoicePrompt

EXACT = SynthesisParams(top_k=1, noise_scale=0.0, seed=3, text_lang="en", max_tokens_per_phone=3.0)


def _copy(base: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "base"))


def _rename_encoder(folder: Path, name: str) -> None:
    config = folder / "hubert" / "config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "name": name}))


def test_models_dir_loads_our_encoder_and_synthesizes(tiny_base_dir: Path, voices_dir: Path) -> None:
    paths = resolve_models_dir(tiny_base_dir)
    assert (paths.layout, paths.hubert_dir, paths.bert_dir) == ("native", tiny_base_dir / "hubert", None)
    bundle = ModelBundle.from_models_dir(tiny_base_dir)
    assert isinstance(bundle.ssl, ContentFeatureExtractor)
    assert bundle.content_encoder == bundle.sovits_config.content_encoder == "tiny-content"
    assert bundle.bert is None  # no BERT folder: text features are zeros
    expected = load_content_encoder(tiny_base_dir / "hubert").state_dict()
    for key, value in bundle.ssl.model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    ref, sr = sf.read(voices_dir / "en_slt" / "ref.flac", dtype="float32")
    voice = VoicePrompt.from_audio(bundle, ref, sr, (voices_dir / "en_slt" / "ref.txt").read_text().strip(), "en")
    audio = Synthesizer(bundle).synthesize("Good morning.", voice, EXACT)
    assert audio.dtype == np.float32 and len(audio) > 0 and len(audio) % bundle.samples_per_token == 0
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert "content encoder tiny-content" in bundle.describe() and "no BERT" in bundle.describe()


def test_from_paths_equals_from_models_dir(tiny_base_dir: Path) -> None:
    a = ModelBundle.from_models_dir(tiny_base_dir)
    b = ModelBundle.from_paths(tiny_base_dir / "gpt.safetensors", tiny_base_dir / "sovits.safetensors",
                               tiny_base_dir / "hubert")
    wav = torch.randn(1, 16000) * 0.1
    torch.testing.assert_close(a.ssl(wav), b.ssl(wav))
    assert a.name == b.name


def test_an_encoder_with_another_name_is_refused(tiny_base_dir: Path, tmp_path: Path) -> None:
    base = _copy(tiny_base_dir, tmp_path)
    _rename_encoder(base, "gsv-content-v2")
    with pytest.raises(ModelConfigError, match="trained on content encoder 'tiny-content'.*'gsv-content-v2'") as err:
        ModelBundle.from_models_dir(base)
    assert err.value.code == "model_mismatch"


def test_an_encoder_of_another_width_is_refused(tiny_base_dir: Path, tmp_path: Path) -> None:
    base = _copy(tiny_base_dir, tmp_path)
    shutil.rmtree(base / "hubert")
    save_content_encoder(ContentFeatureExtractor.random_tiny(hidden=48).model, base / "hubert")  # same name
    with pytest.raises(ModelConfigError, match="width 48 does not match SoVITS ssl_dim 32") as err:
        ModelBundle.from_models_dir(base)
    assert err.value.code == "model_mismatch"


def test_a_fine_tune_for_another_encoder_cannot_be_swapped_in(tiny_base_dir: Path, tmp_path: Path) -> None:
    bundle = ModelBundle.from_models_dir(tiny_base_dir)
    other = bundle.sovits_config.__class__.from_dict({**bundle.sovits_config.to_dict(),
                                                      "content_encoder": "chinese-hubert-base"})
    path = save_sovits(bundle.sovits, other, tmp_path / "ft_sovits")
    with pytest.raises(ModelConfigError, match="content encoder 'chinese-hubert-base'"):
        bundle.with_weights(sovits=path)


def test_official_hubert_bundles_keep_working(tmp_path: Path) -> None:
    """A HuBERT folder carries no name, so only its width is checked (tiny random SoVITS names 'tiny-random')."""
    from gpt_sovits.checkpoint import save_gpt

    source = ModelBundle.random_tiny(seed=1)
    save_gpt(source.gpt, source.gpt_config, tmp_path / "gpt")
    save_sovits(source.sovits, source.sovits_config, tmp_path / "sovits")
    source.ssl.model.save_pretrained(tmp_path / "hubert")
    loaded = ModelBundle.from_models_dir(tmp_path)
    assert loaded.content_encoder == "tiny-random" and not isinstance(loaded.ssl, ContentFeatureExtractor)
