"""Tiny random bundle (audible SoVITS), its fp32 ONNX export, and both backends."""
from __future__ import annotations

from pathlib import Path

import pytest

from gpt_sovits.bundle import ModelBundle
from serving.export import export_onnx


@pytest.fixture(scope="session")
def tiny_bundle() -> ModelBundle:
    return ModelBundle.random_tiny(seed=3)  # audible: random_tiny applies make_audible


@pytest.fixture(scope="session")
def export_dir(tiny_bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export_fp32")
    export_onnx(out, tiny_bundle.gpt, tiny_bundle.sovits, precision="fp32", model_name=tiny_bundle.name)
    return out


@pytest.fixture(scope="session")
def torch_backend(tiny_bundle: ModelBundle):
    from serving.backends import make_backend

    # FP32 generator too (auto would pick BF16 on CPUs with native BF16): parity tests compare
    # this backend with the plain pipeline at 1e-4; the BF16 bound is tested in test_fast.
    return make_backend("torch", tiny_bundle, precision="fp32", vocoder_precision="fp32")


@pytest.fixture(scope="session")
def onnx_backend(export_dir: Path):
    from serving.backends.onnx_backend import OnnxBackend

    return OnnxBackend(export_dir, threads=1)
