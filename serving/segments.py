"""Cutting detected speech into 3-10 s reference candidates and choosing the best ones.

GPT-SoVITS wants a 3-10 s reference: long enough to carry the voice, short enough that its
semantic tokens do not crowd the GPT prompt. From an upload of about a minute we:
1. merge VAD regions separated by short pauses into chunks (a reference may breathe);
2. split chunks longer than 10 s at their quietest points, aiming at about 6.5 s per piece;
3. if no chunk reaches 3 s (choppy speech), stitch neighbouring short chunks with short gaps;
4. score every candidate (speech ratio, loudness, clipping, duration near 5-8 s); the best is
   the reference and the next best are auxiliary references.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vad import FRAME_SECONDS

REF_MIN_S = 3.1
"""Shortest segment we form: `VoicePrompt.from_audio` accepts 3 s, we keep a small margin."""
REF_MAX_S = 9.9
"""Longest segment we form: `VoicePrompt.from_audio` accepts 10 s, we keep a small margin."""
TARGET_S = 6.5
"""Preferred piece length when a long stretch of speech has to be cut."""
MERGE_GAP_S = 0.5
"""Pauses up to this long stay inside a segment."""
PAD_S = 0.05
"""Silence kept around speech beyond where it fades out."""
EDGE_S = 0.3
"""How far a chunk edge may move outward from the VAD boundary to reach quiet."""
QUIET_DB = 45.0
"""An edge is quiet when the level is this far below the chunk's loudest point."""
STITCH_GAP_S = 0.2
"""Silence between pieces of a stitched segment."""
ENVELOPE_HOP_S = 0.01


@dataclass(frozen=True)
class Segment:
    """A stretch of the upload (seconds); stitched segments join `parts` with short gaps."""

    start: float
    end: float
    score: float = 0.0
    speech_ratio: float = 0.0
    rms_dbfs: float = -120.0
    clipped: float = 0.0
    parts: tuple[tuple[float, float], ...] = ()

    @property
    def stitched(self) -> bool:
        return bool(self.parts)

    @property
    def duration(self) -> float:
        if not self.parts:
            return self.end - self.start
        return sum(e - s for s, e in self.parts) + STITCH_GAP_S * (len(self.parts) - 1)

    def cut(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """The segment's samples (a copy)."""
        if not self.parts:
            return audio[int(round(self.start * sr)) : int(round(self.end * sr))].copy()
        gap = np.zeros(int(round(STITCH_GAP_S * sr)), dtype=audio.dtype)
        pieces: list[np.ndarray] = []
        for s, e in self.parts:
            if pieces:
                pieces.append(gap)
            pieces.append(audio[int(round(s * sr)) : int(round(e * sr))])
        return np.concatenate(pieces)

    def as_dict(self) -> dict[str, float | bool]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "duration": round(self.duration, 3),
                "score": round(self.score, 4), "speech_ratio": round(self.speech_ratio, 3),
                "rms_dbfs": round(self.rms_dbfs, 2), "stitched": self.stitched}


def choose_segments(audio: np.ndarray, sr: int, regions: list[tuple[float, float]], probs: np.ndarray,
                    max_aux: int, max_s: float = REF_MAX_S) -> tuple[Segment, list[Segment]]:
    """The best reference and up to `max_aux` auxiliary segments (all 3 s to `max_s`, non-overlapping).

    `regions` are VAD speech regions in seconds and `probs` the VAD frame probabilities. A
    shorter `max_s` gives voices a shorter prompt: less for the GPT to prefill before every
    stream (see `Settings.reference_max_seconds`), at the cost of less of the voice in the prompt.
    Raises ValueError when no candidate exists (callers check total speech first).
    """
    if not REF_MIN_S < max_s <= REF_MAX_S:
        raise ValueError(f"max_s must be in ({REF_MIN_S}, {REF_MAX_S}], got {max_s}")
    total_s = len(audio) / sr
    envelope = _envelope_db(audio, sr)
    candidates: list[Segment] = []
    short: list[tuple[float, float]] = []
    for start, end in _chunks(regions, total_s, envelope):
        if end - start < REF_MIN_S:
            short.append((start, end))
        elif end - start <= max_s:
            candidates.append(Segment(start, end))
        else:
            candidates.extend(Segment(s, e) for s, e in _split(start, end, envelope, max_s))
    if not candidates:
        candidates = _stitch(short, max_s)
    if not candidates:
        raise ValueError("no 3-10 s stretch of speech could be formed")
    scored = sorted((_score(seg, audio, sr, probs) for seg in candidates), key=lambda s: -s.score)
    return scored[0], scored[1 : 1 + max_aux]


