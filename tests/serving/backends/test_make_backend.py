"""Backend factory: names from settings, export reuse, clean refusal when TensorRT is absent."""
from __future__ import annotations

import importlib.util
import typing

import pytest
import torch

from serving.backends import BACKENDS, BackendError, BackendUnavailableError, ensure_export, make_backend
from serving.backends.onnx_backend import OnnxBackend
from serving.backends.torch_backend import TorchBackend
from serving.export.sidecar import SIDECAR_NAME
from serving.settings import Settings

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def test_settings_backend_names_are_all_buildable_names():
    field = Settings.model_fields["backend"]
    assert set(typing.get_args(field.annotation)) == set(BACKENDS)


def test_torch_backend_prepares_copies(tiny_bundle):
    backend = make_backend("torch", tiny_bundle, precision="int8")
    assert isinstance(backend, TorchBackend) and backend.precision == "int8"
    assert backend.gpt is not tiny_bundle.gpt
    assert not any(n.endswith("weight_g") for n, _ in backend.sovits.named_parameters())
    assert backend.sample_rate == 32000 and backend.samples_per_token == 1280
    backend.warmup()


def test_onnx_backend_reuses_a_matching_export(tiny_bundle, export_dir):
    sidecar = export_dir / SIDECAR_NAME
    before = sidecar.stat().st_mtime_ns
    backend = make_backend("onnx", tiny_bundle, precision="fp32", export_dir=export_dir, threads=1)
    assert isinstance(backend, OnnxBackend) and backend.precision == "fp32"
    assert sidecar.stat().st_mtime_ns == before  # nothing re-exported
    assert ensure_export(tiny_bundle, export_dir, "fp32") == export_dir


def test_unknown_backend_is_refused(tiny_bundle):
    with pytest.raises(BackendError, match="choose one of torch, onnx, tensorrt"):
        make_backend("tflite", tiny_bundle)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed: the refusal path is not reachable")
def test_tensorrt_absent_raises_unavailable(tiny_bundle, tmp_path):
    with pytest.raises(BackendUnavailableError) as info:
        make_backend("tensorrt", tiny_bundle, export_dir=tmp_path)
    assert info.value.code == "backend_unavailable"
    assert not (tmp_path / SIDECAR_NAME).exists()  # failed before exporting anything


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs tensorrt and CUDA")
def test_tensorrt_matches_torch(tiny_bundle, export_dir):
    from gpt_sovits.engine import DecodeRequest, Decoder
    from gpt_sovits.sampling import SamplingParams
    from serving.backends.tensorrt_backend import TensorRTBackend

    trt = TensorRTBackend(export_dir, precision="fp32")
    gen = torch.Generator().manual_seed(0)
    req = DecodeRequest(torch.randint(0, 732, (10,), generator=gen),
                        torch.randn(tiny_bundle.gpt_config.bert_dim, 10, generator=gen),
                        torch.randint(0, 1024, (6,), generator=gen))
    params = SamplingParams.greedy(seed=0, max_new_tokens=20, min_new_tokens=20)
    assert list(trt.decoder().stream(req, params)) == Decoder(tiny_bundle.gpt).generate([req], params)[0].tolist()
    codes = torch.randint(0, 1024, (1, 1, 12), generator=gen)
    phones = torch.randint(0, 732, (1, 9), generator=gen)
    ge = torch.randn(1, tiny_bundle.sovits_config.gin_channels, 1, generator=gen)
    ref = tiny_bundle.sovits.decode(codes, phones, ge, 0.0)
    torch.testing.assert_close(trt.decode_chunk(codes, phones, ge, 0.0), ref, atol=1e-3, rtol=1e-3)
