"""ChunkedDecoder vs one-shot decode: exact lengths, bounded error, bounded work per chunk.

See the error table in gpt_sovits/sovits/streaming.py. Two models are used, both with noise 0:
* "local": n_layers=1, so the text encoder has no frame self-attention and every remaining
  dependency is a convolution; with enough context and lookahead the stream must equal the
  one-shot decode (this catches any trimming / alignment / cross-fade bug);
* the tiny config as is, whose random self-attention spreads over all frames (worst case): the
  stream can only approximate the one-shot decode; we assert the bound measured for it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gpt_sovits.sovits.errors import SoVITSInputError
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.sovits.streaming import ChunkedDecoder, relative_l2, stream_decode

from .conftest import activate, load_config

TOKENS = 60


def _model(**overrides: object) -> SynthesizerTrn:
    torch.manual_seed(0)
    return activate(SynthesizerTrn(load_config("tiny", **overrides), with_posterior=False).eval())


def _case(model: SynthesizerTrn, tokens: int = TOKENS) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 1024, (tokens,), generator=gen).tolist()
    phones = torch.randint(0, 732, (1, tokens // 3), generator=gen)
    ge = model.style([torch.rand(1, 1025, 100, generator=gen)])
    return codes, phones, ge


def _oneshot(model: SynthesizerTrn, codes: list[int], phones: torch.Tensor, ge: torch.Tensor,
             speed: float = 1.0) -> np.ndarray:
    audio = model.decode(torch.tensor(codes).view(1, 1, -1), phones, ge, noise_scale=0.0, speed=speed)
    return audio[0, 0].numpy()


def test_local_model_stream_equals_oneshot() -> None:
    model = _model(n_layers=1)
    codes, phones, ge = _case(model)
    ref = _oneshot(model, codes, phones, ge)
    other = _oneshot(model, _case(model, TOKENS + 1)[0][1:], phones, ge)
    assert relative_l2(other, ref) > 0.3  # the output really depends on the tokens
    dec = ChunkedDecoder(model, ge, phones, noise_scale=0.0, left_context=8, lookahead=6)
    out = stream_decode(dec, codes, [5, 12])
    assert out.shape == ref.shape
    assert relative_l2(out, ref) < 1e-3
    # Without lookahead the ends of chunks lack right context (flow/decoder convolutions).
    blind = stream_decode(ChunkedDecoder(model, ge, phones, noise_scale=0.0, left_context=8,
                                         lookahead=0), codes, [5, 12])
    assert relative_l2(blind, ref) > 10 * relative_l2(out, ref)


def test_global_attention_model_within_stated_bound() -> None:
    model = _model()
    codes, phones, ge = _case(model)
    ref = _oneshot(model, codes, phones, ge)
    naive = stream_decode(ChunkedDecoder(model, ge, phones, noise_scale=0.0, left_context=0,
                                         lookahead=0), codes, [8, 16])
    default = stream_decode(ChunkedDecoder(model, ge, phones, noise_scale=0.0), codes, [8, 16])
    assert default.shape == ref.shape
    # Measured 0.17-0.24 on this worst case (see the module docstring); context must help.
    assert relative_l2(default, ref) < 0.3
    assert relative_l2(default, ref) < 0.8 * relative_l2(naive, ref)


@pytest.mark.parametrize("chunks,speed", [([1], 1.0), ([3, 7], 1.0), ([100], 1.0), ([4, 9], 1.25),
                                          ([5], 0.9)])
def test_stream_length_equals_oneshot(chunks: list[int], speed: float) -> None:
    model = _model()
    codes, phones, ge = _case(model, 23)
    ref = _oneshot(model, codes, phones, ge, speed)
    dec = ChunkedDecoder(model, ge, phones, noise_scale=0.0, speed=speed, lookahead=2)
    out = stream_decode(dec, codes, chunks)
    assert out.shape == ref.shape
    assert out.dtype == np.float32


def _record_windows(monkeypatch: pytest.MonkeyPatch, model: SynthesizerTrn, *,
                    vocode_from: bool = False) -> list:
    """Make `model.decode` append each window's token count (with `vocode_from`: the pair
    (token count, vocode_from)) to the returned list."""
    windows: list = []
    original = model.decode

    def spy(codes_: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        n = codes_.shape[-1]
        windows.append((n, kwargs.get("vocode_from", 0)) if vocode_from else n)
        return original(codes_, *args, **kwargs)

    monkeypatch.setattr(model, "decode", spy)
    return windows


def test_each_push_decodes_only_a_bounded_window(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    codes, phones, ge = _case(model)
    windows = _record_windows(monkeypatch, model)
    dec = ChunkedDecoder(model, ge, phones, noise_scale=0.0, left_context=10, lookahead=3, window_bucket=1)
    stream_decode(dec, codes, [6])
    assert max(windows) <= 10 + 6 + 3
    assert len(windows) == TOKENS // 6 + 1  # one per push, one in flush for the lookahead


def test_windows_after_the_first_are_widened_to_the_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(n_layers=1)  # local model: more left context must not change the audio
    codes, phones, ge = _case(model, tokens=61)
    windows = _record_windows(monkeypatch, model)
    plain = stream_decode(ChunkedDecoder(model, ge, phones, noise_scale=0.0, window_bucket=1,
                                         vocoder_context=None), codes, [5, 7])
    plain_windows, windows[:] = list(windows), []
    bucketed = stream_decode(ChunkedDecoder(model, ge, phones, noise_scale=0.0, window_bucket=8,
                                            vocoder_context=None), codes, [5, 7])
    # Windows that start at token 0 cannot widen; every other one becomes a multiple of 8, at
    # most 7 tokens wider than without buckets.
    assert windows[0] == plain_windows[0] == 5
    assert len(windows) == len(plain_windows)
    assert all(w == p or (w % 8 == 0 and 0 < w - p < 8) for w, p in zip(windows, plain_windows))
    assert sum(w != p for w, p in zip(windows, plain_windows)) >= 3
    assert len(bucketed) == len(plain) == len(_oneshot(model, codes, phones, ge))
    assert relative_l2(bucketed, plain) < 1e-3


def test_stream_window_lengths_lists_what_streams_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpt_sovits.fast import grow_chunk, stream_window_lengths, warm_up_windows

    model = _model()
    warm = set(stream_window_lengths(model.cfg, first_chunk=4, chunk_cap=16))
    seen = _record_windows(monkeypatch, model, vocode_from=True)
    for total in (9, 37, 61, 90):  # streams of several lengths in the same schedule
        codes, phones, ge = _case(model, tokens=total)
        dec, size, pushed = ChunkedDecoder(model, ge, phones, noise_scale=0.0), 4, 0
        while pushed + size <= total:
            dec.push(codes[pushed:pushed + size])
            pushed, size = pushed + size, grow_chunk(size, 16)
        dec.flush(codes[pushed:])
    assert set(seen) <= warm
    # Warm-up needs each text-encoder/flow length and each generator length once.
    covering = warm_up_windows(warm)
    assert {n for n, _ in covering} == {n for n, _ in warm}
    assert {n - k for n, k in covering} == {n - k for n, k in warm}
    assert len(covering) <= len({n for n, _ in warm}) + 3  # about one decode per length


def test_decode_from_a_later_token_is_the_cut_of_the_whole_decode() -> None:
    model = _model()
    codes, phones, ge = _case(model, 30)
    whole = _oneshot(model, codes, phones, ge)
    spt = model.cfg.samples_per_token
    tensor = torch.tensor(codes).view(1, 1, -1)
    for start in (1, 8, 26):
        part = model.decode(tensor, phones, ge, noise_scale=0.0, vocode_from=start)[0, 0].numpy()
        assert len(part) == len(whole) - start * spt
        # The generator's receptive field ends within 3 tokens (tiny and v2 alike): beyond it
        # the generator cannot tell where its input was cut.
        assert relative_l2(part[3 * spt:], whole[(start + 3) * spt:]) < 1e-4
    cut_short = model.decode(tensor, phones, ge, noise_scale=0.0, vocode_from=20)[0, 0].numpy()
    assert relative_l2(cut_short[:spt], whole[20 * spt:21 * spt]) > 1e-2  # the cut shows right at it
    for bad, speed in ((30, 1.0), (-1, 1.0), (4, 1.25)):
        with pytest.raises(SoVITSInputError, match="vocode_from"):
            model.decode(tensor, phones, ge, noise_scale=0.0, speed=speed, vocode_from=bad)


def test_vocoder_context_decodes_less_and_sounds_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(n_layers=1)
    codes, phones, ge = _case(model, tokens=90)
    ref = _oneshot(model, codes, phones, ge)
    seen: list[int] = []
    original = model.dec.forward
    monkeypatch.setattr(model.dec, "forward", lambda z, *a, **k: seen.append(z.size(-1)) or original(z, *a, **k))
    full = stream_decode(ChunkedDecoder(model, ge, phones, noise_scale=0.0, vocoder_context=None), codes, [4, 8, 16, 32])
    full_frames, seen[:] = sum(seen), []
    windows = _record_windows(monkeypatch, model, vocode_from=True)
    short = stream_decode(ChunkedDecoder(model, ge, phones, noise_scale=0.0, vocoder_context=4), codes, [4, 8, 16, 32])
    assert short.shape == full.shape == ref.shape
    assert relative_l2(short, full) < 1e-4
    assert relative_l2(short, ref) < 1e-3  # local model, default context and lookahead
    once = 2 * len(codes)  # latent frames of the one-shot decode
    assert sum(seen) - once < 0.6 * (full_frames - once)  # much less context decoded again
    starts = [(n, k) for n, k in windows if k > 0]
    assert len(starts) >= 3
    assert all((n - k) % 8 == 0 for n, k in starts)  # generator lengths follow the buckets too
    with pytest.raises(SoVITSInputError, match="vocoder_context"):
        ChunkedDecoder(model, ge, phones, vocoder_context=0)
    # At other speeds tokens do not map to whole frames: the generator takes the whole window.
    slow = ChunkedDecoder(model, ge, phones, noise_scale=0.0, speed=0.8, vocoder_context=4)
    assert slow.vocoder_context is None


def test_push_and_flush_protocol() -> None:
    model = _model()
    codes, phones, ge = _case(model, 10)
    dec = ChunkedDecoder(model, ge, phones, noise_scale=0.5, lookahead=4,
                         generator=torch.Generator().manual_seed(0))
    assert dec.push(codes[:3]).size == 0  # all held back as lookahead
    first = dec.push(codes[3:])
    assert first.size > 0 and first.size < 6 * 1280
    rest = dec.flush()
    assert first.size + rest.size == 10 * 1280
    assert dec.flush().size == 0
    with pytest.raises(SoVITSInputError, match="after flush"):
        dec.push([1])
    assert ChunkedDecoder(model, ge, phones).flush().size == 0
    with pytest.raises(SoVITSInputError):
        ChunkedDecoder(model, ge, phones, left_context=-1)


def test_flush_with_the_last_tokens_is_one_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    codes, phones, ge = _case(model, 30)
    ref = _oneshot(model, codes, phones, ge)
    calls: list[int] = []
    original = model.decode

    def spy(codes_: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append(codes_.shape[-1])
        return original(codes_, *args, **kwargs)

    monkeypatch.setattr(model, "decode", spy)
    two = ChunkedDecoder(model, ge, phones, noise_scale=0.0)
    a = np.concatenate([two.push(codes[:20]), two.push(codes[20:]), two.flush()])
    n_two = len(calls)
    one = ChunkedDecoder(model, ge, phones, noise_scale=0.0)
    b = np.concatenate([one.push(codes[:20]), one.flush(codes[20:])])
    assert len(calls) - n_two == n_two - 1  # the separate push's decode is saved
    assert a.shape == b.shape == ref.shape
    assert relative_l2(b, ref) < 0.3  # the module's stated bound for this random-attention model


def test_phones_are_encoded_once_per_utterance(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    codes, phones, ge = _case(model)
    expected = stream_decode(ChunkedDecoder(model, ge, phones, noise_scale=0.0), codes, [5, 9])
    encoded: list[int] = []
    handed: list[bool] = []
    original_encode, original_decode = model.encode_text, model.decode
    monkeypatch.setattr(model, "encode_text", lambda text: encoded.append(1) or original_encode(text))
    monkeypatch.setattr(model, "decode", lambda *a, **k: handed.append("text_encoded" in k) or original_decode(*a, **k))
    dec = ChunkedDecoder(model, ge, phones, noise_scale=0.0)
    dec.prepare()
    dec.prepare()  # idempotent
    audio = stream_decode(dec, codes, [5, 9])
    assert encoded == [1] and len(handed) > 3 and all(handed)
    np.testing.assert_array_equal(audio, expected)  # the cached branch is the same computation
    # A model without `encode_text` (e.g. an exported graph) still streams.
    monkeypatch.delattr(model, "encode_text")
    monkeypatch.setattr(type(model), "encode_text", None)
    plain = stream_decode(ChunkedDecoder(model, ge, phones, noise_scale=0.0), codes, [5, 9])
    np.testing.assert_array_equal(plain, expected)
