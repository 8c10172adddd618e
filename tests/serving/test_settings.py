"""Settings: environment/.env loading, key parsing, model path resolution and missing-model help."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.settings import OFFICIAL_BERT, OFFICIAL_GPT_V2, OFFICIAL_HUBERT, OFFICIAL_SOVITS_V2, Settings


def _official_layout(root: Path, *, bert: bool = True) -> None:
    for rel in (OFFICIAL_GPT_V2, OFFICIAL_SOVITS_V2):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"weights")
    for rel in (OFFICIAL_HUBERT, OFFICIAL_BERT) if bert else (OFFICIAL_HUBERT,):
        (root / rel).mkdir(parents=True)
        (root / rel / "config.json").write_text("{}")
        (root / rel / "model.safetensors").write_bytes(b"w")


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


def test_every_field_is_documented() -> None:
    undocumented = [name for name, f in Settings.model_fields.items() if not f.description]
    assert undocumented == []


def test_models_dir_official_layout(tmp_path: Path) -> None:
    _official_layout(tmp_path)
    s = Settings(models_dir=tmp_path)
    paths = s.model_paths()
    assert paths.gpt == tmp_path / OFFICIAL_GPT_V2 and paths.hubert_dir == tmp_path / OFFICIAL_HUBERT
    assert s.describe_missing_models() is None
    explicit = tmp_path / "mine.ckpt"
    assert Settings(models_dir=tmp_path, gpt=explicit).model_paths().gpt == explicit  # explicit wins


def test_missing_models_are_named_with_how_to_fix(tmp_path: Path) -> None:
    message = Settings(gpt=tmp_path / "nope.ckpt").describe_missing_models()
    assert message is not None
    assert "GPT" in message and str(tmp_path / "nope.ckpt") in message and "file not found" in message
    for hint in ("--sovits", "GSV_SOVITS", "--hubert-dir", "GSV_HUBERT_DIR", "--models-dir",
                 "--random-weights", OFFICIAL_SOVITS_V2):
        assert hint in message
    assert Settings(random_weights=True).describe_missing_models() is None


def test_bert_is_optional_and_hubert_dir_must_hold_weights(tmp_path: Path) -> None:
    _official_layout(tmp_path, bert=False)
    s = Settings(models_dir=tmp_path)
    assert s.describe_missing_models() is None  # BERT only matters for Chinese
    assert [m.required for m in s.missing_models()] == [False]
    (tmp_path / OFFICIAL_HUBERT / "model.safetensors").unlink()
    message = s.describe_missing_models()
    assert "HuBERT" in message and "no weight file" in message and "optional" in message