def _chunks(regions: list[tuple[float, float]], total_s: float, envelope: np.ndarray) -> list[tuple[float, float]]:
    """Merge regions across short pauses, then widen each chunk to where the sound really fades.

    The VAD reacts a frame or three late to onsets and early to decays, so each edge walks outward
    on the level envelope until it is QUIET_DB below the chunk's loudest point (at most EDGE_S),
    plus PAD_S. Edges never pass the middle of the pause to the neighbouring chunk.
    """
    merged: list[list[float]] = []
    for start, end in sorted(regions):
        if merged and start - merged[-1][1] <= MERGE_GAP_S:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out = []
    for i, (start, end) in enumerate(merged):
        lo = 0.0 if i == 0 else (merged[i - 1][1] + start) / 2
        hi = total_s if i == len(merged) - 1 else (end + merged[i + 1][0]) / 2
        quiet = _peak_db(envelope, start, end) - QUIET_DB
        s = _walk(envelope, start, -1, quiet) - PAD_S
        e = _walk(envelope, end, +1, quiet) + PAD_S
        out.append((max(lo, s), min(hi, e)))
    return out


def _peak_db(envelope: np.ndarray, start: float, end: float) -> float:
    i0, i1 = int(start / ENVELOPE_HOP_S), max(int(start / ENVELOPE_HOP_S) + 1, int(end / ENVELOPE_HOP_S))
    part = envelope[i0:i1]
    return float(part.max()) if part.size else -120.0


def _walk(envelope: np.ndarray, t: float, step: int, quiet_db: float) -> float:
    """From time `t`, move in direction `step` while the level is above `quiet_db` (<= EDGE_S)."""
    i = min(max(int(round(t / ENVELOPE_HOP_S)), 0), len(envelope) - 1)
    for _ in range(int(EDGE_S / ENVELOPE_HOP_S)):
        nxt = i + step
        if not 0 <= nxt < len(envelope) or envelope[nxt] < quiet_db:
            break
        i = nxt
    return i * ENVELOPE_HOP_S


def _envelope_db(audio: np.ndarray, sr: int) -> np.ndarray:
    """Short-time level in dB every 10 ms, smoothed over 50 ms so single quiet frames don't win."""
    hop = max(1, int(sr * ENVELOPE_HOP_S))
    n = len(audio) // hop
    if n == 0:
        return np.full(1, -120.0)
    power = np.mean(np.square(audio[: n * hop].reshape(n, hop), dtype=np.float64), axis=1)
    smooth = np.convolve(power, np.ones(5) / 5, mode="same")
    return 10.0 * np.log10(smooth + 1e-12)


def _target(max_s: float) -> float:
    """Preferred piece length under a `max_s` cap: TARGET_S, or the middle of what is allowed."""
    return min(TARGET_S, (REF_MIN_S + max_s) / 2)


def _split(start: float, end: float, envelope: np.ndarray, max_s: float = REF_MAX_S) -> list[tuple[float, float]]:
    """Cut [start, end] (> max_s) into 3 s to max_s pieces at quiet points near `_target` apart.

    Greedy from the left: the next cut lies in [pos + 3, min(pos + max_s, end - 3)] (never leaving
    a tail shorter than 3 s) and minimises normalised level plus a small pull towards
    pos + target. A stretch that cannot be cut so (max_s < 6 s and a tail in between) loses its tail.
    """
    pieces = []
    pos = start
    target = _target(max_s)
    while end - pos > max_s:
        lo, hi = pos + REF_MIN_S, min(pos + max_s, end - REF_MIN_S)
        i0, i1 = int(np.ceil(lo / ENVELOPE_HOP_S)), int(np.floor(hi / ENVELOPE_HOP_S))
        i1 = min(i1, len(envelope) - 1)
        if i1 <= i0:
            break
        level = envelope[i0 : i1 + 1]
        spread = max(float(level.max() - level.min()), 1e-6)
        times = np.arange(i0, i1 + 1) * ENVELOPE_HOP_S
        cost = (level - level.min()) / spread + 0.3 * np.abs(times - (pos + target)) / max_s
        cut = float(times[_middle_of_minimum(cost)])
        pieces.append((pos, cut))
        pos = cut
    if REF_MIN_S <= end - pos <= max_s:
        pieces.append((pos, end))
    return pieces


