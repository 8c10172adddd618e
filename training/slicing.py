"""Cut recordings into training utterances: VAD, level checks, sentence alignment.

A one-minute upload is usually one long file or a handful of clips, with or without a
transcript. Everything here works on *speech regions* found by Silero VAD (seconds, at any
rate) and plans `Segment`s (start, end, text) that are 2-10 s long and start/end in pauses:

- no transcript: regions are merged greedily into chunks and labelled later by ASR;
- one transcript for a long file: the text is split into sentences (or one per line) and each
  sentence is matched to a run of regions by dynamic programming over the pauses, scoring how
  well each run's length fits the sentence's expected length (from its character count) and
  preferring long pauses as sentence boundaries. No ASR or forced aligner is needed, and a
  pause inside a sentence (a comma, a colon) does not shift the text of later sentences.

Level helpers (clipping, active loudness, normalisation) are here too because they decide which
slices are kept.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from gpt_sovits.errors import GSVError


class SlicingError(GSVError):
    """The audio could not be cut as asked (no speech at all, transcript that cannot be placed)."""

    code = "slicing_error"


@dataclass(frozen=True)
class Region:
    """A stretch of speech found by the VAD, in seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Segment:
    """A planned utterance: where to cut (seconds) and what is said (None until ASR labels it)."""

    start: float
    end: float
    text: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


# ----------------------------------------------------------------------------------- VAD


class SpeechDetector:
    """Silero VAD (the model ships inside the `silero-vad` wheel, no download) on 16 kHz audio."""

    sample_rate = 16000

    def __init__(
        self,
        threshold: float = 0.5,
        min_silence_ms: int = 150,
        speech_pad_ms: int = 30,
        max_speech_s: float = float("inf"),
    ) -> None:
        self.threshold = threshold
        self.min_silence_ms = min_silence_ms
        self.speech_pad_ms = speech_pad_ms
        self.max_speech_s = max_speech_s
        self._model = None

    def _load(self):  # noqa: ANN202 - a TorchScript module
        if self._model is None:
            import torch

            threads = torch.get_num_threads()
            try:
                from silero_vad import load_silero_vad
            except ImportError as exc:  # pragma: no cover - it is a declared dependency
                raise SlicingError(
                    "Voice activity detection needs the `silero-vad` package: pip install silero-vad",
                    code="missing_dependency",
                ) from exc
            finally:
                # silero_vad sets the global torch thread count to 1 at import; undo that.
                torch.set_num_threads(threads)
            self._model = load_silero_vad()
        return self._model

    def regions(self, wav16k: np.ndarray) -> list[Region]:
        """Speech regions of a 16 kHz mono waveform, in seconds, sorted and non-overlapping."""
        import torch
        from silero_vad import get_speech_timestamps

        model = self._load()
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(wav16k, dtype=np.float32)),
            model,
            threshold=self.threshold,
            sampling_rate=self.sample_rate,
            min_silence_duration_ms=self.min_silence_ms,
            speech_pad_ms=self.speech_pad_ms,
            max_speech_duration_s=self.max_speech_s,
        )
        model.reset_states()
        return [Region(s["start"] / self.sample_rate, s["end"] / self.sample_rate) for s in stamps]


# --------------------------------------------------------------------------------- levels


