"""Settings: environment/.env loading, key parsing, model path resolution and missing-model help."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gpt_sovits.errors import ModelNotFoundError
from gpt_sovits.models_dir import OFFICIAL_BERT, OFFICIAL_FILES, OFFICIAL_HUBERT, VERSIONS, resolve_models_dir
from serving.settings import MODEL_SETTINGS, ModelsMissingError, Settings


def _settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def _hf_dir(path: Path, tokenizer: bool = False) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"w")
    if tokenizer:
        (path / "vocab.txt").write_text("[PAD]\n")
    return path


def _official_layout(root: Path, version: str = "v2", *, bert: bool = True, weights: bool = True) -> None:
    """Placeholder files under the official names (resolution looks at names only)."""
    files = OFFICIAL_FILES[version]
    names = [files.gpt, files.sovits, *([files.sv] if files.sv else [])] if weights else []
    for rel in names:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"weights")
    if not (root / OFFICIAL_HUBERT).exists():
        _hf_dir(root / OFFICIAL_HUBERT)
    if bert and not (root / OFFICIAL_BERT).exists():
        _hf_dir(root / OFFICIAL_BERT, tokenizer=True)


def test_environment_and_dotenv(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GSV_PORT=9001\nGSV_DEVICE=cuda:1\n")
    monkeypatch.setenv("GSV_API_KEYS", " k1, k2 ,")
    monkeypatch.setenv("GSV_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("GSV_BACKEND", "onnx")
    s = Settings()
    assert (s.port, s.device, s.backend) == (9001, "cuda:1", "onnx")
    assert s.api_keys == ["k1", "k2"] and s.auth_enabled
    assert s.voices_dir == tmp_path / "d" / "voices"
    monkeypatch.setenv("GSV_API_KEYS", '["a,b", "c"]')
    assert Settings().api_keys == ["a,b", "c"]
    assert Settings(api_keys=[]).auth_enabled is False


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(backend="cuda-magic")
    with pytest.raises(ValidationError):
        Settings(min_upload_seconds=10, max_upload_seconds=5)
    with pytest.raises(ValidationError):
        Settings(max_upload_bytes=0)


def test_stream_limit_follows_the_device_unless_set(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert Settings().stream_limit == 1  # a 2-core CPU keeps one stream real time
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert Settings().stream_limit == 8
    assert Settings(device="cuda:0").stream_limit == 4
    assert Settings(max_concurrent_streams=3).stream_limit == 3
    monkeypatch.setenv("GSV_MAX_CONCURRENT_STREAMS", "6")
    assert Settings(device="cuda").stream_limit == 6
    with pytest.raises(ValidationError):
        Settings(max_concurrent_streams=0)


def test_every_field_is_documented() -> None:
    undocumented = [name for name, f in Settings.model_fields.items() if not f.description]
    assert undocumented == []


@pytest.mark.parametrize("version", VERSIONS)
def test_models_dir_resolves_every_version_like_the_library(tmp_path: Path, version: str) -> None:
    _official_layout(tmp_path, version)
    s = _settings(models_dir=tmp_path, model_version=version.lower())  # case-insensitive, like --version
    assert s.model_version == version and s.describe_missing_models() is None
    expected = resolve_models_dir(tmp_path, version)
    assert s.bundle_paths() == {"gpt": expected.gpt, "sovits": expected.sovits, "hubert_dir": expected.hubert_dir,
                                "bert_dir": expected.bert_dir, "sv_path": expected.sv_path}
    assert (s.bundle_paths()["sv_path"] is not None) == version.startswith("v2Pro")
    assert list(s.bundle_paths()) == list(MODEL_SETTINGS)  # exactly ModelBundle.from_paths' keywords


def test_explicit_paths_override_single_pieces_of_models_dir(tmp_path: Path) -> None:
    _official_layout(tmp_path)
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"x")
    fields = _settings(models_dir=tmp_path, gpt=mine).bundle_paths()
    assert fields["gpt"] == mine and fields["sovits"] == tmp_path / OFFICIAL_FILES["v2"].sovits


def test_an_incomplete_models_dir_is_completed_by_explicit_paths(tmp_path: Path) -> None:
    _official_layout(tmp_path, weights=False)  # only HuBERT and BERT, e.g. next to our own fine-tunes
    gpt, sovits = tmp_path / "ft" / "gpt.ckpt", tmp_path / "ft" / "sovits.pth"
    gpt.parent.mkdir()
    gpt.write_bytes(b"x")
    sovits.write_bytes(b"x")
    s = _settings(models_dir=tmp_path, gpt=gpt, sovits=sovits)
    assert s.describe_missing_models() is None
    assert s.bundle_paths() == {"gpt": gpt, "sovits": sovits, "hubert_dir": tmp_path / OFFICIAL_HUBERT,
                                "bert_dir": tmp_path / OFFICIAL_BERT, "sv_path": None}


def test_models_dir_gaps_are_the_library_missing_list_with_the_flag_that_fills_each(tmp_path: Path) -> None:
    _official_layout(tmp_path, "v2Pro", weights=False)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_models_dir(tmp_path, "v2Pro")
    s = _settings(models_dir=tmp_path, model_version="v2Pro")
    message = s.describe_missing_models()
    assert message is not None and err.value.missing
    for label in err.value.missing:
        assert label in message
    assert {m.setting for m in s.missing_models()} == {"gpt", "sovits", "sv_path"}
    for hint in ("--gpt", "GSV_GPT", "--sovits", "--sv", "GSV_SV_PATH", "--random-weights", "--model-version"):
        assert hint in message
    with pytest.raises(ModelsMissingError) as raised:
        s.bundle_paths()
    assert raised.value.code == "model_not_found" and str(raised.value) == message


def test_our_layout_is_resolved_too(tmp_path: Path) -> None:
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.checkpoint import save_gpt, save_sovits

    source = ModelBundle.random_tiny(seed=1)
    save_gpt(source.gpt, source.gpt_config, tmp_path / "gpt")
    save_sovits(source.sovits, source.sovits_config, tmp_path / "sovits")
    source.ssl.model.save_pretrained(tmp_path / "hubert")
    s = _settings(models_dir=tmp_path)
    assert s.describe_missing_models() is None
    fields = s.bundle_paths()
    assert (fields["gpt"], fields["hubert_dir"], fields["bert_dir"]) == (
        tmp_path / "gpt.safetensors", tmp_path / "hubert", None)
    assert s.resolve_models().version == "v2"
    message = _settings(models_dir=tmp_path, model_version="v2Pro").describe_missing_models()
    assert message is not None and "v2 SoVITS" in message and "--model-version" in message


def test_nothing_configured_names_every_way_to_provide_models(tmp_path: Path) -> None:
    message = _settings(gpt=tmp_path / "nope.ckpt").describe_missing_models()
    assert message is not None
    assert "GPT" in message and str(tmp_path / "nope.ckpt") in message and "file not found" in message
    for hint in ("--sovits", "GSV_SOVITS", "--hubert-dir", "GSV_HUBERT_DIR", "--models-dir", "GSV_MODELS_DIR",
                 "--random-weights", OFFICIAL_FILES["v2"].sovits, "gpt.safetensors"):
        assert hint in message
    assert _settings(random_weights=True).describe_missing_models() is None
    absent = _settings(models_dir=tmp_path / "absent").describe_missing_models()
    assert absent is not None and "directory not found" in absent and str(tmp_path / "absent") in absent


def test_explicit_directories_must_be_complete_hugging_face_folders(tmp_path: Path) -> None:
    _official_layout(tmp_path, bert=False)
    assert _settings(models_dir=tmp_path).describe_missing_models() is None  # no BERT: fine (Chinese only)
    hubert = _hf_dir(tmp_path / "h")
    (hubert / "model.safetensors").unlink()
    message = _settings(models_dir=tmp_path, hubert_dir=hubert).describe_missing_models()
    assert "HuBERT" in message and "no weight file" in message and "--hubert-dir" in message
    bert = _hf_dir(tmp_path / "b")  # weights but no tokenizer
    message = _settings(models_dir=tmp_path, bert_dir=bert).describe_missing_models()
    assert "BERT" in message and "tokenizer" in message and "vocab.txt" in message


def test_a_pro_sovits_given_alone_asks_for_the_speaker_verifier(tmp_path: Path) -> None:
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.checkpoint import save_sovits

    pro = ModelBundle.random_tiny(pro=True)
    _official_layout(tmp_path)
    sovits = save_sovits(pro.sovits, pro.sovits_config, tmp_path / "ft" / "sovits")
    message = _settings(models_dir=tmp_path, sovits=sovits).describe_missing_models()
    assert message is not None and "ERes2NetV2" in message and "--sv" in message
    sv = tmp_path / "sv.ckpt"
    sv.write_bytes(b"x")
    assert _settings(models_dir=tmp_path, sovits=sovits, sv_path=sv).describe_missing_models() is None


def test_unknown_model_versions_are_rejected() -> None:
    with pytest.raises(ValidationError, match="v1, v2, v2Pro, v2ProPlus"):
        _settings(model_version="v4")
