"""Tiny random models and one fp32 export of them, shared by the export tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from gpt_sovits.bundle import ModelBundle
from serving.export import export_onnx


@pytest.fixture(scope="session")
def bundle() -> ModelBundle:
    return ModelBundle.random_tiny(seed=1)  # audible: random_tiny applies make_audible


@pytest.fixture(scope="session")
def exported(bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(out, bundle.gpt, bundle.sovits, precision="fp32", model_name="tiny-test")
    return out
