"""Find the audio to prepare and what is said in it.

Three ways to give transcripts, checked in this order:

1. a GPT-SoVITS list file, `wav|speaker|lang|text` per line (`--list`, or the only `*.list` at
   the top of a single input folder). Paths are tried as written, relative to the list file,
   relative to each input folder, then by file name among the input audio, because lists written
   on another machine usually carry that machine's absolute paths;
2. a `.txt` (or `.lab`) per audio file, beside it or in `--transcripts DIR`. A long recording may
   have one sentence per line: the slicer aligns the lines to the audio;
3. no transcript: an ASR model labels the slices (faster-whisper, optional, `--asr-model DIR`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from gpt_sovits.errors import GSVError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".opus", ".mp3"})
TRANSCRIPT_EXTENSIONS = (".txt", ".lab")
# List-file language tags (official uses upper case ZH/JP/EN/KO/YUE) -> our language codes.
_LANG_ALIASES = {
    "zh": "zh", "en": "en", "ja": "ja", "jp": "ja", "ko": "ko", "kr": "ko", "yue": "yue",
    "auto": "auto", "all_zh": "all_zh", "all_ja": "all_ja", "all_ko": "all_ko", "all_yue": "all_yue",
}


class TranscriptError(GSVError):
    """Transcripts are missing, malformed or do not match the audio; the message says what to fix."""

    code = "transcript_error"


@dataclass
class SourceAudio:
    """One input recording and its transcript (None = to be labelled by ASR)."""

    path: Path
    text: str | None = None
    lang: str | None = None


def normalise_lang(tag: str, where: str = "") -> str:
    """Map a list-file or CLI language tag onto our codes; unknown tags are an error."""
    lang = _LANG_ALIASES.get(tag.strip().lower())
    if lang is None:
        raise TranscriptError(
            f"Unknown language '{tag}'{where}; use one of {sorted(set(_LANG_ALIASES))} (case-insensitive).",
            code="unknown_language",
        )
    return lang


def scan_audio(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """Audio files named explicitly, and audio found by scanning input folders (sorted)."""
    explicit: list[Path] = []
    scanned: list[Path] = []
    for item in inputs:
        if item.is_dir():
            scanned.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS))
        elif item.is_file():
            explicit.append(item)
        else:
            raise TranscriptError(f"Input '{item}' does not exist.", code="input_not_found")
    return explicit, scanned


@dataclass
class ListEntry:
    line_no: int
    audio: str
    lang: str
    text: str


def parse_list_file(path: Path) -> list[ListEntry]:
    """Parse `wav|speaker|lang|text` lines; every malformed line is reported with its number."""
    if not path.is_file():
        raise TranscriptError(f"List file '{path}' does not exist.", code="input_not_found")
    entries: list[ListEntry] = []
    problems: list[str] = []
    for no, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not raw.strip():
            continue
        fields = raw.split("|", 3)
        if len(fields) != 4:
            problems.append(f"line {no}: expected 'wav|speaker|lang|text', got {len(fields)} field(s)")
            continue
        audio, _speaker, lang, text = (f.strip() for f in fields)
        if not audio or not text:
            problems.append(f"line {no}: empty {'audio path' if not audio else 'text'}")
            continue
        try:
            entries.append(ListEntry(no, audio, normalise_lang(lang, f" on line {no}"), text))
        except TranscriptError as exc:
            problems.append(str(exc))
    if problems:
        raise TranscriptError(f"List file '{path}' has {len(problems)} bad line(s): " + "; ".join(problems[:5]),
                              code="bad_list_file")
    if not entries:
        raise TranscriptError(f"List file '{path}' has no entries.", code="bad_list_file")
    return entries


def _resolve(entry: ListEntry, list_dir: Path, roots: list[Path], by_name: dict[str, list[Path]]) -> Path | None:
    raw = Path(entry.audio.replace("\\", "/"))
    for candidate in [raw, list_dir / raw, *(root / raw for root in roots)]:
        if candidate.is_file():
            return candidate
    matches = by_name.get(raw.name, [])
    return matches[0] if len(matches) == 1 else None


def sources_from_list(list_file: Path, inputs: list[Path]) -> list[SourceAudio]:
    """Resolve every list line to an audio file; unlisted explicit inputs are an error too."""
    entries = parse_list_file(list_file)
    explicit, scanned = scan_audio(inputs)
    by_name: dict[str, list[Path]] = {}
    for p in explicit + scanned:
        by_name.setdefault(p.name, []).append(p)
    roots = [p for p in inputs if p.is_dir()]
    sources: list[SourceAudio] = []
    missing: list[str] = []
    for entry in entries:
        path = _resolve(entry, list_file.parent, roots, by_name)
        if path is None:
            missing.append(f"line {entry.line_no}: '{entry.audio}'")
        else:
            sources.append(SourceAudio(path.resolve(), entry.text, entry.lang))
    if missing:
        raise TranscriptError(
            f"{len(missing)} audio file(s) named in '{list_file}' were not found: " + ", ".join(missing[:5])
            + ". Paths are tried as written, relative to the list file and the input folders, and by file name.",
            code="list_audio_missing",
        )
    listed = {s.path for s in sources}
    unlisted = [str(p) for p in explicit if p.resolve() not in listed]
    if unlisted:
        raise TranscriptError(
            f"Audio given on the command line has no line in '{list_file}': {', '.join(unlisted[:5])}. "
            "Add lines for them or leave them out.",
            code="audio_not_in_list",
        )
    if len({s.path for s in sources}) != len(sources):
        raise TranscriptError(f"'{list_file}' names the same audio file twice.", code="bad_list_file")
    return sources


def _read_transcript(audio: Path, transcripts_dir: Path | None) -> str | None:
    folders = [transcripts_dir] if transcripts_dir is not None else [audio.parent]
    for folder in folders:
        for ext in TRANSCRIPT_EXTENSIONS:
            candidate = folder / (audio.stem + ext)
            if candidate.is_file():
                text = candidate.read_text(encoding="utf-8-sig").strip()
                if not text:
                    raise TranscriptError(f"Transcript '{candidate}' is empty.", code="empty_transcript")
                return text
    return None


def collect_sources(
    inputs: list[Path], list_file: Path | None = None, transcripts_dir: Path | None = None, lang: str = "auto"
) -> list[SourceAudio]:
    """All recordings to prepare, with transcripts where they exist (text None otherwise)."""
    if not inputs and list_file is None:
        raise TranscriptError("Nothing to prepare: give audio files, a folder or --list FILE.list.",
                              code="input_not_found")
    if list_file is None and transcripts_dir is None and len(inputs) == 1 and inputs[0].is_dir():
        lists = sorted(inputs[0].glob("*.list"))
        if len(lists) == 1:
            log.info("using list file %s found in %s", lists[0].name, inputs[0])
            list_file = lists[0]
    if list_file is not None:
        return sources_from_list(list_file, inputs)
    if transcripts_dir is not None and not transcripts_dir.is_dir():
        raise TranscriptError(f"Transcript folder '{transcripts_dir}' does not exist.", code="input_not_found")
    explicit, scanned = scan_audio(inputs)
    audio = explicit + scanned
    if not audio:
        raise TranscriptError(f"No audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) in {[str(i) for i in inputs]}.",
                              code="no_audio")
    lang = normalise_lang(lang)
    return [SourceAudio(p.resolve(), _read_transcript(p, transcripts_dir), lang) for p in audio]


def missing_transcript_error(paths: list[Path]) -> TranscriptError:
    """The error raised when some audio has no transcript and no ASR model is configured."""
    shown = ", ".join(str(p) for p in paths[:5]) + (" ..." if len(paths) > 5 else "")
    return TranscriptError(
        f"No transcript for {len(paths)} audio file(s): {shown}. Provide one of: --list FILE.list "
        "(lines 'wav|speaker|lang|text'), a .txt beside each audio file (or in --transcripts DIR), "
        "or --asr-model DIR with a local faster-whisper model (pip install faster-whisper).",
        code="missing_transcript",
    )


# ------------------------------------------------------------------------------------ ASR


class Transcriber(Protocol):
    """Labels one 16 kHz slice: returns (text, language code)."""

    def transcribe(self, wav16k: np.ndarray, language: str | None) -> tuple[str, str]: ...


class WhisperTranscriber:
    """faster-whisper (CTranslate2) from a local model folder; imported only when used."""

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        if not Path(model_dir).is_dir():
            raise TranscriptError(
                f"ASR model folder '{model_dir}' does not exist. Download a faster-whisper model "
                "(e.g. Systran/faster-whisper-base) on a machine with internet and copy the folder here.",
                code="model_not_found",
            )
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise TranscriptError(
                "Automatic transcription needs faster-whisper: pip install faster-whisper "
                "(or give transcripts with --list / .txt files).",
                code="missing_dependency",
            ) from exc
        compute = "float16" if device.startswith("cuda") else "int8"
        self._model = WhisperModel(str(model_dir), device="cuda" if device.startswith("cuda") else "cpu",
                                   compute_type=compute)

    def transcribe(self, wav16k: np.ndarray, language: str | None) -> tuple[str, str]:
        whisper_lang = {"yue": "yue", "ja": "ja", "ko": "ko", "zh": "zh", "en": "en"}.get(language or "", None)
        segments, info = self._model.transcribe(
            np.asarray(wav16k, dtype=np.float32), language=whisper_lang, beam_size=5, vad_filter=False
        )
        text = "".join(s.text for s in segments).strip()
        return text, _LANG_ALIASES.get(str(info.language), "auto")
