"""Shared test set-up: small thread pools, deterministic seeds, paths to the bundled test voices."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

DATA_DIR = Path(__file__).parent / "data"
VOICES_DIR = DATA_DIR / "voices"
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def voices_dir() -> Path:
    return VOICES_DIR


@pytest.fixture(scope="session")
def configs_dir() -> Path:
    return CONFIGS_DIR


@pytest.fixture
def no_gsv_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Settings read GSV_* variables and ./.env: isolate a test from both (cwd = tmp_path)."""
    for name in list(os.environ):
        if name.startswith("GSV_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------- default base model
@pytest.fixture(autouse=True)
def _no_default_models(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never see a real models/base/ (it would change every 'nothing configured' path);
    tests of the default point it at a tiny base with `default_base`."""
    import gpt_sovits.models_dir as models_dir

    monkeypatch.setattr(models_dir, "EMBEDDED_MODELS_DIR", tmp_path_factory.getbasetemp() / "no-default-model")
    monkeypatch.delenv(models_dir.DEFAULT_MODELS_ENV, raising=False)


def write_tiny_base(out: Path, seed: int = 0) -> Path:
    """A tiny random base model in our layout, as models/base/ will be: GPT + SoVITS + our content
    encoder in hubert/ (the SoVITS names it and takes its width), written by the real savers."""
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.checkpoint import save_gpt, save_sovits
    from gpt_sovits.content_encoder import ContentFeatureExtractor, save_content_encoder, sovits_config_for

    source = ModelBundle.random_tiny(seed=seed)
    encoder = ContentFeatureExtractor.random_tiny(hidden=source.sovits_config.ssl_dim, seed=seed)
    save_gpt(source.gpt, source.gpt_config, out / "gpt")
    save_sovits(source.sovits, sovits_config_for(encoder.model.cfg, source.sovits_config), out / "sovits")
    save_content_encoder(encoder.model, out / "hubert")
    (out / "MODEL_CARD.md").write_text("# tiny random base model (tests)\n")
    return out


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base in our layout with our content encoder (read-only: copy it to change it)."""
    return write_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture
def default_base(_no_default_models: None, tiny_base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make `tiny_base_dir` the default base model (as if it were the repository's models/base/)."""
    import gpt_sovits.models_dir as models_dir

    monkeypatch.setattr(models_dir, "EMBEDDED_MODELS_DIR", tiny_base_dir)
    return tiny_base_dir