def clipped_fraction(x: np.ndarray, level: float = 0.999, min_run: int = 3) -> float:
    """Fraction of samples that sit in runs of >= `min_run` samples at or above `level`.

    A single full-scale sample is a legitimate peak; a flat run at the rail is clipping.
    """
    hot = np.abs(np.asarray(x)) >= level
    if not hot.any():
        return 0.0
    edges = np.diff(np.concatenate(([0], hot.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    return float(lengths[lengths >= min_run].sum()) / max(len(x), 1)


def active_rms_dbfs(x: np.ndarray, sr: int, frame_ms: float = 20.0, range_db: float = 35.0) -> float:
    """RMS of the frames within `range_db` of the loudest frame, in dBFS (pauses don't count).

    Plain RMS would call a slow speaker with long pauses "quiet" and over-amplify them.
    """
    x = np.asarray(x, dtype=np.float64)
    hop = max(1, int(sr * frame_ms / 1000))
    n = len(x) // hop
    if n == 0:
        return -120.0
    power = np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)
    if power.max() <= 0:
        return -120.0
    db = 10 * np.log10(np.maximum(power, 1e-12))
    active = power[db >= db.max() - range_db]
    return max(10 * math.log10(float(active.mean())), -120.0)


def normalise_loudness(x: np.ndarray, sr: int, target_dbfs: float = -20.0, peak_dbfs: float = -1.0) -> np.ndarray:
    """Gain so the active RMS hits `target_dbfs`, lowered if the peak would pass `peak_dbfs`."""
    x = np.asarray(x, dtype=np.float32)
    level = active_rms_dbfs(x, sr)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if level <= -120.0 or peak == 0.0:
        return x.copy()
    gain_db = target_dbfs - level
    gain_db = min(gain_db, peak_dbfs - 20 * math.log10(peak))
    return (x * (10 ** (gain_db / 20))).astype(np.float32)


# ---------------------------------------------------------------------------------- text

_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；…])\s+|(?<=[。！？；…])|\n+")
_CLAUSE_END = re.compile(r"(?<=[,:，：、])\s*")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def split_sentences(text: str) -> list[str]:
    """Split on sentence punctuation and newlines ("7.15" and "3.5" stay whole)."""
    return [p.strip() for p in _SENTENCE_END.split(text) if p and p.strip()]


def split_clauses(text: str) -> list[str]:
    """Split a sentence at commas/colons: the next level down when a sentence is too long."""
    return [p.strip() for p in _CLAUSE_END.split(text) if p and p.strip()]


def speech_weight(text: str) -> float:
    """Rough relative speaking time of `text`: one unit per Latin letter (~60 ms), three per CJK
    character or digit (a syllable, or a digit read as a word)."""
    cjk = len(_CJK.findall(text))
    digits = sum(c.isdigit() for c in text)
    letters = sum(c.isalpha() for c in text) - cjk
    return max(1.0, letters + 3.0 * (cjk + digits))


def join_text(parts: list[str]) -> str:
    """Join sentences with a space, except between two CJK characters."""
    out = ""
    for part in parts:
        if out and not (_CJK.match(out[-1]) and _CJK.match(part[0])):
            out += " "
        out += part
    return out


# ------------------------------------------------------------------------------ planning


def chunk_regions(regions: list[Region], target_min: float, max_len: float, cut_gap: float = 0.3) -> list[Segment]:
    """Merge speech regions into chunks of at most `max_len` s for ASR labelling.

    A chunk is closed at a pause of at least `cut_gap` s once it is `target_min` s long, and
    always before it would grow past `max_len`.
    """
    chunks: list[Segment] = []
    for region in regions:
        if chunks:
            last = chunks[-1]
            gap = region.start - last.end
            fits = region.end - last.start <= max_len
            if fits and (last.duration < target_min or gap < cut_gap):
                last.end = region.end
                continue
        chunks.append(Segment(region.start, region.end))
    return chunks


def _merge_sentences(sentences: list[str], limit: int) -> list[str]:
    """Join the lightest adjacent pair until at most `limit` sentences remain."""
    items = list(sentences)
    while len(items) > max(limit, 1):
        weights = [speech_weight(a) + speech_weight(b) for a, b in zip(items, items[1:])]
        i = int(np.argmin(weights))
        items[i : i + 2] = [join_text(items[i : i + 2])]
    return items


