"""`gsv prepare`: recordings (+ transcripts) -> a training dataset folder.

Per source recording: decode, resample to 16 kHz for the VAD, find speech regions, plan
utterances (aligned to the transcript, or chunked and labelled by ASR), and reject clipped,
silent, too short or too long slices with a reason. The plan is cached per recording, so a rerun
does not repeat VAD or ASR.

Per planned utterance: cut, resample to 32 kHz, loudness-normalise; HuBERT features
[C, T50] from the 16 kHz version; semantic tokens with the base SoVITS `extract_latent`;
linear spectrogram; phones + word2ph (+ BERT for zh). Stored as described in `training.dataset`.
Items already in the manifest are skipped, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpt_sovits.audio import load_audio, resample
from gpt_sovits.features import BertAlignmentError
from gpt_sovits.phone_align import PhoneAlignError
from gpt_sovits.text.errors import FrontendError
from gpt_sovits.text.lang import check_language
from training.config import PrepareConfig
from training.dataset import DatasetDir, DatasetError, ManifestItem, atomic_write_text
from training.features import FeatureModels
from training.slicing import (
    Segment,
    SpeechDetector,
    active_rms_dbfs,
    chunk_regions,
    clipped_fraction,
    normalise_loudness,
    pad_segments,
    plan_labelled,
)
from training.transcripts import SourceAudio, Transcriber, TranscriptError, missing_transcript_error

log = logging.getLogger(__name__)
PLAN_VERSION = 1


@dataclass
class PlannedItem:
    """One slice of a source recording and its verdict (`status` "ok" or a rejection reason)."""

    id: str
    source: str
    start: float
    end: float
    text: str
    lang: str
    status: str = "ok"
    detail: str = ""


@dataclass
class PrepareReport:
    """What a prepare run produced; saved as report.json and printed by the CLI."""

    accepted: int = 0
    new: int = 0
    """Items built in this run (the rest were already done)."""
    kept_seconds: float = 0.0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    sources: int = 0

    def summary(self) -> str:
        reasons: dict[str, int] = {}
        for r in self.rejected:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        why = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) or "none"
        return (f"{self.accepted} utterances ({self.kept_seconds:.1f} s) from {self.sources} recording(s), "
                f"{self.new} new; rejected {len(self.rejected)} ({why})")


# ---------------------------------------------------------------------------------- planning


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "audio"


def _item_id(src: Path, index: int, seg: Segment) -> str:
    key = f"{src}|{seg.start:.3f}|{seg.end:.3f}|{seg.text}"
    return f"{_slug(src.stem)}_{index:03d}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def _verdict(seg: Segment, wav: np.ndarray, sr: int, cfg: PrepareConfig) -> tuple[str, str]:
    """Why a planned slice is unusable ("ok" when it is fine)."""
    if not (seg.text or "").strip():
        return "no_text", "the transcript for this slice is empty"
    if seg.duration < cfg.min_seconds:
        return "too_short", f"{seg.duration:.2f} s < {cfg.min_seconds} s"
    if seg.duration > cfg.hard_max_seconds:
        return "too_long", f"{seg.duration:.2f} s > {cfg.hard_max_seconds} s and no pause/punctuation to cut at"
    piece = wav[int(seg.start * sr) : int(seg.end * sr)]
    clipped = clipped_fraction(piece, cfg.clip_level)
    if clipped > cfg.max_clipped_fraction:
        return "clipped", f"{clipped:.2%} of samples clipped"
    level = active_rms_dbfs(piece, sr)
    if level < cfg.silence_dbfs:
        return "silent", f"active level {level:.1f} dBFS < {cfg.silence_dbfs} dBFS"
    return "ok", ""


def plan_source(src: SourceAudio, cfg: PrepareConfig, detector: SpeechDetector,
                transcriber: Transcriber | None) -> list[PlannedItem]:
    """Slice one recording into planned utterances (with rejections)."""
    wav, sr = load_audio(src.path)
    wav16 = resample(wav, sr, cfg.ssl_sample_rate)
    regions = detector.regions(wav16)
    total = len(wav) / sr
    lang = src.lang or cfg.lang
    if not regions:
        return [PlannedItem(f"{_slug(src.path.stem)}_none", str(src.path), 0.0, total, src.text or "", lang,
                            "silent", "no speech detected in the whole recording")]
    if src.text is not None:
        segments = plan_labelled(src.text, regions, cfg.target_min_seconds, cfg.max_seconds)
    else:
        if transcriber is None:
            raise missing_transcript_error([src.path])
        segments = chunk_regions(regions, cfg.target_min_seconds, cfg.max_seconds)
    segments = pad_segments(segments, total, cfg.edge_pad_ms / 1000)
    items = []
    for index, seg in enumerate(segments):
        if src.text is None and transcriber is not None:
            piece16 = wav16[int(seg.start * cfg.ssl_sample_rate) : int(seg.end * cfg.ssl_sample_rate)]
            seg.text, detected = transcriber.transcribe(piece16, cfg.asr_language)
            lang = cfg.lang if cfg.lang != "auto" else detected
        status, detail = _verdict(seg, wav, sr, cfg)
        items.append(PlannedItem(_item_id(src.path, index, seg), str(src.path), round(seg.start, 4),
                                 round(seg.end, 4), seg.text or "", lang, status, detail))
    return items


def _plan_key(src: SourceAudio, cfg: PrepareConfig, asr_id: str) -> str:
    h = hashlib.sha1()
    h.update(src.path.read_bytes())
    h.update(json.dumps([str(src.path), src.text, src.lang, cfg.content_settings(), asr_id, PLAN_VERSION]).encode())
    return h.hexdigest()[:20]


def cached_plan(ds: DatasetDir, src: SourceAudio, cfg: PrepareConfig, detector: SpeechDetector,
                transcriber: Transcriber | None, asr_id: str) -> list[PlannedItem]:
    """`plan_source`, memoised in DATASET/plans/ by audio content + transcript + settings."""
    path = ds.plans_dir / f"{_plan_key(src, cfg, asr_id)}.json"
    if path.is_file():
        return [PlannedItem(**p) for p in json.loads(path.read_text())]
    plan = plan_source(src, cfg, detector, transcriber)
    atomic_write_text(path, json.dumps([asdict(p) for p in plan], ensure_ascii=False, indent=1) + "\n")
    return plan


# ------------------------------------------------------------------------------ item building


def build_item(item: PlannedItem, wav: np.ndarray, sr: int, models: FeatureModels,
               cfg: PrepareConfig) -> tuple[dict[str, torch.Tensor], np.ndarray, dict[str, Any]]:
    """Features of one planned utterance: (tensors, 32 kHz wav, manifest fields)."""
    piece = wav[int(item.start * sr) : int(item.end * sr)]
    wav32 = normalise_loudness(resample(piece, sr, cfg.sample_rate), cfg.sample_rate, cfg.target_dbfs, cfg.peak_dbfs)
    wav16 = resample(wav32, cfg.sample_rate, cfg.ssl_sample_rate)
    ssl = models.ssl_features(wav16, item.text)
    semantic = models.semantic_tokens(ssl)
    spec = models.spectrogram(wav32)
    text = models.text_features(item.text, item.lang)
    tensors = {
        "phones": torch.tensor(text.phones, dtype=torch.long),
        "word2ph": torch.tensor(text.word2ph or [], dtype=torch.long),
        "ssl": ssl.half(),
        "semantic": semantic.long(),
        "spec": spec.float(),
    }
    if text.bert is not None:
        tensors["bert"] = text.bert.half()
    fields = {
        "norm_text": text.norm_text, "lang": text.lang, "n_phones": len(text.phones), "n_ssl": ssl.shape[-1],
        "n_semantic": semantic.numel(), "n_spec": spec.shape[-1], "has_bert": text.bert is not None,
    }
    return tensors, wav32, fields


def _check_dataset_identity(ds: DatasetDir, cfg: PrepareConfig, models: FeatureModels) -> None:
    """Refuse to mix items made with other settings or models into one dataset."""
    identity = {"prepare_config": cfg.content_settings(), "models": models.identity}
    path = ds.root / "dataset.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(identity)):
            raise DatasetError(
                f"'{ds.root}' was prepared with other settings or models ({path}); "
                "prepare into a new folder, or delete this one to start over.",
                code="dataset_mismatch",
            )
        return
    atomic_write_text(path, json.dumps(identity, indent=2, sort_keys=True) + "\n")
    cfg.save(ds.root / "prepare_config.json")


def _check_languages(sources: list[SourceAudio], cfg: PrepareConfig) -> None:
    """Fail before any work when a transcript language has no text frontend here."""
    for lang in sorted({s.lang or cfg.lang for s in sources}):
        try:
            check_language(lang)
        except FrontendError as exc:
            raise TranscriptError(f"Cannot prepare '{lang}' transcripts: {exc}", code="unsupported_language") from exc


def prepare_dataset(sources: list[SourceAudio], out_dir: Path, cfg: PrepareConfig, models: FeatureModels,
                    transcriber: Transcriber | None = None, asr_id: str = "", progress: bool = True) -> PrepareReport:
    """Build (or finish) the dataset in `out_dir`; returns the report (also saved as report.json)."""
    unlabelled = [s.path for s in sources if s.text is None]
    if unlabelled and transcriber is None:
        raise missing_transcript_error(unlabelled)
    _check_languages(sources, cfg)
    ds = DatasetDir(out_dir)
    ds.create()
    _check_dataset_identity(ds, cfg, models)
    detector = SpeechDetector(cfg.vad_threshold, cfg.min_silence_ms, cfg.speech_pad_ms, cfg.max_seconds)
    plans = [(src, cached_plan(ds, src, cfg, detector, transcriber, asr_id)) for src in sources]
    done = {it.id: it for it in ds.read_manifest()}
    report = PrepareReport(sources=len(sources))
    todo = sum(1 for _, plan in plans for p in plan if p.status == "ok" and p.id not in done)
    bar = _progress_bar(todo, progress)
    for src, plan in plans:
        wav, sr = None, 0
        for p in plan:
            if p.status != "ok":
                report.rejected.append({"source": p.source, "start": p.start, "end": p.end, "reason": p.status,
                                        "detail": p.detail, "text": p.text})
                continue
            if p.id not in done:
                if wav is None:
                    wav, sr = load_audio(src.path)
                try:
                    done[p.id] = _build_and_store(ds, p, wav, sr, models, cfg)
                except (FrontendError, BertAlignmentError, PhoneAlignError) as exc:
                    reason = "alignment_failed" if isinstance(exc, PhoneAlignError) else "bad_text"
                    report.rejected.append({"source": p.source, "start": p.start, "end": p.end,
                                            "reason": reason, "detail": str(exc), "text": p.text})
                    continue
                finally:
                    bar.update(1)
                report.new += 1
            report.accepted += 1
            report.kept_seconds += done[p.id].duration
    bar.close()
    atomic_write_text(ds.root / "report.json", json.dumps(asdict(report), ensure_ascii=False, indent=1) + "\n")
    if report.accepted == 0:
        raise DatasetError(
            f"No usable utterance was found in {len(sources)} recording(s): {report.summary()}. "
            "Check that the audio contains speech that is not clipped, and see report.json.",
            code="no_usable_audio",
        )
    log.info("prepared %s -> %s", report.summary(), out_dir)
    return report


def _build_and_store(ds: DatasetDir, p: PlannedItem, wav: np.ndarray, sr: int, models: FeatureModels,
                     cfg: PrepareConfig) -> ManifestItem:
    tensors, wav32, fields = build_item(p, wav, sr, models, cfg)
    wav_rel, feat_rel = ds.write_item(p.id, tensors, wav32, cfg.sample_rate)
    item = ManifestItem(id=p.id, source=p.source, start=p.start, end=p.end, text=p.text, wav=wav_rel,
                        features=feat_rel, **fields)
    ds.append_manifest(item)
    return item


def _progress_bar(total: int, enabled: bool):  # noqa: ANN202 - tqdm instance
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="prepare", unit="utt", disable=not enabled or total == 0)
