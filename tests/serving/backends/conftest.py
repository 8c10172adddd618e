"""Tiny random bundle with an audible SoVITS, its fp32 ONNX export, and both backends."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_sovits.bundle import ModelBundle
from serving.export import export_onnx
from vocoder.weight_norm import WeightNormMixin


def activate_sovits(bundle: ModelBundle) -> ModelBundle:
    """Random init makes the flow the identity and the decoder output ~0: give it unit gains and
    random coupling outputs so audio depends on the inputs (otherwise parity is trivial)."""
    with torch.no_grad():
        for module in bundle.sovits.modules():
            if isinstance(module, WeightNormMixin):
                module.weight_g.fill_(1.0)
        for coupling in bundle.sovits.flow.flows[::2]:
            torch.nn.init.normal_(coupling.post.weight, 0.0, 0.1)
    return bundle


@pytest.fixture(scope="session")
def tiny_bundle() -> ModelBundle:
    return activate_sovits(ModelBundle.random_tiny(seed=3))


@pytest.fixture(scope="session")
def export_dir(tiny_bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export_fp32")
    export_onnx(out, tiny_bundle.gpt, tiny_bundle.sovits, precision="fp32", model_name=tiny_bundle.name)
    return out


@pytest.fixture(scope="session")
def torch_backend(tiny_bundle: ModelBundle):
    from serving.backends import make_backend

    return make_backend("torch", tiny_bundle, precision="fp32")


@pytest.fixture(scope="session")
def onnx_backend(export_dir: Path):
    from serving.backends.onnx_backend import OnnxBackend

    return OnnxBackend(export_dir, threads=1)
