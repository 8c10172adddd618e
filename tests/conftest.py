"""Shared test set-up: small thread pools, deterministic seeds, paths to the bundled test voices."""
from __future__ import annotations

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
