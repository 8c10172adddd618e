"""Fast inference path: same tokens as the reference engine, prepared models, INT8, graph step."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_sovits import fast as fast_module
from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.engine import DecodeRequest, Decoder
from gpt_sovits.fast import (
    FastDecoder, PrecisionError, TorchT2S, _Int8Attention, decode_tokens, grow_chunk, prepare_sovits,
    prepare_t2s, resolve_precision, resolve_vocoder_precision,
)
from gpt_sovits.sampling import SamplingParams
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.sovits.random_init import make_audible
from gpt_sovits.t2s import T2SModel
from vocoder.weight_norm import WeightNormMixin


@pytest.fixture(scope="module")
def cfg(configs_dir: Path) -> GPTConfig:
    return GPTConfig.load(configs_dir / "gpt_tiny.json")


@pytest.fixture(scope="module")
def model(cfg: GPTConfig) -> T2SModel:
    torch.manual_seed(5)
    return T2SModel(cfg).eval()


def _request(cfg: GPTConfig, n: int = 11, p: int = 7, seed: int = 0) -> DecodeRequest:
    gen = torch.Generator().manual_seed(seed)
    return DecodeRequest(torch.randint(0, 732, (n,), generator=gen),
                         torch.randn(cfg.bert_dim, n, generator=gen),
                         torch.randint(0, 1024, (p,), generator=gen))


SAMPLED = SamplingParams(top_k=15, top_p=0.9, temperature=0.8, seed=123, max_new_tokens=40, min_new_tokens=40)
GREEDY = SamplingParams.greedy(seed=0, max_new_tokens=25, min_new_tokens=25)


@pytest.mark.parametrize("params", [SAMPLED, GREEDY], ids=["sampled", "greedy"])
@pytest.mark.parametrize("sync_every", [1, 3])
def test_fast_stream_equals_reference_engine(model: T2SModel, cfg: GPTConfig, params: SamplingParams,
                                             sync_every: int) -> None:
    req = _request(cfg)
    expected = list(Decoder(model).stream(req, params))
    fast = FastDecoder(TorchT2S(model), sync_every=sync_every, config=model.cfg)
    assert list(fast.stream(req, params)) == expected
    assert len(expected) == params.max_new_tokens


def test_cpu_steps_run_single_threaded_and_restore_the_callers_threads(
    model: T2SModel, cfg: GPTConfig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    req = _request(cfg)
    expected = list(Decoder(model).stream(req, GREEDY))
    seen: list[int] = []
    real_step = T2SModel.forward

    def spy(self: T2SModel, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return real_step(self, x, *args, **kwargs)

    monkeypatch.setattr(T2SModel, "forward", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tokens = list(FastDecoder(TorchT2S(model)).stream(req, GREEDY))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert tokens == expected
    assert after == 2
    assert seen[0] == 2  # the prefill keeps the caller's threads
    assert set(seen[1:]) == {fast_module.CPU_STEP_THREADS}


def test_generate_matches_engine_per_request(model: T2SModel, cfg: GPTConfig) -> None:
    reqs = [_request(cfg, 9, 5, seed=1), _request(cfg, 14, 3, seed=2)]
    params = [SamplingParams(seed=7, max_new_tokens=12, min_new_tokens=12),
              SamplingParams(seed=8, max_new_tokens=20, min_new_tokens=20)]
    expected = Decoder(model).generate(reqs, params)
    got = FastDecoder(TorchT2S(model), sync_every=2).generate(reqs, params)
    assert [g.tolist() for g in got] == [e.tolist() for e in expected]
    # Per-request stops, as the engine's: a cancelled request ends early, the others do not.
    polls = []
    stopped = FastDecoder(TorchT2S(model)).generate(
        reqs, params, row_stops=[lambda: polls.append(1) or len(polls) > 4, None])
    assert stopped[0].tolist() == expected[0][:4].tolist()
    assert stopped[1].tolist() == expected[1].tolist()


class _EosModel(T2SModel):
    """Logits strongly favour EOS, so decoding stops as soon as EOS is allowed."""

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        out = super().logits(hidden).clone()
        out[..., self.cfg.eos] += 100.0
        return out


@pytest.mark.parametrize("sync_every", [1, 4])
def test_stops_at_eos_after_min_tokens(cfg: GPTConfig, sync_every: int) -> None:
    torch.manual_seed(1)
    eos_model = _EosModel(cfg).eval()
    params = SamplingParams(seed=3, max_new_tokens=50, min_new_tokens=6)
    tokens = list(decode_tokens(TorchT2S(eos_model), _request(cfg), params, sync_every=sync_every))
    assert tokens == list(Decoder(eos_model).stream(_request(cfg), params))
    assert len(tokens) == 6


def test_should_stop_ends_after_the_current_block(model: T2SModel, cfg: GPTConfig) -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2  # before prefill, after block 1, after block 2 -> stop

    tokens = list(decode_tokens(TorchT2S(model), _request(cfg), SAMPLED, sync_every=4, should_stop=stop))
    assert len(tokens) == 8


def test_static_graph_step_matches_eager_and_is_released(model: T2SModel, cfg: GPTConfig) -> None:
    """The CUDA-graph code path without capture: static cache, one shared runner, lock release."""
    backend = TorchT2S(model, force_graph_step=True, graph_max_len=200)
    assert backend.graph is not None and not backend.graph.capture
    expected = list(Decoder(model).stream(_request(cfg), SAMPLED))
    for _ in range(2):  # the runner is acquired, reset and released each time
        assert list(decode_tokens(backend, _request(cfg), SAMPLED, sync_every=2)) == expected
    # While one sequence holds the runner, a second falls back to an eager cache.
    held = decode_tokens(backend, _request(cfg), SAMPLED)
    first = next(held)
    assert list(decode_tokens(backend, _request(cfg), SAMPLED)) == expected
    assert [first, *held] == expected
    # Sequences longer than the static cache use the eager path too.
    long = SamplingParams(seed=1, max_new_tokens=250, min_new_tokens=250)
    assert len(list(decode_tokens(backend, _request(cfg), long))) == 250


def test_graph_step_pool_serves_concurrent_sequences(model: T2SModel, cfg: GPTConfig) -> None:
    """With a pool of two runners, two open sequences both step on static caches; a third steps
    eagerly; all give the reference tokens, and closing one frees its runner."""
    from gpt_sovits.fast import _EagerState, _GraphState

    backend = TorchT2S(model, force_graph_step=True, graph_max_len=200, graph_pool=2)
    assert len(backend.graphs) == 2 and backend.graph is backend.graphs[0]
    req = _request(cfg)
    states = [backend.t2s_prefill(req, 40)[1] for _ in range(3)]
    assert [type(s) for s in states] == [_GraphState, _GraphState, _EagerState]
    assert states[0].runner is not states[1].runner  # type: ignore[attr-defined]
    for state in states:
        state.close()
    expected = list(Decoder(model).stream(req, SAMPLED))
    streams = [decode_tokens(backend, req, SAMPLED) for _ in range(3)]
    heads = [next(s) for s in streams]  # all three open at once
    assert [[h, *rest] for h, rest in zip(heads, streams)] == [expected] * 3
    assert all(runner.acquire(10) for runner in backend.graphs)  # every runner was released


def test_int8_quantizes_every_block_linear_and_stays_close(model: T2SModel, cfg: GPTConfig) -> None:
    q = prepare_t2s(model, "int8", "cpu")
    for block in q.h.layers:
        assert isinstance(block.self_attn, _Int8Attention)
        for lin in (block.self_attn.qkv, block.self_attn.out_proj, block.linear2):
            assert type(lin).__module__.startswith("torch.ao.nn.quantized.dynamic")
        # linear1 carries the FFN's ReLU as one fused kernel; the block's own ReLU is gone.
        assert type(block.linear1).__module__.startswith("torch.ao.nn.intrinsic.quantized.dynamic")
        assert isinstance(block.activation, torch.nn.Identity)
        x = torch.randn(3, cfg.hidden_dim)
        assert float(block.linear1(x).min()) >= 0.0
    assert isinstance(model.h.layers[0].activation, torch.nn.ReLU)
    assert isinstance(model.h.layers[0].self_attn.in_proj_weight, torch.nn.Parameter)  # original untouched
    req = _request(cfg)
    ref_logits, _ = TorchT2S(model).t2s_prefill(req, 4)
    q_logits, _ = TorchT2S(q).t2s_prefill(req, 4)
    # Stated tolerance: INT8 weights + per-call activation scales keep prefill logits within 5%
    # relative L2 of FP32 on the tiny model.
    rel = float((q_logits - ref_logits).norm() / ref_logits.norm())
    assert 0 < rel < 0.05


def test_bf16_on_cpu_decodes(model: T2SModel, cfg: GPTConfig) -> None:
    b16 = prepare_t2s(model, "bf16", "cpu")
    assert b16.ar_predict_layer.weight.dtype == torch.bfloat16
    tokens = list(decode_tokens(TorchT2S(b16), _request(cfg), GREEDY))
    assert len(tokens) == GREEDY.max_new_tokens and all(0 <= t < cfg.eos for t in tokens)


def test_prepare_sovits_folds_weight_norm_and_keeps_output(configs_dir: Path) -> None:
    torch.manual_seed(0)
    sovits = SynthesizerTrn(SoVITSConfig.load(configs_dir / "sovits_tiny.json"), with_posterior=False).eval()
    with torch.no_grad():
        for module in sovits.modules():
            if isinstance(module, WeightNormMixin):
                module.weight_g.mul_(50.0)  # make the decoder output non-trivial
    fast = prepare_sovits(sovits, "fp32", "cpu")
    assert not any(name.endswith("weight_g") for name, _ in fast.named_parameters())
    assert any(name.endswith("weight_g") for name, _ in sovits.named_parameters())
    codes = torch.randint(0, 1024, (1, 1, 10))
    phones = torch.randint(0, 732, (1, 8))
    ge = torch.randn(1, sovits.cfg.gin_channels, 1)
    ref = sovits.decode(codes, phones, ge, noise_scale=0.0)
    out = fast.decode(codes, phones, ge, noise_scale=0.0)
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_prepare_sovits_bf16_vocoder_only(configs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A BF16 generator behind an FP32 text encoder and flow: audio within 5% of FP32."""
    torch.manual_seed(0)
    sovits = make_audible(SynthesizerTrn(SoVITSConfig.load(configs_dir / "sovits_tiny.json"),
                                         with_posterior=False).eval())
    codes, phones = torch.randint(0, 1024, (1, 1, 10)), torch.randint(0, 732, (1, 8))
    ge = torch.randn(1, sovits.cfg.gin_channels, 1)
    ref = prepare_sovits(sovits, "fp32", "cpu").decode(codes, phones, ge, noise_scale=0.0)
    fast = prepare_sovits(sovits, "fp32", "cpu", vocoder_precision="bf16")
    assert fast.dec.conv_pre.weight.dtype == torch.bfloat16
    assert fast.flow.flows[0].pre.weight.dtype == torch.float32  # type: ignore[union-attr]
    out = fast.decode(codes, phones, ge, noise_scale=0.0).float()
    rel = float((out - ref).norm() / ref.norm())
    assert out.shape == ref.shape and 0 < rel < 0.05
    # "auto" picks BF16 only where the CPU has native BF16 dot products.
    monkeypatch.setattr(fast_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_vocoder_precision("auto", "int8", "cpu") == "bf16"
    assert resolve_vocoder_precision("auto", "bf16", "cpu") == "bf16"
    monkeypatch.setattr(fast_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_vocoder_precision("auto", "int8", "cpu") == "fp32"
    assert resolve_vocoder_precision("auto", "fp16", "cuda") == "fp16"
    with pytest.raises(PrecisionError, match="INT8"):
        resolve_vocoder_precision("int8", "fp32", "cpu")


def test_precision_rules() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("int8", "cpu") == "int8"
    with pytest.raises(PrecisionError, match="int8"):
        resolve_precision("int8", "cuda")
    with pytest.raises(PrecisionError, match="fp16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(PrecisionError, match="one of"):
        resolve_precision("fp8", "cpu")


def test_chunk_schedule_grows_to_the_cap() -> None:
    sizes, size = [], 4
    for _ in range(5):
        sizes.append(size)
        size = grow_chunk(size, 24)
    assert sizes == [4, 8, 16, 24, 24]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_step_matches_eager_on_gpu(model: T2SModel, cfg: GPTConfig) -> None:
    fast = prepare_t2s(model, "fp32", "cuda")
    graph = TorchT2S(fast, cuda_graph=True, graph_max_len=256)
    eager = TorchT2S(fast, cuda_graph=False)
    params = SamplingParams.greedy(seed=0, max_new_tokens=30, min_new_tokens=30)
    req = _request(cfg)
    expected = list(decode_tokens(eager, req, params, sync_every=4))
    assert graph.graph is not None
    assert list(decode_tokens(graph, req, params, sync_every=4)) == expected
    assert graph.graph.graph is not None  # captured


def test_cpu_threads_limits_only_inside_and_restores():
    from gpt_sovits.fast import CPU_STEP_THREADS, cpu_threads, vocoder_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with cpu_threads(0):  # 0: unchanged
            assert torch.get_num_threads() == 2
        assert vocoder_threads(gpt_running=False) == 2
        assert vocoder_threads(gpt_running=True) == max(1, 2 - CPU_STEP_THREADS)
    finally:
        torch.set_num_threads(before)


def test_eager_caches_are_reused_and_give_the_same_tokens(model: T2SModel, cfg: GPTConfig) -> None:
    """A finished sequence's KV cache serves the next one (already resident), with no leftovers:
    the second decode equals a decode on fresh caches."""
    fresh = [list(decode_tokens(TorchT2S(model, spare_caches=0), _request(cfg), GREEDY)) for _ in range(2)]
    backend = TorchT2S(model, spare_caches=1)
    first = list(decode_tokens(backend, _request(cfg), GREEDY))
    (kept,) = backend.spare._free
    ptr = kept.key_heads.data_ptr()
    second = list(decode_tokens(backend, _request(cfg), GREEDY))
    assert first == second == fresh[0] == fresh[1]
    assert [c.key_heads.data_ptr() for c in backend.spare._free] == [ptr]  # the same buffers again
    assert kept.max_len % backend.spare.bucket == 0
    # A request larger than every spare gets a new cache; only `keep` caches stay.
    _, state = backend.t2s_prefill(_request(cfg), kept.max_len + 1)
    assert backend.spare._free == [kept] and state.cache.max_len > kept.max_len
    state.close()
    assert backend.spare._free == [state.cache]  # the larger one: it fits every later request


def test_set_threads_sticks_when_another_thread_sets_a_count_later():
    """torch gives a thread the count any thread set last, at the thread's first count query or
    parallel op; `set_threads` must not be undone that way (window jobs beside the GPT would
    otherwise run on every core)."""
    import threading
    import time

    from gpt_sovits.fast import set_threads

    before = torch.get_num_threads()
    seen: dict[str, int] = {}

    def job(name: str, setter) -> None:
        setter(1)
        time.sleep(0.2)  # the main thread sets 2 meanwhile
        seen[name] = torch.get_num_threads()

    try:
        # (With plain torch.set_num_threads the job reads 2 here on torch 2.13.)
        worker = threading.Thread(target=job, args=("set_threads", set_threads))
        worker.start()
        time.sleep(0.1)
        torch.set_num_threads(2)
        worker.join()
    finally:
        torch.set_num_threads(before)
    assert seen["set_threads"] == 1
