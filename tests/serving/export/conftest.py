"""Tiny random models and one fp32 export of them, shared by the export tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_sovits.bundle import ModelBundle
from serving.export import export_onnx
from vocoder.weight_norm import WeightNormMixin


@pytest.fixture(scope="session")
def bundle() -> ModelBundle:
    b = ModelBundle.random_tiny(seed=1)
    with torch.no_grad():  # audible output (random init decodes to ~0 whatever the input)
        for module in b.sovits.modules():
            if isinstance(module, WeightNormMixin):
                module.weight_g.fill_(1.0)
    return b


@pytest.fixture(scope="session")
def exported(bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(out, bundle.gpt, bundle.sovits, precision="fp32", model_name="tiny-test")
    return out
