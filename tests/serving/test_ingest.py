"""Upload ingest: every bad upload gets the right code; real voices give good references."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gpt_sovits.audio import load_audio
from serving.ingest import MODEL_SAMPLE_RATE, IngestError, Ingestor
from serving.segments import REF_MAX_S, REF_MIN_S, choose_segments
from serving.settings import Settings
from serving.vad import FRAME_SECONDS, VADParams, speech_regions


def _wav(x: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def _encode(x: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def ingestor() -> Ingestor:
    return Ingestor(Settings(max_aux_refs=3))


@pytest.fixture(scope="module")
def slt(voices_dir: Path) -> tuple[np.ndarray, int]:
    x, sr = sf.read(voices_dir / "en_slt" / "clone.flac", dtype="float32")
    return x, sr


def _code(ingestor: Ingestor, data: bytes) -> str:
    with pytest.raises(IngestError) as info:
        ingestor.ingest(data, "upload.bin")
    return info.value.code


# ------------------------------------------------------------------------------ rejections


def test_empty_upload(ingestor: Ingestor) -> None:
    assert _code(ingestor, b"") == "empty_upload"


def test_oversized_upload_is_rejected_before_decoding(monkeypatch) -> None:
    small = Ingestor(Settings(max_upload_bytes=1000))

    def no_decode(_data: bytes):
        raise AssertionError("decoder must not run for an oversized upload")

    monkeypatch.setattr(small.decoder, "decode", no_decode)
    with pytest.raises(IngestError) as info:
        small.ingest(b"\0" * 1001)
    assert info.value.code == "upload_too_large"
    assert info.value.http_status == 413


def test_random_bytes(ingestor: Ingestor) -> None:
    data = np.random.default_rng(1).bytes(20_000)
    assert _code(ingestor, data) == "unsupported_format"


def test_truncated_flac(ingestor: Ingestor, voices_dir: Path) -> None:
    data = (voices_dir / "en_slt" / "clone.flac").read_bytes()
    assert _code(ingestor, data[: len(data) // 3]) == "corrupt_audio"


def test_zero_hz_header(ingestor: Ingestor, slt) -> None:
    data = bytearray(_wav(slt[0][: slt[1] * 4], slt[1]))
    pos = data.index(b"fmt ")
    data[pos + 12 : pos + 16] = struct.pack("<I", 0)  # sample rate field of the fmt chunk
    assert _code(ingestor, bytes(data)) == "invalid_sample_rate"


def test_eight_channels(ingestor: Ingestor, slt) -> None:
    x = np.repeat(slt[0][: slt[1] * 5, None], 8, axis=1)
    assert _code(ingestor, _wav(x, slt[1])) == "too_many_channels"


def test_nan_in_float_wav(ingestor: Ingestor, slt) -> None:
    x = slt[0][: slt[1] * 5].copy()
    x[1000:1010] = np.nan
    assert _code(ingestor, _wav(x, slt[1], subtype="FLOAT")) == "non_finite_audio"


def test_pure_silence(ingestor: Ingestor) -> None:
    assert _code(ingestor, _wav(np.zeros(16000 * 6, np.float32), 16000)) == "no_speech"


def test_tone_is_not_speech(ingestor: Ingestor) -> None:
    t = np.arange(16000 * 6) / 16000
    assert _code(ingestor, _wav((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)) == "no_speech"


def test_one_second_clip(ingestor: Ingestor, slt) -> None:
    x, sr = slt
    assert _code(ingestor, _wav(x[sr : 2 * sr], sr)) == "audio_too_short"


def test_too_little_speech_in_a_long_file(ingestor: Ingestor, slt) -> None:
    x, sr = slt
    speech = x[int(0.2 * sr) : int(2.0 * sr)]  # under 2 s of speech padded with 8 s of silence
    padded = np.concatenate([np.zeros(4 * sr, np.float32), speech, np.zeros(4 * sr, np.float32)])
    assert _code(ingestor, _wav(padded, sr)) == "audio_too_short"


def test_ten_minute_clip(ingestor: Ingestor) -> None:
    data = _wav(np.zeros(8000 * 600, np.float32), 8000)  # 9.6 MB: under the byte cap, over 300 s
    assert len(data) < Settings().max_upload_bytes
    assert _code(ingestor, data) == "audio_too_long"


def test_heavily_clipped(ingestor: Ingestor, slt) -> None:
    x, sr = slt
    loud = np.clip(x[: 8 * sr] * 10.0, -1.0, 1.0)
    assert _code(ingestor, _wav(loud, sr)) == "clipped_audio"


def test_decoding_is_memory_bounded() -> None:
    """100 s at 192 kHz is a 60 kB FLAC of silence but 77 MB of samples: the child gives up."""
    data = _encode(np.zeros(192_000 * 100, np.float32), 192_000, "FLAC")
    assert len(data) < 200_000
    with pytest.raises(IngestError) as info:
        Ingestor(Settings(decode_memory_mb=64)).ingest(data)
    assert info.value.code == "audio_too_long" and "memory" in str(info.value)


def test_decode_timeout() -> None:
    impatient = Ingestor(Settings(decode_timeout_s=0.001))
    with pytest.raises(IngestError) as info:
        impatient.ingest(_wav(np.zeros(16000, np.float32), 16000))
    assert info.value.code == "decode_timeout"


# ------------------------------------------------------------------------- real voices


@pytest.mark.parametrize("voice", ["en_slt", "en_allison"])
def test_real_voice_gives_reference_and_aux(ingestor: Ingestor, voices_dir: Path, voice: str) -> None:
    result = ingestor.ingest((voices_dir / voice / "clone.flac").read_bytes(), "clone.flac")
    ref_s = len(result.reference_32k) / MODEL_SAMPLE_RATE
    assert 3.0 <= ref_s <= 10.0
    assert len(result.reference_16k) == pytest.approx(len(result.reference_32k) / 2, abs=2)
    assert result.reference_segment.score >= max(s.score for s in result.aux_segments)
    assert 1 <= len(result.aux_32k) <= 3
    assert all(3.0 <= len(a) / MODEL_SAMPLE_RATE <= 10.0 for a in result.aux_32k)
    spans = sorted((s.start, s.end) for s in [result.reference_segment, *result.aux_segments])
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(spans, spans[1:])), "segments overlap"
    assert not result.reference_covers_all_speech  # a one-minute upload: the reference is a slice
    stats = result.stats
    assert stats["speech_s"] > 45 and stats["duration_s"] > 55
    assert stats["reference"]["duration"] == pytest.approx(ref_s, abs=0.01)
    # The reference is speech, not pauses: it is loud and mostly voiced.
    assert result.reference_segment.speech_ratio > 0.7
    assert result.reference_segment.rms_dbfs > -35
    assert 30 <= len(result.speech_16k) / 16000 <= 60


@pytest.mark.parametrize("max_s", [4.5, 6.0])
def test_reference_max_seconds_caps_every_segment(voices_dir: Path, max_s: float) -> None:
    """A low-latency service cuts shorter references (less prompt to prefill per stream)."""
    short = Ingestor(Settings(max_aux_refs=3, reference_max_seconds=max_s))
    result = short.ingest((voices_dir / "en_allison" / "clone.flac").read_bytes(), "clone.flac")
    lengths = [len(x) / MODEL_SAMPLE_RATE for x in (result.reference_32k, *result.aux_32k)]
    assert all(REF_MIN_S - 0.01 <= n <= max_s + 0.01 for n in lengths), lengths
    assert result.aux_32k and result.reference_segment.speech_ratio > 0.7
    default = Ingestor(Settings(max_aux_refs=3)).ingest(
        (voices_dir / "en_allison" / "clone.flac").read_bytes(), "clone.flac")
    assert len(default.reference_32k) / MODEL_SAMPLE_RATE > 4.5  # the cap is what made them short


def test_reference_max_seconds_is_validated() -> None:
    for bad in (3.0, 10.0):
        with pytest.raises(ValueError):
            Settings(reference_max_seconds=bad)
    audio, probs = _bursts([(0.5, 20.0)], 21.0)
    with pytest.raises(ValueError, match="max_s"):
        choose_segments(audio, 16000, [(0.5, 20.0)], probs, max_aux=1, max_s=12.0)


def test_cuts_fall_in_pauses(ingestor: Ingestor, voices_dir: Path) -> None:
    """en_slt is 15 sentences joined by 0.3 s of digital silence: every cut must land in a gap.

    Each sentence file keeps a 0.12 s quiet margin around its speech (meta.json "processing"),
    so a gap, as heard, extends 0.12 s into the neighbouring files.
    """
    import json

    meta = json.loads((voices_dir / "en_slt" / "meta.json").read_text())
    gaps, t = [], 0.0
    for utt in meta["utterances"]:
        t += utt["seconds"]
        gaps.append((t - 0.12, t + meta["gap_seconds"] + 0.12))
        t += meta["gap_seconds"]
    result = Ingestor(Settings(max_aux_refs=20)).ingest((voices_dir / "en_slt" / "clone.flac").read_bytes())
    segments = [result.reference_segment, *result.aux_segments]
    assert len(segments) >= 6
    inner_cuts = {round(x, 3) for s in segments for x in (s.start, s.end)} - {round(min(s.start for s in segments), 3),
                                                                             round(max(s.end for s in segments), 3)}
    for cut in inner_cuts:
        assert any(lo <= cut <= hi for lo, hi in gaps), f"cut at {cut:.2f} s is inside speech"


def test_short_upload_keeps_its_transcript_alignment(ingestor: Ingestor, voices_dir: Path) -> None:
    result = ingestor.ingest((voices_dir / "en_slt" / "ref.flac").read_bytes())
    assert result.reference_covers_all_speech
    assert result.aux_32k == []


def test_stereo_ogg_at_44k_is_accepted(ingestor: Ingestor, voices_dir: Path) -> None:
    x, sr = sf.read(voices_dir / "en_slt" / "ref.flac", dtype="float32")
    from gpt_sovits.audio import resample

    y = resample(x, sr, 44100)
    stereo = np.stack([y, 0.5 * y], axis=1)
    result = ingestor.ingest(_encode(stereo, 44100, "OGG", "VORBIS"), "ref.ogg")
    assert result.stats["input_sample_rate"] == 44100
    assert result.stats["input_channels"] == 2
    assert 3.0 <= len(result.reference_32k) / MODEL_SAMPLE_RATE <= 10.0


def test_decoded_audio_matches_direct_decode(ingestor: Ingestor, voices_dir: Path) -> None:
    """The isolated decoder returns the same samples as decoding in-process."""
    data = (voices_dir / "en_allison" / "ref.flac").read_bytes()
    decoded = ingestor.decoder.decode(data)
    direct, sr = load_audio(data, target_sr=MODEL_SAMPLE_RATE)
    assert sr == MODEL_SAMPLE_RATE
    np.testing.assert_allclose(decoded.samples, direct, atol=1e-6)


# ------------------------------------------------------------------ segmentation units


def test_speech_regions_hysteresis() -> None:
    on, mid, off = 0.9, 0.4, 0.05
    probs = np.array([off] * 5 + [on] * 20 + [mid] * 10 + [on] * 5 + [off] * 2 + [on] * 10 + [off] * 20
                     + [on] * 3 + [off] * 10, dtype=np.float32)
    regions = speech_regions(probs, VADParams(min_silence_s=0.15, min_speech_s=0.25))
    # mid-probability frames continue a region; a 2-frame (64 ms) dip does not end it; the
    # 3-frame (96 ms) blip at the end is too short to count.
    assert len(regions) == 1
    start, end = regions[0]
    assert start == pytest.approx(5 * FRAME_SECONDS)
    assert end == pytest.approx((5 + 20 + 10 + 5 + 2 + 10) * FRAME_SECONDS)


def _bursts(spans: list[tuple[float, float]], total: float, sr: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    audio = np.zeros(int(total * sr), np.float32)
    probs = np.zeros(int(np.ceil(total / FRAME_SECONDS)), np.float32)
    for s, e in spans:
        audio[int(s * sr) : int(e * sr)] = rng.standard_normal(int(e * sr) - int(s * sr)) * 0.1
        probs[int(s / FRAME_SECONDS) : int(e / FRAME_SECONDS)] = 0.95
    return audio, probs


def test_long_speech_is_split_at_quiet_points_within_limits() -> None:
    # 30 s of continuous "speech" with 0.2 s pauses every 2.5 s (too short to split the region).
    spans, t = [], 0.5
    while t < 30:
        spans.append((t, t + 2.3))
        t += 2.5
    audio, probs = _bursts(spans, 31.0)
    ref, aux = choose_segments(audio, 16000, [(0.5, spans[-1][1])], probs, max_aux=10)
    segments = [ref, *aux]
    assert len(segments) >= 3
    for seg in segments:
        assert REF_MIN_S <= seg.duration <= REF_MAX_S
        inner = [x for x in (seg.start, seg.end) if 0.6 < x < spans[-1][1] - 0.1]
        for cut in inner:
            assert any(e <= cut <= s2 for (_, e), (s2, _) in zip(spans, spans[1:])), f"cut {cut} in a burst"


def test_choppy_speech_is_stitched() -> None:
    spans = [(0.5 + 2.5 * i, 0.5 + 2.5 * i + 1.2) for i in range(8)]  # 1.2 s utterances, 1.3 s gaps
    audio, probs = _bursts(spans, 21.0)
    ref, aux = choose_segments(audio, 16000, spans, probs, max_aux=5)
    assert ref.stitched
    assert REF_MIN_S <= ref.duration <= REF_MAX_S
    cut = ref.cut(audio, 16000)
    assert len(cut) / 16000 == pytest.approx(ref.duration, abs=0.01)
    assert float(np.mean(np.abs(cut) > 0)) > 0.8  # mostly speech: the long pauses were dropped


def test_lone_short_stretch_gives_no_candidate() -> None:
    audio, probs = _bursts([(1.0, 3.9)], 6.0)
    with pytest.raises(ValueError):
        choose_segments(audio, 16000, [(1.0, 3.9)], probs, max_aux=2)


def test_speech_too_short_for_a_reference_even_when_the_minimum_is_lower(voices_dir: Path) -> None:
    """With min_upload_seconds below the 3 s reference minimum, a 3 s sentence passes the speech
    check but still cannot give a reference: a clear 4xx, not a crash."""
    data = (voices_dir / "en_slt" / "utts" / "010.flac").read_bytes()  # 3.06 s file, ~2.8 s of speech
    with pytest.raises(IngestError) as info:
        Ingestor(Settings(min_upload_seconds=1.0)).ingest(data)
    assert info.value.code == "audio_too_short" and "cannot form a reference" in str(info.value)
