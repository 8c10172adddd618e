from __future__ import annotations

import dataclasses
import random

import torch

from training.dataset import S1Dataset, S2Dataset, collate_s1, collate_s2, make_batches, steps_per_epoch


def test_batches_are_deterministic_and_repeat_small_datasets() -> None:
    lengths = [5, 3, 9, 1, 7]
    a = make_batches(lengths, 2, seed=1, epoch=0, min_items=100)
    assert a == make_batches(lengths, 2, seed=1, epoch=0, min_items=100)
    assert a != make_batches(lengths, 2, seed=1, epoch=1, min_items=100)
    flat = sorted(i for b in a for i in b)
    assert flat == sorted(list(range(5)) * 20)  # max(2, 100 // 5) copies
    assert len(a) == steps_per_epoch(5, 2, 100)
    once = make_batches(lengths, 2, seed=1, epoch=0)
    assert sorted(i for b in once for i in b) == list(range(5)) and len(once) == steps_per_epoch(5, 2)


def test_s1_batch_layout(slt_dataset) -> None:
    ds, _ = slt_dataset
    data = S1Dataset(ds, bert_dim=32, max_semantic_tokens=1000)
    batch = collate_s1([data[0], data[1]], eos=1024)
    lens = batch["phone_lens"]
    assert batch["phones"].shape == (2, int(lens.max()))
    assert batch["bert"].shape == (2, 32, int(lens.max())) and not batch["bert"].any()
    n = int(batch["semantic_lens"].min())
    short = int(batch["semantic_lens"].argmin())
    assert (batch["semantic"][short, n:] == 1024).all()


def test_s2_items_have_aligned_views_and_are_cropped(slt_dataset) -> None:
    ds, _ = slt_dataset
    data = S2Dataset(ds, hop_length=640, max_frames=100, seed=0)
    item = data[0]
    frames = item["spec"].shape[-1]
    assert frames == min(100, data.items[0].n_spec)
    assert item["ssl"].shape[-1] == frames and item["wav"].numel() == frames * 640
    batch = collate_s2([data[0], data[1]])
    assert batch["wav"].shape == (2, 1, int(batch["spec_lens"].max()) * 640)
    assert torch.equal(batch["wav_lens"], batch["spec_lens"] * 640)
    assert data.items[0].n_spec > 100  # the crop was exercised



def test_s1_prompt_pairs_put_a_same_speaker_utterance_first(slt_dataset, monkeypatch) -> None:
    ds, _ = slt_dataset
    items = ds.require_items()
    assert len(items) >= 3
    # item 0 becomes the only utterance of another speaker: it is never anyone's prompt
    items[0] = dataclasses.replace(items[0], source="/elsewhere/other/clip.flac")
    monkeypatch.setattr(ds, "require_items", lambda: items)
    data = S1Dataset(ds, bert_dim=32, max_semantic_tokens=1000, prompt_pairs=1.0)
    assert torch.equal(data.sample(0, random.Random(0))["semantic"], data[0]["semantic"])
    target = data[1]
    n_sem, n_ph = target["semantic"].numel(), target["phones"].numel()
    others = [data[j]["semantic"] for j in range(2, len(data))]
    for seed in range(5):
        row = data.sample(1, random.Random(seed))
        assert torch.equal(row["semantic"][-n_sem:], target["semantic"])
        assert torch.equal(row["phones"][-n_ph:], target["phones"])
        assert row["bert"].shape == (32, row["phones"].numel())
        assert any(torch.equal(row["semantic"][:-n_sem], o) for o in others)  # not item 0, not itself
    assert torch.equal(data.sample(1, random.Random(7))["semantic"], data.sample(1, random.Random(7))["semantic"])
    # a pair longer than the GPT limit is not made
    tight = S1Dataset(ds, bert_dim=32, max_semantic_tokens=max(it.n_semantic for it in items), prompt_pairs=1.0)
    longest = max(range(len(tight)), key=lambda i: tight.items[i].n_semantic)
    assert torch.equal(tight.sample(longest, random.Random(0))["semantic"], tight[longest]["semantic"])
    off = S1Dataset(ds, bert_dim=32, max_semantic_tokens=1000, prompt_pairs=0.0)
    assert torch.equal(off.sample(1, random.Random(0))["semantic"], off[1]["semantic"])
