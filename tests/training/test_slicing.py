from __future__ import annotations

import numpy as np
import pytest

from training.slicing import (
    Region,
    SlicingError,
    active_rms_dbfs,
    align_sentences,
    chunk_regions,
    clipped_fraction,
    normalise_loudness,
    pad_segments,
    plan_labelled,
    speech_weight,
    split_sentences,
)


def test_split_sentences_keeps_decimals_and_splits_cjk() -> None:
    assert split_sentences("Hi there. It is 7.15 now! 你好。我们走吧") == ["Hi there.", "It is 7.15 now!", "你好。", "我们走吧"]
    assert split_sentences("one line\nsecond line") == ["one line", "second line"]


def test_speech_weight_counts_cjk_and_digits_heavier() -> None:
    assert speech_weight("abc") == 3
    assert speech_weight("你好") == 6
    assert speech_weight("a 20") == 7


def _regions(durations: list[float], gaps: list[float]) -> list[Region]:
    out, t = [], 0.0
    for i, d in enumerate(durations):
        out.append(Region(t, t + d))
        t += d + (gaps[i] if i < len(gaps) else 0)
    return out


def test_alignment_ignores_a_short_pause_inside_a_sentence() -> None:
    # three sentences of ~2, 4, 3 s; the second has a 0.15 s pause in the middle
    regions = _regions([2.0, 1.9, 2.1, 3.0], [0.5, 0.15, 0.5])
    sentences = ["a" * 20, "b" * 40, "c" * 30]
    spans = align_sentences(sentences, regions)
    assert [(s[1], s[2]) for s in spans] == [(0, 0), (1, 2), (3, 3)]


def test_alignment_merges_sentences_when_regions_are_fewer() -> None:
    spans = align_sentences(["Short one.", "Another.", "Third part."], _regions([2.0, 2.0], [0.5]))
    assert len(spans) == 2
    assert "Short one." in spans[0][0] or "Third part." in spans[1][0]
    with pytest.raises(SlicingError):
        align_sentences(["x"], [])


def test_plan_labelled_keeps_short_audio_whole_and_cuts_long_audio() -> None:
    short = plan_labelled("One sentence. And another.", _regions([2.0, 2.0], [0.4]), 2.0, 10.0)
    assert len(short) == 1 and short[0].text == "One sentence. And another."
    long_regions = _regions([3.0] * 6, [0.5] * 5)
    text = " ".join(f"Sentence number {w} is here." for w in ["one", "two", "three", "four", "five", "six"])
    plan = plan_labelled(text, long_regions, 2.0, 10.0)
    assert len(plan) == 6
    assert all(seg.duration <= 10.0 for seg in plan)
    assert plan[2].text == "Sentence number three is here."


def test_plan_labelled_merges_pieces_below_the_target() -> None:
    plan = plan_labelled("Yes.\nNo.\nA much longer sentence follows here.", _regions([0.8, 0.8, 4.0], [0.6, 0.6]), 2.0, 10.0)
    assert all(seg.duration >= 1.6 for seg in plan)
    assert plan[0].text.startswith("Yes. No.")


def test_chunk_regions_respects_max_length_and_cuts_at_pauses() -> None:
    chunks = chunk_regions(_regions([3.0] * 8, [0.5] * 7), target_min=2.0, max_len=10.0)
    assert all(c.duration <= 10.0 for c in chunks)
    assert sum(1 for _ in chunks) >= 3


def test_pad_segments_stops_at_the_middle_of_pauses() -> None:
    from training.slicing import Segment

    padded = pad_segments([Segment(1.0, 2.0), Segment(2.1, 3.0)], total=3.05, pad=0.2)
    assert padded[0].start == pytest.approx(0.8) and padded[0].end == pytest.approx(2.05)
    assert padded[1].start == pytest.approx(2.05) and padded[1].end == pytest.approx(3.05)


def test_levels_clipping_and_normalisation() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert clipped_fraction(tone) == 0.0
    clipped = np.clip(tone * 100, -1, 1)
    assert clipped_fraction(clipped) > 0.3
    single_peak = tone.copy()
    single_peak[100] = 1.0
    assert clipped_fraction(single_peak) == 0.0
    with_pause = np.concatenate([tone, np.zeros(sr, dtype=np.float32)])
    assert active_rms_dbfs(with_pause, sr) == pytest.approx(active_rms_dbfs(tone, sr), abs=0.5)
    out = normalise_loudness(with_pause, sr, target_dbfs=-20.0, peak_dbfs=-1.0)
    assert active_rms_dbfs(out, sr) == pytest.approx(-20.0, abs=0.2)
    loud_peaks = tone.copy()
    loud_peaks[::400] = 0.9  # sparse peaks: reaching -20 dBFS would clip them
    out = normalise_loudness(loud_peaks, sr, target_dbfs=-10.0, peak_dbfs=-1.0)
    assert np.abs(out).max() == pytest.approx(10 ** (-1 / 20), rel=1e-3)
