"""KVCache: cached prefill + steps reproduce the uncached forward; layout, compaction, errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_sovits.config import GPTConfig
from gpt_sovits.kv_cache import KVCache, KVCacheError, attention_mask
from gpt_sovits.t2s import T2SModel


@pytest.fixture(scope="module")
def model(configs_dir: Path) -> T2SModel:
    torch.manual_seed(4321)
    return T2SModel(GPTConfig.load(configs_dir / "gpt_tiny.json")).eval()


def make_row(cfg: GPTConfig, n: int, p: int, t: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    phones = torch.randint(0, 700, (n,), generator=gen)
    bert = torch.randn(cfg.bert_dim, n, generator=gen)
    audio = torch.randint(0, 1024, (p + t,), generator=gen)  # prompt, then the tokens to feed
    return phones, bert, audio


def reference_logits(model: T2SModel, phones, bert, audio) -> torch.Tensor:
    """Logits at every audio slot (and the last text slot) from one uncached forward."""
    n = phones.numel()
    x = model.embed_text(phones[None], bert[None], torch.arange(n)[None])
    y = model.embed_audio(audio[None], torch.arange(audio.numel())[None])
    h = model(torch.cat([x, y], 1), prefix_end=torch.tensor([n]))
    return model.logits(h[0, n - 1 :])


def cached_logits(model: T2SModel, rows, p: list[int], steps: int, static: bool) -> list[torch.Tensor]:
    """Prefill `[phones | prompt]` per row (left-padded), then feed the remaining audio tokens."""
    cfg = model.cfg
    seqs, text_lens = [], []
    for (phones, bert, audio), pi in zip(rows, p):
        n = phones.numel()
        x = model.embed_text(phones[None], bert[None], torch.arange(n)[None])
        y = model.embed_audio(audio[None, :pi], torch.arange(pi)[None])
        seqs.append(torch.cat([x, y], 1)[0])
        text_lens.append(n)
    s = max(q.shape[0] for q in seqs)
    x = torch.zeros(len(rows), s, cfg.hidden_dim)
    for i, q in enumerate(seqs):
        x[i, s - q.shape[0] :] = q
    pad = torch.tensor([s - q.shape[0] for q in seqs])
    cache = KVCache.for_config(cfg, len(rows), s + steps, static=static)
    cache.set_layout(pad, pad + torch.tensor(text_lens))
    out = [model.logits(model(x, cache=cache)[:, -1])]
    for k in range(steps):
        tok = torch.stack([audio[pi + k] for (_, _, audio), pi in zip(rows, p)])
        emb = model.embed_audio(tok[:, None], cache.audio_positions(1))
        out.append(model.logits(model(emb, cache=cache)[:, -1]))
    return out


@pytest.mark.parametrize("static", [False, True])
def test_cached_decoding_matches_full_forward(model: T2SModel, static: bool) -> None:
    row = make_row(model.cfg, 9, 4, 6, seed=1)
    with torch.inference_mode():
        ref = reference_logits(model, *row)
        got = cached_logits(model, [row], [4], steps=6, static=static)
    for k, logits in enumerate(got):
        torch.testing.assert_close(logits[0], ref[4 + k], atol=1e-4, rtol=1e-4)


def test_cached_decoding_without_prompt(model: T2SModel) -> None:
    row = make_row(model.cfg, 7, 0, 5, seed=2)
    with torch.inference_mode():
        ref = reference_logits(model, *row)
        got = cached_logits(model, [row], [0], steps=5, static=False)
    for k, logits in enumerate(got):
        torch.testing.assert_close(logits[0], ref[k], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("static", [False, True])
def test_left_padded_batch_matches_single_rows(model: T2SModel, static: bool) -> None:
    rows = [make_row(model.cfg, 5, 7, 4, seed=3), make_row(model.cfg, 11, 2, 4, seed=4),
            make_row(model.cfg, 3, 0, 4, seed=5)]
    prompts = [7, 2, 0]
    with torch.inference_mode():
        batched = cached_logits(model, rows, prompts, steps=4, static=static)
        for i, (row, pi) in enumerate(zip(rows, prompts)):
            single = cached_logits(model, [row], [pi], steps=4, static=static)
            for b, s in zip(batched, single):
                torch.testing.assert_close(b[i], s[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("static", [False, True])
def test_keep_rows_drops_finished_rows(model: T2SModel, static: bool) -> None:
    rows = [make_row(model.cfg, 6, 3, 5, seed=6), make_row(model.cfg, 4, 5, 5, seed=7)]
    with torch.inference_mode():
        single = cached_logits(model, [rows[1]], [5], steps=4, static=static)
        cfg = model.cfg
        # Same prefill as cached_logits, then drop row 0 after two steps.
        x0 = torch.cat([model.embed_text(rows[0][0][None], rows[0][1][None], torch.arange(6)[None]),
                        model.embed_audio(rows[0][2][None, :3], torch.arange(3)[None])], 1)
        x1 = torch.cat([model.embed_text(rows[1][0][None], rows[1][1][None], torch.arange(4)[None]),
                        model.embed_audio(rows[1][2][None, :5], torch.arange(5)[None])], 1)
        x = torch.cat([x0, x1], 0)  # both 9 slots long: no padding needed
        cache = KVCache.for_config(cfg, 2, 20, static=static)
        cache.set_layout(torch.tensor([0, 0]), torch.tensor([6, 4]))
        model(x, cache=cache)
        for k in range(4):
            if k == 2:
                cache.keep_rows(torch.tensor([1]))
            ids = [1] if k >= 2 else [0, 1]
            tok = torch.stack([rows[i][2][[3, 5][i] + k] for i in ids])
            emb = model.embed_audio(tok[:, None], cache.audio_positions(1))
            logits = model.logits(model(emb, cache=cache)[:, -1])
            torch.testing.assert_close(logits[-1], single[k + 1][0], atol=1e-4, rtol=1e-4)
        assert cache.batch == 1


def test_buffers_are_preallocated_and_written_in_place(model: T2SModel) -> None:
    cfg = model.cfg
    cache = KVCache.for_config(cfg, 1, 12)
    ptr, shape = cache.key_heads.data_ptr(), cache.key_heads.shape
    cache.set_layout(torch.tensor([0]), torch.tensor([3]))
    with torch.inference_mode():
        model(torch.randn(1, 3, cfg.hidden_dim), cache=cache)
        for _ in range(4):
            model(torch.randn(1, 1, cfg.hidden_dim), cache=cache)
    head_dim = cfg.hidden_dim // cfg.n_head
    assert cache.key_heads.data_ptr() == ptr
    assert cache.key_heads.shape == shape == (cfg.n_layer, 1, cfg.n_head, 12, head_dim)
    assert cache.k.shape == (cfg.n_layer, 1, 12, cfg.hidden_dim)
    assert cache.length == 7
    assert cache.audio_positions(1).tolist() == [[4]]  # audio slot 7 - text end 3


def test_overflow_and_layout_errors(model: T2SModel) -> None:
    cfg = model.cfg
    cache = KVCache.for_config(cfg, 1, 4)
    cache.set_layout(torch.tensor([0]), torch.tensor([4]))
    with torch.inference_mode():
        model(torch.randn(1, 4, cfg.hidden_dim), cache=cache)
        with pytest.raises(KVCacheError, match="overflow"):
            model(torch.randn(1, 1, cfg.hidden_dim), cache=cache)
    with pytest.raises(KVCacheError, match="empty cache"):
        cache.set_layout(torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(KVCacheError, match="shape"):
        KVCache.for_config(cfg, 2, 4).set_layout(torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(KVCacheError, match="positive"):
        KVCache.for_config(cfg, 0, 4)
    with pytest.raises(KVCacheError, match="multiple of n_head"):
        KVCache(2, 1, 4, 10, n_head=3)


def test_reset_allows_reuse(model: T2SModel) -> None:
    cfg = model.cfg
    x = torch.randn(1, 5, cfg.hidden_dim)
    step = torch.randn(1, 1, cfg.hidden_dim)
    cache = KVCache.for_config(cfg, 1, 8, static=True)
    results = []
    with torch.inference_mode():
        for _ in range(2):
            cache.reset()
            cache.set_layout(torch.tensor([0]), torch.tensor([3]))
            model(x, cache=cache)
            results.append(model(step, cache=cache))
    torch.testing.assert_close(results[0], results[1])


def test_attention_mask_rule() -> None:
    # Row 0: slot 0 is padding, slots 1-2 text, slots 3-4 audio. Row 1: no padding, 1 text slot.
    slots = torch.arange(5)
    key_valid = torch.tensor([[False, True, True, True, True], [True] * 5])
    mask = attention_mask(slots, slots, torch.tensor([3, 1]), key_valid)
    assert mask.shape == (2, 1, 5, 5)
    assert mask[0, 0].int().tolist() == [
        [0, 1, 1, 0, 0],
        [0, 1, 1, 0, 0],  # text sees all text, no audio
        [0, 1, 1, 0, 0],
        [0, 1, 1, 1, 0],  # audio sees all text + causal audio
        [0, 1, 1, 1, 1],
    ]
    assert mask[1, 0].int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ]
