"""Phonetic (CTC) content encoder: labels, batching, a toy training run, save/load."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gpt_sovits.features import ssl_frame_count
from training.content_encoder import ContentEncoder, load_content_encoder, mel_statistics, tiny_config
from training.phone_encoder import (
    CTCHead,
    PhoneCTCConfig,
    PhoneEncoderError,
    PhoneItem,
    PhoneTable,
    PhoneTrainResult,
    collate,
    edit_distance,
    greedy_ctc,
    length_batches,
    load_phone_head,
    make_items,
    phone_class,
    phone_error_rate,
    read_list,
    save_phone_encoder,
    train_phone_encoder,
    transcript_phones,
)

SR = 16000


def test_phone_class_merges_stress_keeps_tones_drops_punctuation() -> None:
    assert phone_class("AH0") == phone_class("AH1") == "AH"
    assert phone_class("AH1", strip_stress=False) == "AH1"
    assert phone_class("ao3") == "ao3"  # Mandarin tone is lexical
    assert phone_class("zh") == "zh"
    for p in (",", ".", "?", "SP"):
        assert phone_class(p) is None


def test_table_labels_follow_the_frontend_phones() -> None:
    phones = transcript_phones([("Hello, world.", "en"), ("今天很好。", "zh")])
    table = PhoneTable.build(phones)
    en = table.encode(phones[0])
    sounds = [p for p in phones[0] if p not in {",", "."}]
    assert len(en) == len(sounds) and 0 not in en  # 0 is the CTC blank
    assert table.decode(en) == [phone_class(p) for p in sounds]
    assert table.n_labels == len(table.classes) + 1
    with pytest.raises(PhoneEncoderError, match="not in the table"):
        table.encode(["QQQ"])


def test_greedy_ctc_and_edit_distance() -> None:
    frames = [0, 3, 3, 0, 3, 2, 2, 0]
    logits = torch.nn.functional.one_hot(torch.tensor(frames), 5).float()
    assert greedy_ctc(logits) == [3, 3, 2]  # a blank separates a real repeat
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert edit_distance([], [4, 4]) == 2
    assert edit_distance("kitten", "sitting") == 3


def test_make_items_drops_audio_too_short_for_its_labels() -> None:
    table = PhoneTable(["a", "b"])
    long_wav, short_wav = np.zeros(SR, np.float32), np.zeros(800, np.float32)
    items = make_items([long_wav, short_wav], [["a", "b"], ["a", "b", "a"]], table)
    assert len(items) == 1 and items[0].labels == [1, 2]
    with pytest.raises(PhoneEncoderError, match="transcripts"):
        make_items([long_wav], [], table)


def test_batches_cover_every_item_once_within_budget() -> None:
    items = [PhoneItem(np.zeros(SR * s, np.float32), [1]) for s in (1, 1, 2, 3, 5, 8)]
    batches = length_batches(items, 6.0, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or max(len(items[i].wav) for i in b) * len(b) <= 6 * SR
    batch = collate([items[0], items[3]])
    assert batch["wav"].shape == (2, 3 * SR)
    assert batch["frames"].tolist() == [ssl_frame_count(SR), ssl_frame_count(3 * SR)]
    assert batch["labels"].tolist() == [1, 1] and batch["label_lens"].tolist() == [1, 1]


def test_read_list_resolves_paths_and_rejects_bad_rows(tmp_path: Path) -> None:
    good = tmp_path / "a.list"
    good.write_text("audio/x.flac|spk|en|Hello there.\n\n")
    assert read_list(good) == [(tmp_path / "audio/x.flac", "en", "Hello there.")]
    bad = tmp_path / "b.list"
    bad.write_text("audio/x.flac|en\n")
    with pytest.raises(PhoneEncoderError, match="wav\\|speaker\\|lang\\|text"):
        read_list(bad)


def _tone_items(n: int, seed: int = 0) -> tuple[list[PhoneItem], PhoneTable]:
    """Toy 'speech': each phone is a 0.16 s tone of its own pitch; 2-4 phones per utterance."""
    rng = np.random.default_rng(seed)
    table = PhoneTable(["lo", "mid", "hi"])
    freqs = {"lo": 300.0, "mid": 900.0, "hi": 2400.0}
    t = np.arange(int(0.16 * SR)) / SR
    wavs, phones = [], []
    for _ in range(n):
        seq = list(rng.choice(table.classes, size=rng.integers(2, 5)))
        wavs.append(np.concatenate([0.3 * np.sin(2 * np.pi * freqs[p] * t) for p in seq]).astype(np.float32))
        phones.append(seq)
    return make_items(wavs, phones, table), table


def _tiny_encoder(items: list[PhoneItem] | None = None) -> ContentEncoder:
    torch.manual_seed(0)
    model = ContentEncoder(tiny_config(32))
    if items:  # normalised log-mels, as a real (pretrained) encoder has
        mean, std = mel_statistics(model, [it.wav for it in items])
        model.mel_mean.copy_(mean)
        model.mel_std.copy_(std)
    return model


def test_ctc_loss_falls_on_toy_phones() -> None:
    items, table = _tone_items(24)
    cfg = PhoneCTCConfig(steps=100, batch_seconds=3.0, lr=1e-2, head_lr_scale=1.0, warmup_steps=5, mask_prob=0.0)
    result = train_phone_encoder(items, table, _tiny_encoder(items), cfg)
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-10:])
    assert last < 0.3 * first, (first, last)
    assert result.model.cfg.name == "gsv-content-v2"
    assert phone_error_rate(result.model, result.head, items[:8]) < 0.7  # all-blank output scores 1.0


def test_masked_prediction_term_is_reported_and_trained() -> None:
    items, table = _tone_items(8)
    for it in items:  # two "clusters": first and second half of every utterance
        n = ssl_frame_count(len(it.wav))
        it.clusters = (np.arange(n) >= n // 2).astype(np.int64)
    seen: list[dict[str, float]] = []
    cfg = PhoneCTCConfig(steps=3, batch_seconds=2.0, mask_prob=0.2, mpl_weight=0.5)
    train_phone_encoder(items, table, _tiny_encoder(), cfg, n_clusters=2, on_step=lambda s, v: seen.append(v))
    assert all("mpl" in v and np.isfinite(v["mpl"]) for v in seen)


def test_save_load_round_trip(tmp_path: Path) -> None:
    items, table = _tone_items(4)
    model = _tiny_encoder()
    head = CTCHead(32, table.n_labels)
    cfg = PhoneCTCConfig(name="gsv-content-test")
    model.cfg.name = cfg.name
    out = save_phone_encoder(PhoneTrainResult(model.eval(), head.eval(), table, []), tmp_path / "enc", cfg)
    loaded = load_content_encoder(out)
    head2, table2 = load_phone_head(out)
    assert loaded.cfg.name == "gsv-content-test"
    assert table2 == table
    wav = torch.from_numpy(items[0].wav)[None]
    with torch.no_grad():
        torch.testing.assert_close(loaded(wav), model(wav))
        torch.testing.assert_close(head2(loaded(wav)), head(model(wav)))
    with pytest.raises(PhoneEncoderError, match="train-phones"):
        load_phone_head(tmp_path)


def test_perturbed_items_keep_labels_and_stretch_cluster_labels() -> None:
    from training.augment import VoicePerturbation
    from training.phone_encoder import perturbed

    items, _ = _tone_items(4)
    for it in items:
        it.clusters = np.arange(ssl_frame_count(len(it.wav)), dtype=np.int64)
    rng = np.random.default_rng(0)
    for it in items:
        new = perturbed(it, VoicePerturbation(prob=1.0), rng)
        assert new.labels == it.labels and len(new.wav) != len(it.wav)
        assert len(new.clusters) == ssl_frame_count(len(new.wav))
        assert new.clusters[0] == 0 and new.clusters[-1] == it.clusters[-1]  # same span, new frame rate
        assert np.all(np.diff(new.clusters) >= 0)

