"""The default base model location: package-relative, moved by env or argument, complete or explained."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import gpt_sovits.models_dir as models_dir
from gpt_sovits.errors import ModelNotFoundError
from gpt_sovits.models_dir import (
    DEFAULT_MODELS_ENV,
    default_models_dir,
    find_default_models,
    resolve_default_models,
)


def test_embedded_location_is_models_base_beside_the_package_not_the_cwd(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.undo()  # the real constant, not the test suite's stand-in
    monkeypatch.delenv(DEFAULT_MODELS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    repo = Path(models_dir.__file__).resolve().parents[1]
    assert default_models_dir() == repo / "models" / "base"
    assert default_models_dir().is_absolute()


def test_environment_then_argument_override_the_location(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DEFAULT_MODELS_ENV, str(tmp_path / "env"))
    assert default_models_dir() == tmp_path / "env"
    assert default_models_dir(tmp_path / "arg") == tmp_path / "arg"


def test_a_complete_default_resolves_to_our_layout(default_base: Path) -> None:
    paths = resolve_default_models()
    assert (paths.layout, paths.gpt, paths.hubert_dir) == ("native", default_base / "gpt.safetensors",
                                                            default_base / "hubert")
    assert find_default_models() == (default_base, None)


def test_a_missing_default_says_where_it_looked_and_how_to_move_it() -> None:
    with pytest.raises(ModelNotFoundError, match=DEFAULT_MODELS_ENV) as err:
        resolve_default_models()
    assert err.value.missing == ["the directory itself"]
    folder, problem = find_default_models()
    assert folder is None
    assert str(default_models_dir()) in problem and DEFAULT_MODELS_ENV in problem and "docs/base_model.md" in problem


def test_an_incomplete_default_names_the_missing_files(tiny_base_dir: Path, tmp_path: Path) -> None:
    base = Path(shutil.copytree(tiny_base_dir, tmp_path / "base"))
    (base / "sovits.json").unlink()
    shutil.rmtree(base / "hubert")
    folder, problem = find_default_models(base)
    assert folder is None and "sovits.json" in problem and "hubert/config.json" in problem
