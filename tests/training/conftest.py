"""Shared fixtures: one tiny-model dataset of the en_slt voice, and tiny base weights."""
from __future__ import annotations

from pathlib import Path

import pytest

from training.config import PrepareConfig
from training.dataset import DatasetDir
from training.features import FeatureModels
from training.finetune import make_random_tiny_base
from training.prepare import PrepareReport, prepare_dataset
from training.transcripts import collect_sources

EN_SLT = Path(__file__).resolve().parents[1] / "data" / "voices" / "en_slt"


@pytest.fixture(scope="session")
def feature_models() -> FeatureModels:
    return FeatureModels.random_tiny(0)


@pytest.fixture(scope="session")
def slt_dataset(tmp_path_factory: pytest.TempPathFactory, feature_models: FeatureModels) -> tuple[DatasetDir, PrepareReport]:
    """en_slt prepared from utts/ + clone.list with the tiny random feature models."""
    out = tmp_path_factory.mktemp("slt") / "dataset"
    sources = collect_sources([EN_SLT / "utts"], EN_SLT / "clone.list")
    report = prepare_dataset(sources, out, PrepareConfig(), feature_models, progress=False)
    return DatasetDir(out), report


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(gpt, sovits) files of ModelBundle.random_tiny(0), the SoVITS with a posterior encoder."""
    return make_random_tiny_base(tmp_path_factory.mktemp("base"))
