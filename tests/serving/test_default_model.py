"""The service falls back to the default base model (models/base) when no weights are configured."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from serving.settings import ModelsMissingError, Settings


def _settings(tmp_path: Path, **values) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)


@pytest.fixture(autouse=True)
def no_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Model settings of the machine running the tests must not leak in."""
    for name in ("GSV_MODELS_DIR", "GSV_GPT", "GSV_SOVITS", "GSV_HUBERT_DIR", "GSV_BERT_DIR", "GSV_SV_PATH",
                 "GSV_RANDOM_WEIGHTS", "GSV_MODEL_VERSION", "GSV_DEFAULT_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_nothing_configured_uses_a_complete_default(tmp_path: Path, default_base: Path) -> None:
    resolved = _settings(tmp_path).resolve_models()
    assert (resolved.origin, resolved.directory, resolved.missing) == ("default", default_base, [])
    assert resolved.fields["gpt"] == default_base / "gpt.safetensors"
    assert resolved.fields["hubert_dir"] == default_base / "hubert"
    assert resolved.fields["bert_dir"] is None and resolved.version == "v2"
    assert str(default_base) in resolved.source


def test_configured_weights_and_random_weights_win_over_the_default(tmp_path: Path, default_base: Path) -> None:
    assert _settings(tmp_path, random_weights=True).resolve_models().origin == "random"
    other = tmp_path / "elsewhere"
    resolved = _settings(tmp_path, models_dir=other).resolve_models()
    assert resolved.origin == "models_dir" and resolved.missing  # never silently replaced by the default
    only_gpt = _settings(tmp_path, gpt=default_base / "gpt.safetensors").resolve_models()
    assert only_gpt.origin == "paths" and {m.setting for m in only_gpt.missing} == {"sovits", "hubert_dir"}


def test_explicit_pieces_override_single_files_of_the_default(tmp_path: Path, default_base: Path) -> None:
    bert = tmp_path / "bert"
    bert.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        (bert / name).write_text("x")
    resolved = _settings(tmp_path, bert_dir=bert).resolve_models()
    assert resolved.origin == "default" and resolved.fields["bert_dir"] == bert and not resolved.missing


def test_the_default_location_is_a_setting_too(tmp_path: Path, tiny_base_dir: Path, monkeypatch) -> None:
    assert _settings(tmp_path, default_models_dir=tiny_base_dir).resolve_models().origin == "default"
    monkeypatch.setenv("GSV_DEFAULT_MODELS_DIR", str(tiny_base_dir))
    assert _settings(tmp_path).resolve_models().directory == tiny_base_dir


def test_without_a_default_the_error_says_what_to_pass_and_where_the_default_was(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    message = settings.describe_missing_models()
    from gpt_sovits.models_dir import default_models_dir

    for hint in ("--gpt", "--models-dir", "--random-weights", "no default base model", str(default_models_dir()),
                 "GSV_DEFAULT_MODELS_DIR"):
        assert hint in message, hint
    with pytest.raises(ModelsMissingError) as err:
        settings.bundle_paths()
    assert err.value.code == "model_not_found"


def test_the_app_loads_the_default_logs_it_and_reports_it(tmp_path: Path, default_base: Path, helpers,
                                                         caplog) -> None:
    from serving.app import create_app

    settings = _settings(tmp_path, rate_limit_per_minute=0, workers=1, speaker_embeddings=False)
    with caplog.at_level(logging.INFO, logger="serving.app"), helpers.running(create_app(settings)) as client:
        info = client.get("/v1/info").json()
    assert info["random_weights"] is False
    assert info["model"].startswith("default base model: ") and "content encoder tiny-content" in info["model"]
    assert str(default_base) not in info["model"]  # public endpoint: no server paths
    logged = caplog.text
    assert f"loading models from default base model '{default_base}'" in logged
    assert "loaded SoVITS v2" in logged
