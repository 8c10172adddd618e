"""One directory in the official `pretrained_models` layout (or ours) -> paths -> a loaded bundle."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from gpt_sovits.bundle import CONFIGS_DIR
from gpt_sovits.checkpoint import save_gpt, save_sovits
from gpt_sovits.errors import ModelNotFoundError
from gpt_sovits.features import SSLFeatureExtractor
from gpt_sovits.models_dir import (
    OFFICIAL_FILES,
    OFFICIAL_SV,
    ModelVersionError,
    available_versions,
    resolve_models_dir,
)
from gpt_sovits.pipeline import ModelBundle, SynthesisParams, Synthesizer, VoicePrompt
from scripts.cli import main
from speaker_encoder.eres2net import ERes2NetV2, ERes2NetV2Config

try:
    from . import official_ckpt_factory as factory
except ImportError:  # tests/ is not a package: pytest puts this folder on sys.path
    import official_ckpt_factory as factory

EXACT = SynthesisParams(top_k=1, noise_scale=0.0, seed=7, text_lang="en", max_tokens_per_phone=3.0)
TINY_SV = ERes2NetV2Config.load(CONFIGS_DIR / "eres2netv2_tiny.json")
HUBERT_FILES = ["chinese-hubert-base/config.json", "chinese-hubert-base/model.safetensors"]


def _write_official(root: Path, version: str) -> None:
    """Tiny random files under the official names of `version` (HuBERT and SV shared)."""
    files = OFFICIAL_FILES[version]
    cfg = dataclasses.replace(factory.tiny_sovits(version), sv_dim=TINY_SV.sv_dim)
    gpt_weights = factory.random_weights(factory.gpt_shapes(factory.TINY_GPT), seed=1)
    factory.write_official_gpt(root / files.gpt, gpt_weights, factory.official_gpt_config(factory.TINY_GPT))
    factory.write_tiny_sovits(root / files.sovits, cfg, seed=2)
    if not (root / "chinese-hubert-base").is_dir():
        SSLFeatureExtractor.random_tiny(hidden=cfg.ssl_dim).model.save_pretrained(root / "chinese-hubert-base")
    if files.sv and not (root / files.sv).is_file():
        (root / files.sv).parent.mkdir(parents=True, exist_ok=True)
        torch.save(ERes2NetV2(TINY_SV).state_dict(), root / files.sv)
        TINY_SV.save((root / files.sv).with_suffix(".json"))  # tiny sizes; the real file needs none


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkout") / "GPT_SoVITS" / "pretrained_models"
    for version in ("v2", "v2Pro"):
        _write_official(root, version)
    return root


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def _missing(err: pytest.ExceptionInfo[ModelNotFoundError]) -> list[str]:
    for name in err.value.missing:
        assert name in str(err.value)  # every missing path is named in the message itself
    return err.value.missing


def test_official_layout_resolves_each_version(pretrained):
    v2 = resolve_models_dir(pretrained)
    assert (v2.version, v2.layout) == ("v2", "official")
    assert v2.gpt == pretrained / "gsv-v2final-pretrained" / "s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt"
    assert v2.sovits == pretrained / "gsv-v2final-pretrained" / "s2G2333k.pth"
    assert v2.hubert_dir == pretrained / "chinese-hubert-base"
    assert v2.bert_dir is None and v2.sv_path is None
    pro = resolve_models_dir(pretrained, "v2pro")  # version names are case-insensitive
    assert pro.version == "v2Pro" and pro.gpt == pretrained / "s1v3.ckpt"
    assert pro.sovits == pretrained / "v2Pro" / "s2Gv2Pro.pth"
    assert pro.sv_path == pretrained / "sv" / "pretrained_eres2netv2w24s4ep4.ckpt"
    assert available_versions(pretrained) == ["v2", "v2Pro"]
    # Pointing at the GPT-SoVITS checkout (or its GPT_SoVITS folder) finds pretrained_models.
    assert resolve_models_dir(pretrained.parent.parent) == v2 and resolve_models_dir(pretrained.parent) == v2


def test_versions_not_in_the_directory_name_their_files(pretrained):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_models_dir(pretrained, "v1")
    assert _missing(err) == ["s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt", "s2G488k.pth"]
    assert "Complete sets found here: v2, v2Pro" in str(err.value)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_models_dir(pretrained, "v2ProPlus")
    assert _missing(err) == ["v2Pro/s2Gv2ProPlus.pth"]
    with pytest.raises(ModelVersionError, match="v3/v4"):
        resolve_models_dir(pretrained, "v3")


def test_every_missing_piece_is_listed(tmp_path):
    _touch(tmp_path, OFFICIAL_FILES["v2Pro"].gpt, "chinese-hubert-base/config.json")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_models_dir(tmp_path, "v2Pro")
    assert err.value.code == "model_not_found" and err.value.path == tmp_path
    assert _missing(err) == [
        "v2Pro/s2Gv2Pro.pth",
        "chinese-hubert-base/model.safetensors or chinese-hubert-base/pytorch_model.bin",
        OFFICIAL_SV,
    ]
    _touch(tmp_path, "v2Pro/s2Gv2Pro.pth", "chinese-hubert-base/pytorch_model.bin", OFFICIAL_SV)
    assert resolve_models_dir(tmp_path, "v2Pro").sv_path == tmp_path / OFFICIAL_SV
    # BERT is optional, but a BERT folder without its tokenizer is a broken install, not "absent".
    _touch(tmp_path, "chinese-roberta-wwm-ext-large/config.json", "chinese-roberta-wwm-ext-large/model.safetensors")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_models_dir(tmp_path, "v2Pro")
    assert _missing(err) == ["chinese-roberta-wwm-ext-large/tokenizer.json or chinese-roberta-wwm-ext-large/vocab.txt"]
    _touch(tmp_path, "chinese-roberta-wwm-ext-large/vocab.txt")
    assert resolve_models_dir(tmp_path, "v2Pro").bert_dir == tmp_path / "chinese-roberta-wwm-ext-large"


def test_empty_or_absent_directory(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_models_dir(tmp_path)
    expected = [OFFICIAL_FILES["v2"].gpt, OFFICIAL_FILES["v2"].sovits, *HUBERT_FILES]
    assert [m.split(" or ")[0] for m in _missing(err)] == expected
    with pytest.raises(ModelNotFoundError, match="the directory itself"):
        resolve_models_dir(tmp_path / "nope")


def test_official_layout_loads_and_synthesizes(pretrained, voices_dir):
    audio, sr = sf.read(voices_dir / "en_slt" / "ref.flac", dtype="float32")
    for version in ("v2", "v2Pro"):
        bundle = ModelBundle.from_models_dir(pretrained, version)
        assert bundle.sovits_config.version == version
        assert (bundle.speaker_verifier is not None) == (version == "v2Pro")
        voice = VoicePrompt.from_audio(bundle, audio, sr, "Hello there.", "en")
        assert (voice.sv_emb is not None) == (version == "v2Pro")
        out = Synthesizer(bundle).synthesize("Good morning.", voice, EXACT)
        assert out.size > 0 and np.isfinite(out).all()


def _write_native(root: Path, bundle: ModelBundle) -> None:
    save_gpt(bundle.gpt, bundle.gpt_config, root / "gpt")
    save_sovits(bundle.sovits, bundle.sovits_config, root / "sovits")
    bundle.ssl.model.save_pretrained(root / "hubert")


def test_our_layout_resolves_loads_and_checks_the_version(tmp_path):
    source = ModelBundle.random_tiny(seed=2, pro=True)
    _write_native(tmp_path, source)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_models_dir(tmp_path)
    assert _missing(err) == ["sv.safetensors"]  # the SoVITS is a Pro model, so the verifier is required
    save_file(source.speaker_verifier.state_dict(), str(tmp_path / "sv.safetensors"))
    TINY_SV.save(tmp_path / "sv.json")
    paths = resolve_models_dir(tmp_path)
    assert (paths.layout, paths.version, paths.gpt, paths.bert_dir) == (
        "native", "v2Pro", tmp_path / "gpt.safetensors", None)
    with pytest.raises(ModelNotFoundError, match="holds our layout with a v2Pro SoVITS"):
        resolve_models_dir(tmp_path, "v2")
    loaded = ModelBundle.from_models_dir(tmp_path)
    for key, value in source.sovits.state_dict().items():
        assert torch.equal(loaded.sovits.state_dict()[key], value), key
    x = torch.randn(1, 400, TINY_SV.feat_dim)
    torch.testing.assert_close(loaded.speaker_verifier.sv_embedding(x), source.speaker_verifier.sv_embedding(x))


def test_synth_cli_with_models_dir(tmp_path, pretrained, voices_dir, capsys):
    ref = str(voices_dir / "en_slt" / "ref.flac")
    out = tmp_path / "out.wav"
    common = ["synth", "--ref", ref, "--ref-text", "Hello there.", "--ref-lang", "en", "--text", "Good morning.",
              "--lang", "en", "--top-k", "1", "--seed", "1", "-o", str(out)]
    assert main([*common, "--models-dir", str(pretrained), "--version", "v2Pro"]) == 0
    assert sf.info(out).samplerate == 32000 and sf.info(out).frames > 0
    assert main([*common, "--models-dir", str(pretrained), "--version", "v1"]) == 2
    err = capsys.readouterr().err
    assert "model_not_found" in err and "s2G488k.pth" in err
    assert main([*common, "--models-dir", str(pretrained), "--sv", "x.ckpt"]) == 2
    assert "invalid_arguments" in capsys.readouterr().err
    assert main([*common, "--version", "v2"]) == 2  # --version means nothing without --models-dir
    assert "--models-dir" in capsys.readouterr().err


def test_moving_a_file_away_is_reported(tmp_path, pretrained):
    root = tmp_path / "pm"
    shutil.copytree(pretrained, root)
    (root / OFFICIAL_SV).unlink()
    with pytest.raises(ModelNotFoundError) as err:
        ModelBundle.from_models_dir(root, "v2Pro")
    assert _missing(err) == [OFFICIAL_SV]
    assert available_versions(root) == ["v2"]