def align_sentences(sentences: list[str], regions: list[Region], gap_weight: float = 1.0) -> list[tuple[str, int, int]]:
    """Give each sentence a run of consecutive regions: [(text, first, last_inclusive)].

    Dynamic programme over boundaries: cost = sum over sentences of log(actual / expected)^2
    (expected = share of the total speech time by `speech_weight`) minus `gap_weight` * log of
    each boundary pause. Sentences are merged first when there are fewer regions than sentences.
    """
    if not regions:
        raise SlicingError("No speech found to align the transcript to.", code="no_speech")
    sentences = _merge_sentences(sentences, len(regions))
    n, g = len(sentences), len(regions)
    durations = np.array([r.duration for r in regions])
    cum = np.concatenate(([0.0], np.cumsum(durations)))
    weights = np.array([speech_weight(s) for s in sentences])
    expected = weights / weights.sum() * cum[-1]
    gaps = np.array([max(regions[k].start - regions[k - 1].end, 1e-3) for k in range(1, g)])
    gap_cost = -gap_weight * np.log(gaps / 0.3)  # boundary before region k uses gaps[k-1]

    inf = float("inf")
    cost = np.full((n + 1, g + 1), inf)
    back = np.zeros((n + 1, g + 1), dtype=np.int64)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        # sentence i-1 covers regions k..j-1; leave at least one region per remaining sentence
        for j in range(i, g - (n - i) + 1):
            ks = np.arange(i - 1, j)
            prev = cost[i - 1, ks]
            fit = np.log(np.maximum(cum[j] - cum[ks], 1e-3) / expected[i - 1]) ** 2
            boundary = np.where(ks > 0, gap_cost[np.maximum(ks - 1, 0)], 0.0)
            total = prev + fit + boundary
            best = int(np.argmin(total))
            cost[i, j], back[i, j] = total[best], ks[best]
    spans: list[tuple[str, int, int]] = []
    j = g
    for i in range(n, 0, -1):
        k = int(back[i, j])
        spans.append((sentences[i - 1], k, j - 1))
        j = k
    return spans[::-1]


def _plan_run(text: str, regions: list[Region], max_len: float) -> list[tuple[str, list[Region]]]:
    """Split one transcript over its regions into pieces no longer than `max_len` where possible."""
    if regions[-1].end - regions[0].start <= max_len or len(regions) == 1:
        return [(text, regions)]
    parts = split_sentences(text)
    if len(parts) < 2:
        parts = split_clauses(text)
    if len(parts) < 2:
        return [(text, regions)]  # one long clause: nothing to cut at, the caller judges its length
    pieces: list[tuple[str, list[Region]]] = []
    for sentence, first, last in align_sentences(parts, regions):
        pieces.extend(_plan_run(sentence, regions[first : last + 1], max_len))
    return pieces


def _group_short(pieces: list[tuple[str, list[Region]]], target_min: float, max_len: float) -> list[tuple[str, list[Region]]]:
    """Merge pieces shorter than `target_min` into a neighbour while the result stays <= max_len."""
    out: list[tuple[str, list[Region]]] = []
    for text, regs in pieces:
        if out:
            prev_text, prev_regs = out[-1]
            prev_len = prev_regs[-1].end - prev_regs[0].start
            this_len = regs[-1].end - regs[0].start
            merged_len = regs[-1].end - prev_regs[0].start
            if (prev_len < target_min or this_len < target_min) and merged_len <= max_len:
                out[-1] = (join_text([prev_text, text]), prev_regs + regs)
                continue
        out.append((text, regs))
    return out


def plan_labelled(text: str, regions: list[Region], target_min: float, max_len: float) -> list[Segment]:
    """Plan utterances for audio whose transcript is known (lines = sentences when given)."""
    if not regions:
        return []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise SlicingError("The transcript is empty.", code="empty_transcript")
    if regions[-1].end - regions[0].start <= max_len:
        pieces = [(join_text(lines), regions)]
    elif len(lines) > 1:
        pieces = []
        for line, first, last in align_sentences(lines, regions):
            pieces.extend(_plan_run(line, regions[first : last + 1], max_len))
    else:
        pieces = _plan_run(lines[0], regions, max_len)
    pieces = _group_short(pieces, target_min, max_len)
    return [Segment(regs[0].start, regs[-1].end, piece) for piece, regs in pieces]


def pad_segments(segments: list[Segment], total: float, pad: float) -> list[Segment]:
    """Widen each segment by `pad` s on each side, never past the middle of a neighbouring pause."""
    out: list[Segment] = []
    for i, seg in enumerate(segments):
        lo = 0.0 if i == 0 else (segments[i - 1].end + seg.start) / 2
        hi = total if i == len(segments) - 1 else (seg.end + segments[i + 1].start) / 2
        out.append(Segment(max(seg.start - pad, lo), min(seg.end + pad, hi), seg.text))
    return out