def _middle_of_minimum(cost: np.ndarray, tolerance: float = 0.02) -> int:
    """Index in the middle of the flat run around the minimum: cut mid-pause, not at its edge."""
    best = int(np.argmin(cost))
    near = cost <= cost[best] + tolerance
    lo = hi = best
    while lo > 0 and near[lo - 1]:
        lo -= 1
    while hi < len(cost) - 1 and near[hi + 1]:
        hi += 1
    return (lo + hi) // 2


def _stitch(short: list[tuple[float, float]], max_s: float = REF_MAX_S) -> list[Segment]:
    """Join consecutive short chunks (with STITCH_GAP_S gaps) into 3 s to max_s stitched segments."""
    out: list[Segment] = []
    parts: list[tuple[float, float]] = []

    def length(ps: list[tuple[float, float]]) -> float:
        return sum(e - s for s, e in ps) + STITCH_GAP_S * max(len(ps) - 1, 0)

    for piece in short:
        if parts and length(parts + [piece]) > max_s:
            if length(parts) >= REF_MIN_S:
                out.append(Segment(parts[0][0], parts[-1][1], parts=tuple(parts)))
            parts = []
        parts.append(piece)
        if length(parts) >= _target(max_s):
            out.append(Segment(parts[0][0], parts[-1][1], parts=tuple(parts)))
            parts = []
    if parts and REF_MIN_S <= length(parts) <= max_s:
        out.append(Segment(parts[0][0], parts[-1][1], parts=tuple(parts)))
    return out


def _duration_score(d: float) -> float:
    """1 inside 5-8 s, falling linearly to 0.2 at the segment length limits."""
    if d < 5.0:
        ramp = (d - REF_MIN_S) / (5.0 - REF_MIN_S)
    elif d > 8.0:
        ramp = (REF_MAX_S - d) / (REF_MAX_S - 8.0)
    else:
        ramp = 1.0
    return 0.2 + 0.8 * float(np.clip(ramp, 0.0, 1.0))


def _loudness_score(db: float) -> float:
    """1 for speech between -30 and -10 dBFS RMS, 0 at -50 dBFS and at 0 dBFS."""
    if db < -30.0:
        return float(np.clip((db + 50.0) / 20.0, 0.0, 1.0))
    if db > -10.0:
        return float(np.clip(-db / 10.0, 0.0, 1.0))
    return 1.0


def _score(seg: Segment, audio: np.ndarray, sr: int, probs: np.ndarray) -> Segment:
    spans = seg.parts or ((seg.start, seg.end),)
    frames = np.concatenate([probs[int(s / FRAME_SECONDS) : max(int(s / FRAME_SECONDS) + 1, int(e / FRAME_SECONDS))]
                             for s, e in spans])
    ratio = float(np.mean(frames >= 0.5)) if frames.size else 0.0
    x = seg.cut(audio, sr).astype(np.float64)
    rms = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
    db = 20.0 * np.log10(max(rms, 1e-6))
    clipped = float(np.mean(np.abs(x) >= 0.99)) if x.size else 0.0
    clip_score = max(0.0, 1.0 - 100.0 * clipped)
    score = 0.35 * ratio + 0.25 * _duration_score(seg.duration) + 0.2 * _loudness_score(db) + 0.2 * clip_score
    return Segment(seg.start, seg.end, score=score, speech_ratio=ratio, rms_dbfs=db, clipped=clipped,
                   parts=seg.parts)
