"""Decoder engine: batching, stop rules, greedy reference, streaming and cancellation."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_sovits.config import GPTConfig
from gpt_sovits.engine import DecodeRequest, DecodeRequestError, Decoder, SamplingParams
from gpt_sovits.t2s import T2SModel


class BiasedT2S(T2SModel):
    """Test model whose logits get a fixed bias, to force or forbid EOS."""

    def __init__(self, cfg: GPTConfig, eos_bias: float) -> None:
        super().__init__(cfg)
        bias = torch.zeros(cfg.vocab_size)
        bias[cfg.eos] = eos_bias
        self.register_buffer("bias", bias)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return super().logits(hidden) + self.bias


@pytest.fixture(scope="module")
def cfg(configs_dir: Path) -> GPTConfig:
    return GPTConfig.load(configs_dir / "gpt_tiny.json")


@pytest.fixture(scope="module")
def decoder(cfg: GPTConfig) -> Decoder:
    torch.manual_seed(77)
    return Decoder(T2SModel(cfg))


def request(cfg: GPTConfig, n: int, p: int | None, seed: int) -> DecodeRequest:
    gen = torch.Generator().manual_seed(seed)
    prompt = None if p is None else torch.randint(0, 1024, (p,), generator=gen)
    return DecodeRequest(
        torch.randint(0, 732, (n,), generator=gen), torch.randn(cfg.bert_dim, n, generator=gen), prompt
    )


def reference_greedy(model: T2SModel, req: DecodeRequest, params: SamplingParams) -> list[int]:
    """Uncached greedy decoding: re-run the whole sequence each step (official stop rules)."""
    cfg, out = model.cfg, []
    prompt = req.prompt if req.prompt is not None else torch.zeros(0, dtype=torch.long)
    n = req.phones.numel()
    x = model.embed_text(req.phones[None], req.bert[None], torch.arange(n)[None])
    while len(out) < params.max_new_tokens:
        audio = torch.cat([prompt, torch.tensor(out, dtype=torch.long)])
        y = model.embed_audio(audio[None], torch.arange(audio.numel())[None])
        h = model(torch.cat([x, y], 1), prefix_end=torch.tensor([n]))
        logits = model.logits(h[0, -1])
        if len(out) < params.min_new_tokens:
            logits[cfg.eos] = float("-inf")
        rp = params.repetition_penalty
        for tok in set(audio.tolist()):
            logits[tok] = logits[tok] * rp if logits[tok] < 0 else logits[tok] / rp
        best = int(logits.argmax())
        if best == cfg.eos:
            break
        out.append(best)
    return out


def test_generate_outputs_respect_limits(decoder: Decoder, cfg: GPTConfig) -> None:
    params = SamplingParams(seed=1, max_new_tokens=25, min_new_tokens=11)
    outs = decoder.generate([request(cfg, 8, 5, 0), request(cfg, 3, None, 1)], params)
    for out in outs:
        assert out.dtype == torch.long and 11 <= out.numel() <= 25
        assert out.max().item() < cfg.eos  # EOS is never emitted


@pytest.mark.parametrize("static", [False, True])
def test_batched_equals_unbatched(decoder: Decoder, cfg: GPTConfig, static: bool) -> None:
    reqs = [request(cfg, 12, 4, 2), request(cfg, 5, None, 3), request(cfg, 7, 9, 4)]
    params = SamplingParams(seed=123, top_k=20, top_p=0.9, temperature=1.1, max_new_tokens=30)
    engine = Decoder(decoder.model, static_cache=static)
    batched = engine.generate(reqs, params)
    for req, out in zip(reqs, batched):
        assert out.tolist() == engine.generate([req], params)[0].tolist()


def test_per_row_params_and_finished_rows_drop_out(decoder: Decoder, cfg: GPTConfig) -> None:
    reqs = [request(cfg, 6, 3, 5), request(cfg, 9, 2, 6)]
    params = [SamplingParams(seed=1, max_new_tokens=3, min_new_tokens=3),
              SamplingParams(seed=2, max_new_tokens=20, min_new_tokens=20)]
    short, long = decoder.generate(reqs, params)
    assert short.numel() == 3 and long.numel() == 20
    assert long.tolist() == decoder.generate([reqs[1]], params[1])[0].tolist()


def test_greedy_matches_uncached_reference_and_ignores_seed(decoder: Decoder, cfg: GPTConfig) -> None:
    req = request(cfg, 10, 6, 7)
    outs = [decoder.generate([req], SamplingParams.greedy(seed=s, max_new_tokens=15))[0] for s in (0, 9)]
    assert outs[0].tolist() == outs[1].tolist()
    with torch.no_grad():
        expected = reference_greedy(decoder.model, req, SamplingParams.greedy(max_new_tokens=15))
    assert outs[0].tolist() == expected


def test_stops_at_min_tokens_when_eos_dominates(cfg: GPTConfig) -> None:
    engine = Decoder(BiasedT2S(cfg, eos_bias=50.0))
    req = request(cfg, 6, 4, 8)
    assert engine.generate([req], SamplingParams(seed=0))[0].numel() == 11
    assert engine.generate([req], SamplingParams(seed=0, min_new_tokens=0))[0].numel() == 0
    # High temperature makes a non-EOS sample likely, but the argmax rule still stops decoding.
    hot = SamplingParams(seed=0, temperature=100.0, min_new_tokens=4)
    assert engine.generate([req], hot)[0].numel() == 4


def test_caps_at_max_new_tokens_when_eos_never_wins(cfg: GPTConfig) -> None:
    engine = Decoder(BiasedT2S(cfg, eos_bias=-50.0))
    out = engine.generate([request(cfg, 6, 4, 9)], SamplingParams(seed=0, max_new_tokens=17))[0]
    assert out.numel() == 17


def test_stream_matches_generate_and_cancels(decoder: Decoder, cfg: GPTConfig) -> None:
    req = request(cfg, 8, 5, 10)
    params = SamplingParams(seed=42, max_new_tokens=20)
    assert list(decoder.stream(req, params)) == decoder.generate([req], params)[0].tolist()

    received: list[int] = []
    stream = decoder.stream(req, params, should_stop=lambda: len(received) >= 5)
    received.extend(stream)
    assert len(received) == 5
    assert list(decoder.stream(req, params, should_stop=lambda: True)) == []


def test_generate_can_be_cancelled(decoder: Decoder, cfg: GPTConfig) -> None:
    reqs = [request(cfg, 8, 5, 13), request(cfg, 4, None, 14)]
    params = SamplingParams(seed=5, max_new_tokens=40)
    polls = 0

    def stop_after_six_polls() -> bool:
        nonlocal polls
        polls += 1
        return polls > 6

    partial = decoder.generate(reqs, params, should_stop=stop_after_six_polls)
    full = decoder.generate(reqs, params)
    for p, f in zip(partial, full):
        assert p.numel() == 6 and p.tolist() == f[:6].tolist()


def test_a_stopped_row_leaves_the_batch(decoder: Decoder, cfg: GPTConfig) -> None:
    """A cancelled request's row is dropped before the next step: it keeps its tokens so far,
    the batch shrinks (no compute spent on it) and the other rows are unchanged."""
    reqs = [request(cfg, 8, 5, 21), request(cfg, 6, 3, 22), request(cfg, 5, None, 23)]
    params = SamplingParams(seed=9, min_new_tokens=12, max_new_tokens=12)
    full = decoder.generate(reqs, params)
    polls = 0

    def stop_middle() -> bool:  # polled once before every step while its row is in the batch
        nonlocal polls
        polls += 1
        return polls > 3

    batch_sizes: list[int] = []
    hook = decoder.model.register_forward_pre_hook(lambda _m, args: batch_sizes.append(args[0].shape[0]))
    try:
        out = decoder.generate(reqs, params, row_stops=[None, stop_middle, None])
    finally:
        hook.remove()
    assert out[1].tolist() == full[1][:3].tolist() and polls == 4
    assert out[0].tolist() == full[0].tolist() and out[2].tolist() == full[2].tolist()
    assert batch_sizes[:3] == [3, 3, 3] and set(batch_sizes[3:]) == {2}
    # Every row stopped before the first step: nothing decoded, nothing left.
    assert [t.numel() for t in decoder.generate(reqs[:2], params, row_stops=[lambda: True] * 2)] == [0, 0]
    with pytest.raises(ValueError, match="row_stops"):
        decoder.generate(reqs, params, row_stops=[None])


@pytest.mark.parametrize(
    "mutate",
    ["bert_shape", "empty_phones", "eos_in_prompt", "phone_range", "too_long", "float_phones"],
)
def test_bad_requests_raise(decoder: Decoder, cfg: GPTConfig, mutate: str) -> None:
    req = request(cfg, 6, 4, 11)
    params = SamplingParams()
    if mutate == "bert_shape":
        req = DecodeRequest(req.phones, req.bert[:, :-1], req.prompt)
    elif mutate == "empty_phones":
        req = DecodeRequest(req.phones[:0], req.bert[:, :0], req.prompt)
    elif mutate == "eos_in_prompt":
        req = DecodeRequest(req.phones, req.bert, torch.tensor([1, cfg.eos]))
    elif mutate == "phone_range":
        req = DecodeRequest(req.phones + cfg.phoneme_vocab_size, req.bert, req.prompt)
    elif mutate == "too_long":
        params = SamplingParams(max_new_tokens=cfg.max_positions)
    else:
        req = DecodeRequest(req.phones.float(), req.bert, req.prompt)
    with pytest.raises(DecodeRequestError):
        decoder.generate([req], params)
    with pytest.raises(DecodeRequestError):
        decoder.stream(req, params)  # validated eagerly, before the first next()


def test_params_list_must_match_requests(decoder: Decoder, cfg: GPTConfig) -> None:
    with pytest.raises(DecodeRequestError):
        decoder.generate([request(cfg, 4, 2, 12)], [SamplingParams(), SamplingParams()])
    with pytest.raises(DecodeRequestError):
        decoder.generate([], SamplingParams())
