"""ONNX Runtime vs PyTorch on tiny models: logits, tokens, chunk audio, reference path, INT8/FP16.

Stated tolerances: FP32 graphs match PyTorch to 1e-4 absolute on logits and 1e-5 on audio (float
reassociation only); greedy and seeded-sampled token sequences are identical; FP16 graphs stay
within 2% relative L2 of FP32 logits and audio; INT8 (dynamic, GPT MatMuls) within 5%.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt_sovits.engine import DecodeRequest, DecodeRequestError, Decoder
from gpt_sovits.sampling import SamplingParams
from gpt_sovits.sovits.spectrogram import linear_spectrogram
from serving.backends import BackendInputError
from serving.backends.onnx_backend import OnnxBackend
from serving.export.onnx_export import convert_fp16, quantize_int8_dynamic
from serving.export.sidecar import SIDECAR_NAME, load_export_info


def _request(cfg, n: int = 13, p: int = 9, seed: int = 0) -> DecodeRequest:
    gen = torch.Generator().manual_seed(seed)
    return DecodeRequest(torch.randint(0, 732, (n,), generator=gen),
                         torch.randn(cfg.bert_dim, n, generator=gen),
                         torch.randint(0, 1024, (p,), generator=gen))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _chunk_inputs(cfg, tokens: int = 20, phones: int = 15, seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, cfg.codebook_size, (1, 1, tokens), generator=gen),
            torch.randint(0, cfg.n_symbols, (1, phones), generator=gen),
            torch.randn(1, cfg.gin_channels, 1, generator=gen))


def _variant(export_dir: Path, tmp_path: Path, precision: str) -> OnnxBackend:
    """A copy of the fp32 export converted to `precision` the way `export_onnx` does it."""
    out = tmp_path / precision
    shutil.copytree(export_dir, out)
    info = load_export_info(out)
    if precision == "fp16":
        for name in info.graphs.values():
            convert_fp16(out / name)
    else:
        for role in ("t2s_prefill", "t2s_step"):
            quantize_int8_dynamic(out / info.graphs[role])
    info.precision = precision
    info.save(out / SIDECAR_NAME)
    return OnnxBackend(out, threads=1)


def test_prefill_and_step_logits_match(torch_backend, onnx_backend, tiny_bundle):
    req = _request(tiny_bundle.gpt_config)
    ref_logits, ref_state = torch_backend.t2s_prefill(req, 8)
    logits, state = onnx_backend.t2s_prefill(req, 8)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    for token in (5, 900, 5, 17, 0, 1023):  # several steps through the cache, repeats included
        tok = torch.tensor([token])
        torch.testing.assert_close(onnx_backend.t2s_step(state, tok), torch_backend.t2s_step(ref_state, tok),
                                   atol=1e-4, rtol=1e-4)
    assert state.length == req.phones.numel() + req.prompt.numel() + 6
    state.close()


@pytest.mark.parametrize("params", [
    SamplingParams.greedy(seed=0, max_new_tokens=30, min_new_tokens=30),
    SamplingParams(top_k=20, top_p=0.95, temperature=0.9, seed=11, max_new_tokens=30, min_new_tokens=30),
], ids=["greedy", "sampled"])
def test_token_sequences_identical(onnx_backend, tiny_bundle, params):
    req = _request(tiny_bundle.gpt_config, seed=2)
    expected = Decoder(tiny_bundle.gpt).generate([req], params)[0].tolist()
    assert list(onnx_backend.decoder().stream(req, params)) == expected
    assert [t.tolist() for t in onnx_backend.decoder().generate([req], params)] == [expected]


@pytest.mark.parametrize("speed", [1.0, 1.25, 0.8])
def test_chunk_audio_matches_the_model(onnx_backend, tiny_bundle, speed):
    cfg = tiny_bundle.sovits_config
    codes, phones, ge = _chunk_inputs(cfg)
    ref = tiny_bundle.sovits.decode(codes, phones, ge, 0.5, speed, torch.Generator().manual_seed(9))
    out = onnx_backend.decode_chunk(codes, phones, ge, 0.5, speed, torch.Generator().manual_seed(9))
    assert out.shape == ref.shape
    assert ref.abs().max() > 1e-2  # the activated model makes audible, input-dependent output
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_reference_path_matches(onnx_backend, torch_backend, tiny_bundle):
    gen = torch.Generator().manual_seed(1)
    spec = linear_spectrogram(torch.randn(1, 32000, generator=gen) * 0.1)
    torch.testing.assert_close(onnx_backend.reference_style(spec), tiny_bundle.sovits.style(spec),
                               atol=1e-5, rtol=1e-4)
    ssl = torch.randn(1, tiny_bundle.sovits_config.ssl_dim, 51, generator=gen)
    codes = onnx_backend.prompt_codes(ssl)
    assert codes.shape == (1, 1, 25)
    assert torch.equal(codes, tiny_bundle.sovits.extract_latent(ssl))
    assert torch.equal(torch_backend.prompt_codes(ssl), codes)


def test_fp16_export_within_tolerance(export_dir, tmp_path, onnx_backend, tiny_bundle):
    half = _variant(export_dir, tmp_path, "fp16")
    req = _request(tiny_bundle.gpt_config)
    ref, _ = onnx_backend.t2s_prefill(req, 2)
    out, _ = half.t2s_prefill(req, 2)
    assert _rel(out, ref) < 0.02
    codes, phones, ge = _chunk_inputs(tiny_bundle.sovits_config)
    a = onnx_backend.decode_chunk(codes, phones, ge, 0.0)
    b = half.decode_chunk(codes, phones, ge, 0.0)
    assert _rel(b, a) < 0.02


def test_int8_export_within_tolerance(export_dir, tmp_path, onnx_backend, tiny_bundle):
    q = _variant(export_dir, tmp_path, "int8")
    req = _request(tiny_bundle.gpt_config)
    ref, ref_state = onnx_backend.t2s_prefill(req, 4)
    out, state = q.t2s_prefill(req, 4)
    assert 0 < _rel(out, ref) < 0.05
    tok = torch.tensor([42])
    assert _rel(q.t2s_step(state, tok), onnx_backend.t2s_step(ref_state, tok)) < 0.05


def test_bad_inputs_are_refused(onnx_backend, tiny_bundle):
    req = _request(tiny_bundle.gpt_config)
    with pytest.raises(BackendInputError, match="prompt tokens"):
        onnx_backend.t2s_prefill(DecodeRequest(req.phones, req.bert, None), 4)
    codes, phones, ge = _chunk_inputs(tiny_bundle.sovits_config)
    with pytest.raises(BackendInputError, match="codes"):
        onnx_backend.decode_chunk(codes + 5000, phones, ge)
    with pytest.raises(BackendInputError, match="ge must be"):
        onnx_backend.decode_chunk(codes, phones, ge[:, :3])
    bad = DecodeRequest(req.phones + 5000, req.bert, req.prompt)
    with pytest.raises(DecodeRequestError, match="phone ids"):
        onnx_backend.decoder().stream(bad, SamplingParams())
    _, state = onnx_backend.t2s_prefill(req, 1)
    state.step(torch.tensor([1]))
    with pytest.raises(BackendInputError, match="KV buffer full"):
        state.step(torch.tensor([1]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_provider_with_io_binding_matches_cpu(export_dir, onnx_backend, tiny_bundle):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu not installed")
    gpu = OnnxBackend(export_dir, device="cuda")
    req = _request(tiny_bundle.gpt_config)
    params = SamplingParams.greedy(seed=0, max_new_tokens=20, min_new_tokens=20)
    assert list(gpu.decoder().stream(req, params)) == list(onnx_backend.decoder().stream(req, params))


def test_cpu_sovits_uses_the_narrow_session_while_the_gpt_holds_a_core(export_dir):
    """With fewer torch threads than its own (the pipeline's signal that the GPT worker runs),
    the CPU backend decodes SoVITS on its one-thread session: same graph, same audio."""
    from gpt_sovits.fast import cpu_threads
    from serving.backends.onnx_backend import OnnxBackend

    backend = OnnxBackend(export_dir, threads=2)
    calls: list[str] = []
    for name, sess in (("full", backend.sessions["sovits_decode"]), ("narrow", backend._narrow_sovits)):
        run = sess.run
        setattr(sess, "run", lambda *a, _run=run, _name=name, **k: calls.append(_name) or _run(*a, **k))
    codes = torch.randint(0, backend.sovits_config.codebook_size, (1, 1, 12))
    phones = torch.randint(1, 50, (1, 10))
    ge = torch.randn(1, backend.sovits_config.gin_channels, 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        full = backend.decode_chunk(codes, phones, ge, noise_scale=0.0)
        with cpu_threads(1):
            narrow = backend.decode_chunk(codes, phones, ge, noise_scale=0.0)
    finally:
        torch.set_num_threads(before)
    assert calls == ["full", "narrow"]
    assert torch.allclose(full, narrow, atol=1e-5)


@pytest.mark.parametrize("which", ["torch", "onnx"])
def test_vocoder_cuts_windows_from_vocode_from(torch_backend, onnx_backend, tiny_bundle, which):
    """Streaming asks the vocoder for the audio from `vocode_from` on: torch runs the generator
    from there, ONNX (whole-window graph) decodes everything and cuts; both give that audio."""
    backend = torch_backend if which == "torch" else onnx_backend
    assert backend.partial_vocode == (which == "torch")
    vocoder = backend.vocoder()
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, tiny_bundle.sovits_config.codebook_size, (1, 1, 20), generator=gen)
    phones = torch.randint(1, 100, (1, 9), generator=gen)
    ge = torch.randn(1, tiny_bundle.sovits_config.gin_channels, 1, generator=gen)
    spt = tiny_bundle.sovits_config.samples_per_token
    whole = vocoder.decode(codes, phones, ge, 0.0)[0, 0].numpy()
    cut = vocoder.decode(codes, phones, ge, 0.0, vocode_from=8)[0, 0].numpy()
    assert len(cut) == len(whole) - 8 * spt
    # Past the generator's receptive field (3 tokens) the cut audio is the whole decode's.
    np.testing.assert_allclose(cut[3 * spt:], whole[11 * spt:], atol=1e-4)
