"""Fixtures for the SoVITS tests: tiny random models built from configs/sovits_tiny.json."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_sovits.config import SoVITSConfig
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.sovits.random_init import make_audible

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def load_config(name: str, **overrides: object) -> SoVITSConfig:
    data = SoVITSConfig.load(CONFIGS / f"sovits_{name}.json").to_dict()
    data.update(overrides)
    return SoVITSConfig.from_dict(data)


def activate(model: SynthesizerTrn) -> SynthesizerTrn:
    """Make a random model's audio depend on its input (see gpt_sovits.sovits.random_init)."""
    return make_audible(model)


@pytest.fixture
def tiny_cfg() -> SoVITSConfig:
    return load_config("tiny")


@pytest.fixture
def tiny_model(tiny_cfg: SoVITSConfig) -> SynthesizerTrn:
    torch.manual_seed(0)
    return SynthesizerTrn(tiny_cfg).eval()


@pytest.fixture
def tiny_pro_cfg() -> SoVITSConfig:
    """A tiny v2Pro-shaped config: SV path on, style wider than the MRTE (like 1024 vs 512)."""
    return load_config("tiny", version="v2Pro", use_sv=True, gin_channels=64, sv_dim=48)
