"""Where the base-model corpus comes from: offline speech sources with transcripts and licences.

Every source can be installed from Debian `main` (or is a folder we already have) and yields
utterances lazily: `(speaker, text, how to load the audio)`. Nothing here resamples or writes;
`training.corpus` turns utterances into the corpus. A source that is not installed says so with
the exact `apt-get install` line (`missing()`), so `gsv corpus` can tell the user what to add.

Speakers carry a `person`: the human (or synthetic voice) behind them, shared across sources.
The same person appears in several places (Allison Smith recorded the English *and* Spanish
Asterisk prompts; ARCTIC SLT is both a festival and a flite voice), and held-out evaluation
speakers must be kept out of training in every one of them.

Sources:
- `asterisk-<lang>`: Asterisk core sounds (real voice talents, studio IVR prompts), G.722 audio
  decoded with PyAV; transcripts from the package's `core-sounds-<lang>.txt`.
- `gcin`: gcin-voice Mandarin syllables of two real speakers, concatenated into shipped sentences.
- `flite`, `festival`, `espeak-ng`: synthetic speakers reading the shipped sentences.
- `voices`: the project's one-minute voice folders (`clone.list` + `ref.txt`).
"""
from __future__ import annotations

import gzip
import json
import random
import re
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from gpt_sovits.audio import load_audio
from gpt_sovits.errors import GSVError

TEXTS_DIR = Path(__file__).resolve().parent / "corpus_texts"
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
GCIN_OGG = Path("/usr/share/gcin-voice/ogg")

# Voice folders (shared/data/voices) -> the person they record.
VOICE_PERSONS: dict[str, str] = {
    "en_allison": "allison-smith",
    "fr_june": "june-wallack",
    "zh_gcin_a": "chu-lo",
    "en_kal": "kal",
    "en_slt": "arctic-slt",
    "en_rms": "arctic-rms",
    "en_joe": "piper-joe",
}


class CorpusSourceError(GSVError):
    """A source's files are present but unreadable or malformed."""

    code = "corpus_source_error"


@dataclass(frozen=True)
class SourceInfo:
    """Provenance of one source, copied into the corpus manifest."""

    name: str
    kind: str
    """human | human-concatenated | synthetic."""
    licence: str
    attribution: str
    packages: tuple[str, ...] = ()
    """Debian packages that provide it (empty for local folders)."""
    copyright_files: tuple[str, ...] = ()
    notes: str = ""

    @property
    def install_hint(self) -> str:
        return f"apt-get install -y {' '.join(self.packages)}" if self.packages else ""


@dataclass(frozen=True)
class SpeakerInfo:
    id: str
    """Corpus speaker id (unique across sources), e.g. `ast-en-allison`."""
    person: str
    """Who this voice is, shared across sources (held-out decisions use it)."""
    lang: str
    gender: str
    source: str
    licence: str = ""
    """Set when it differs from the source's (per-speaker licences in gcin and voice folders)."""
    attribution: str = ""


@dataclass
class RawUtterance:
    """One utterance before processing: the audio is loaded only when needed."""

    speaker: SpeakerInfo
    text: str
    origin: str
    """Source file or render command, recorded for attribution ("changes were made")."""
    load: Callable[[], tuple[np.ndarray, int]] = field(repr=False)


class CorpusSource(Protocol):
    info: SourceInfo

    def missing(self) -> str | None:
        """None when usable; otherwise what is missing and how to install it."""

    def speakers(self) -> list[SpeakerInfo]: ...

    def utterances(self, speaker: SpeakerInfo, seed: int) -> Iterator[RawUtterance]:
        """Utterances of `speaker` in a seeded order (the builder stops when it has enough)."""


# --------------------------------------------------------------------------------- helpers


def load_texts(lang: str, directory: Path = TEXTS_DIR) -> list[str]:
    """Shipped sentences for `lang`: `corpus_texts/<lang>.txt` and then every
    `corpus_texts/<lang>_*.txt` (e.g. `en_templates.txt`), # comments skipped."""
    path = directory / f"{lang}.txt"
    if not path.is_file():
        raise CorpusSourceError(f"No shipped sentences for language '{lang}' ({path} is missing).")
    texts: list[str] = []
    for file in [path, *sorted(directory.glob(f"{lang}_*.txt"))]:
        lines = (line.strip() for line in file.read_text(encoding="utf-8").splitlines())
        texts.extend(line for line in lines if line and not line.startswith("#"))
    return texts


def package_version(package: str) -> str | None:
    """Installed Debian version of `package`, or None (also when dpkg is unavailable)."""
    if shutil.which("dpkg-query") is None:
        return None
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def _shuffled(items: list, seed: int, salt: str) -> list:
    out = list(items)
    random.Random(f"{seed}:{salt}").shuffle(out)
    return out


def _missing_message(info: SourceInfo, what: str) -> str:
    hint = f"; install it with: {info.install_hint}" if info.packages else ""
    return f"{what}{hint}"


# -------------------------------------------------------------------------------- asterisk


@dataclass(frozen=True)
class _AsteriskVoice:
    folder: str
    person: str
    gender: str
    licence: str
    attribution: str


_ASTERISK: dict[str, _AsteriskVoice] = {
    "en": _AsteriskVoice("en_US_f_Allison", "allison-smith", "f", "CC-BY-SA-3.0",
                         "Allison Smith (theivrvoice.com); Asterisk core sounds, Digium, Inc."),
    "es": _AsteriskVoice("es_MX_f_Allison", "allison-smith", "f", "CC-BY-SA-3.0",
                         "Allison Smith (theivrvoice.com); Asterisk core sounds, Digium, Inc."),
    "fr": _AsteriskVoice("fr_CA_f_June", "june-wallack", "f", "CC-BY-SA-3.0",
                         "June Wallack (junewallack.com); French translation by Clod Patry, Kristopher "
                         "Lalletti, June Wallack; Asterisk core sounds, Digium, Inc."),
    "it": _AsteriskVoice("it_IT_m_Carlo", "carlo-flora", "m", "CC-BY-3.0",
                         "Carlo Flora (carloflora.com, segreterietelefoniche.it); Asterisk core sounds"),
    "ru": _AsteriskVoice("ru_RU_f_IvrvoiceRU", "ivrvoice-ru", "f", "CC-BY-3.0",
                         "Maxim Topal (ivrvoice.ru); Asterisk core sounds"),
}
_BRACKETED = re.compile(r"\[[^\]]*\]")


def parse_asterisk_transcripts(text: str) -> dict[str, str]:
    """`key: transcript` lines -> {key: tidy text}; comments, tones ("[beep]") and empties dropped."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith(";") or ":" not in line:
            continue
        key, _, said = line.partition(":")
        if re.search(r"[()]", said):  # "(in inglese)": a note about the recording, not what is said
            continue
        said = _BRACKETED.sub(" ", said)
        said = re.sub(r"\s+", " ", said).strip().strip(".… ").strip()
        if not said or not re.search(r"\w", said):
            continue
        out[key.strip()] = said[0].upper() + said[1:] + ("" if said[-1] in "?!" else ".")
    return out


def decode_g722(path: Path) -> tuple[np.ndarray, int]:
    """Raw G.722 file -> float32 mono @ 16 kHz (PyAV's bundled FFmpeg decoder)."""
    try:
        import av
    except ImportError as exc:
        raise CorpusSourceError("Decoding Asterisk G.722 prompts needs PyAV: pip install av") from exc
    with av.open(str(path), format="g722") as container:
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
    pcm = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
    return (pcm.astype(np.float32) / 32768.0), 16000


class AsteriskSource:
    """Asterisk core sounds in one language: real voice talent, studio prompts with transcripts."""

    def __init__(self, lang: str, sounds_dir: Path = ASTERISK_SOUNDS, doc_dir: Path = Path("/usr/share/doc")) -> None:
        if lang not in _ASTERISK:
            raise ValueError(f"No Asterisk voice for '{lang}'; choose one of {sorted(_ASTERISK)}")
        self.lang = lang
        self.voice = _ASTERISK[lang]
        self.audio_dir = sounds_dir / self.voice.folder
        self.transcripts = doc_dir / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"
        self.info = SourceInfo(
            name=f"asterisk-{lang}", kind="human", licence=self.voice.licence,
            attribution=self.voice.attribution,
            packages=(f"asterisk-core-sounds-{lang}", f"asterisk-core-sounds-{lang}-g722"),
            copyright_files=(str(doc_dir / f"asterisk-core-sounds-{lang}" / "copyright"),),
            notes="IVR prompts (telephone style), G.722 16 kHz decoded with PyAV; transcripts from the package.",
        )

    def missing(self) -> str | None:
        if not self.transcripts.is_file() or not self.audio_dir.is_dir():
            return _missing_message(self.info, f"Asterisk {self.lang} prompts or transcripts not found")
        try:
            import av  # noqa: F401
        except ImportError:
            return "PyAV is needed to decode G.722: pip install av"
        return None

    def speakers(self) -> list[SpeakerInfo]:
        name = self.voice.folder.rsplit("_", 1)[-1].lower()
        return [SpeakerInfo(f"ast-{self.lang}-{name}", self.voice.person, self.lang, self.voice.gender, self.info.name)]

    def utterances(self, speaker: SpeakerInfo, seed: int) -> Iterator[RawUtterance]:
        table = parse_asterisk_transcripts(gzip.decompress(self.transcripts.read_bytes()).decode("utf-8"))
        for key in _shuffled(sorted(table), seed, speaker.id):
            path = self.audio_dir / f"{key}.g722"
            if path.is_file():
                yield RawUtterance(speaker, table[key], f"{self.info.packages[1]}:{path}",
                                   lambda p=path: decode_g722(p))


# ------------------------------------------------------------------------------------ gcin

_ZHUYIN_TONES = {"ˊ": "2", "ˇ": "3", "ˋ": "4", "˙": "1"}  # tone 1 has no mark; gcin names neutral "1"
_GCIN_SPEAKERS = {
    "5": ("chu-lo", "f", "CC-BY-3.0", "聲優 羅竺與徵音梅林開發委員會錄音組 (ChionMeilin with the vocal source from Chu Lo)"),
    "3": ("gcin-speaker-3", "m", "GPL-3.0-only OR LGPL-3.0-only", "gcin-voice speaker 3 (gcin project, Edward Der-Hua Liu)"),
}


def zhuyin_folder(syllable: str) -> tuple[str, str]:
    """pypinyin BOPOMOFO syllable ('ㄇㄣ˙') -> (gcin folder base 'ㄇㄣ', tone digit or '' for tone 1)."""
    tone = ""
    for mark, digit in _ZHUYIN_TONES.items():
        if mark in syllable:
            tone = digit
            syllable = syllable.replace(mark, "")
    return syllable, tone


def _gcin_syllable_file(root: Path, base: str, tone: str, speaker: str) -> Path | None:
    """The syllable recording, falling back to other tones (neutral/sandhi gaps) when missing."""
    for t in (tone, "", "2", "3", "4", "1"):
        path = root / f"{base}{t}" / f"{speaker}.ogg"
        if path.is_file():
            return path
    return None


def concatenate_syllables(clips: list[np.ndarray | None], sr: int, pause_s: float = 0.18, fade_s: float = 0.005) -> np.ndarray:
    """Join syllable clips with short cross-fades; `None` marks a pause (punctuation)."""
    fade = max(1, int(fade_s * sr))
    out = np.zeros(0, dtype=np.float32)
    for clip in clips:
        if clip is None:
            out = np.concatenate([out, np.zeros(int(pause_s * sr), dtype=np.float32)])
            continue
        clip = clip.astype(np.float32)
        if out.size >= fade and clip.size >= fade:
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            overlap = out[-fade:] * (1.0 - ramp) + clip[:fade] * ramp
            out = np.concatenate([out[:-fade], overlap, clip[fade:]])
        else:
            out = np.concatenate([out, clip])
    return out


class GcinSource:
    """gcin-voice: isolated Mandarin syllables of two real speakers, joined into sentences."""

    def __init__(self, root: Path = GCIN_OGG, texts: list[str] | None = None) -> None:
        self.root = root
        self._texts = texts
        self.info = SourceInfo(
            name="gcin", kind="human-concatenated",
            licence="speaker 5: CC-BY-3.0; speaker 3: GPL-3.0-only OR LGPL-3.0-only",
            attribution="; ".join(f"speaker {k}: {v[3]}" for k, v in _GCIN_SPEAKERS.items()),
            packages=("gcin-voice",), copyright_files=("/usr/share/doc/gcin-voice/copyright",),
            notes="Sentences are concatenated from single-syllable recordings (flat prosody, approximate "
                  "tone sandhi via pypinyin); changes were made.",
        )

    def missing(self) -> str | None:
        return None if self.root.is_dir() else _missing_message(self.info, f"gcin-voice syllables not found at {self.root}")

    def speakers(self) -> list[SpeakerInfo]:
        return [SpeakerInfo(f"gcin-{k}", v[0], "zh", v[1], self.info.name, v[2], v[3])
                for k, v in _GCIN_SPEAKERS.items()]

    def render(self, text: str, speaker_key: str) -> tuple[np.ndarray, int] | None:
        """Sentence audio at 32 kHz, or None when a syllable has no recording at all."""
        from pypinyin import Style, lazy_pinyin

        sr = 32000
        clips: list[np.ndarray | None] = []
        for token in lazy_pinyin(text, style=Style.BOPOMOFO, tone_sandhi=True):
            if not re.search(r"[\u3105-\u312f]", token):
                if re.search(r"[，。！？、；：,.!?;:]", token):
                    clips.append(None)
                continue
            base, tone = zhuyin_folder(token)
            path = _gcin_syllable_file(self.root, base, tone, speaker_key)
            if path is None:
                return None
            clips.append(load_audio(path, target_sr=sr)[0])
        while clips and clips[-1] is None:
            clips.pop()
        return concatenate_syllables(clips, sr), sr

    def utterances(self, speaker: SpeakerInfo, seed: int) -> Iterator[RawUtterance]:
        key = speaker.id.split("-", 1)[1]
        texts = self._texts if self._texts is not None else load_texts("zh")
        for text in _shuffled(texts, seed, speaker.id):
            rendered = self.render(text, key)
            if rendered is not None:
                yield RawUtterance(speaker, text, f"gcin-voice:*/{key}.ogg syllables", lambda r=rendered: r)


# ----------------------------------------------------------------------- synthetic voices


@dataclass(frozen=True)
class SynthVoice:
    """One synthetic speaker of a TTS engine."""

    key: str
    """The engine's voice name or variant (flite `rms`, festival `kal_diphone`, espeak `en-us+f2`)."""
    person: str
    lang: str
    gender: str
    package: str = ""
    """Debian package with the voice data (when separate from the engine)."""


class _RenderingSource(ABC):
    """A TTS engine reading the shipped sentences; subclasses build the command line."""

    binary: str
    voices: tuple[SynthVoice, ...]
    info: SourceInfo

    @abstractmethod
    def command(self, voice: SynthVoice, text_file: Path, out_wav: Path) -> list[str]:
        """The engine's command line that renders `text_file` with `voice` into `out_wav`."""

    def voice_available(self, voice: SynthVoice) -> bool:
        return True

    def missing(self) -> str | None:
        if shutil.which(self.binary) is None:
            return _missing_message(self.info, f"'{self.binary}' is not installed")
        if not any(self.voice_available(v) for v in self.voices):
            return _missing_message(self.info, f"no {self.info.name} voice is installed")
        return None

    def speakers(self) -> list[SpeakerInfo]:
        return [SpeakerInfo(f"{self.info.name}-{_slug(v.key)}", v.person, v.lang, v.gender, self.info.name)
                for v in self.voices if self.voice_available(v)]

    def render(self, voice: SynthVoice, text: str) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory(prefix="gsv-render-") as tmp:
            text_file, out_wav = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
            text_file.write_text(text + "\n", encoding="utf-8")
            proc = subprocess.run(self.command(voice, text_file, out_wav), capture_output=True, text=True, timeout=120)
            if proc.returncode != 0 or not out_wav.is_file():
                raise CorpusSourceError(f"{self.binary} failed for voice {voice.key}: {proc.stderr.strip()[:300]}")
            return load_audio(out_wav)

    def utterances(self, speaker: SpeakerInfo, seed: int) -> Iterator[RawUtterance]:
        voice = next(v for v in self.voices if speaker.id == f"{self.info.name}-{_slug(v.key)}")
        for text in _shuffled(load_texts(voice.lang), seed, speaker.id):
            origin = f"{self.binary} voice {voice.key}"
            yield RawUtterance(speaker, text, origin, lambda t=text: self.render(voice, t))


def _slug(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


class FliteSource(_RenderingSource):
    """CMU flite 2.2 voices (kal diphone, ARCTIC awb/rms/slt clustergen)."""

    def __init__(self, binary: str = "flite") -> None:
        self.binary = binary
        self.voices = (
            SynthVoice("kal16", "kal", "en", "m"),  # `kal` is the same voice at 8 kHz
            SynthVoice("awb", "arctic-awb", "en", "m"),
            SynthVoice("rms", "arctic-rms", "en", "m"),
            SynthVoice("slt", "arctic-slt", "en", "f"),
        )
        self.info = SourceInfo(
            name="flite", kind="synthetic", licence="flite licence (BSD-style, CMU)",
            attribution="CMU flite 2.2; voices from CMU ARCTIC (awb, rms, slt) and the KAL diphone set",
            packages=("flite",), copyright_files=("/usr/share/doc/flite/copyright",),
            notes="Renders the shipped English sentences.",
        )

    def command(self, voice: SynthVoice, text_file: Path, out_wav: Path) -> list[str]:
        return [self.binary, "-voice", voice.key, "-f", str(text_file), "-o", str(out_wav)]


class FestivalSource(_RenderingSource):
    """festival 2.5 with the festvox voices installed from Debian."""

    def __init__(self, binary: str = "text2wave", voices_dir: Path = Path("/usr/share/festival/voices")) -> None:
        self.binary = binary
        self.voices_dir = voices_dir
        self.voices = (
            SynthVoice("kal_diphone", "kal", "en", "m", "festvox-kallpc16k"),
            SynthVoice("ked_diphone", "ked", "en", "m", "festvox-kdlpc16k"),
            SynthVoice("cmu_us_slt_arctic_hts", "arctic-slt", "en", "f", "festvox-us-slt-hts"),
        )
        self.info = SourceInfo(
            name="festival", kind="synthetic", licence="festival/festvox licence (BSD-style, CSTR/CMU)",
            attribution="festival 2.5 (CSTR, University of Edinburgh) with festvox voices (CMU)",
            packages=("festival",) + tuple(v.package for v in self.voices),
            copyright_files=("/usr/share/doc/festival/copyright",)
            + tuple(f"/usr/share/doc/{v.package}/copyright" for v in self.voices),
            notes="Renders the shipped English sentences.",
        )

    def voice_available(self, voice: SynthVoice) -> bool:
        return any(self.voices_dir.glob(f"*/{voice.key}"))

    def command(self, voice: SynthVoice, text_file: Path, out_wav: Path) -> list[str]:
        return [self.binary, "-eval", f"(voice_{voice.key})", str(text_file), "-o", str(out_wav)]


class EspeakSource(_RenderingSource):
    """espeak-ng formant synthesis; voice variants act as distinct (robotic) speakers."""

    def __init__(self, binary: str = "espeak-ng", voices: tuple[SynthVoice, ...] | None = None) -> None:
        self.binary = binary
        self.voices = voices or (
            SynthVoice("en-us+m3", "espeak-en-us-m3", "en", "m"),
            SynthVoice("en-us+f2", "espeak-en-us-f2", "en", "f"),
            SynthVoice("en-gb-x-rp+m1", "espeak-en-gb-rp-m1", "en", "m"),
            SynthVoice("en-us+f4", "espeak-en-us-f4", "en", "f"),
            SynthVoice("cmn+m3", "espeak-cmn-m3", "zh", "m"),
            SynthVoice("cmn+f2", "espeak-cmn-f2", "zh", "f"),
        )
        self.info = SourceInfo(
            name="espeak-ng", kind="synthetic", licence="GPL-3.0-or-later (engine and data; covers the software)",
            attribution="eSpeak NG", packages=("espeak-ng",),
            copyright_files=("/usr/share/doc/espeak-ng-data/copyright",),
            notes="Renders the shipped sentences (en, zh). Formant synthesis: very robotic.",
        )

    def command(self, voice: SynthVoice, text_file: Path, out_wav: Path) -> list[str]:
        return [self.binary, "-v", voice.key, "-f", str(text_file), "-w", str(out_wav)]


# ----------------------------------------------------------------------- voice folders


class VoiceFoldersSource:
    """The project's voice folders (`clone.list`, `ref.flac` + `ref.txt`, `meta.json`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.info = SourceInfo(
            name="voices", kind="mixed", licence="per voice (see speakers[].licence)",
            attribution="per voice (see speakers[].attribution)",
            copyright_files=(str(self.root / "LICENSES"),), notes=f"voice folders under {self.root}",
        )

    def _folders(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if (p / "clone.list").is_file()) if self.root.is_dir() else []

    def missing(self) -> str | None:
        return None if self._folders() else f"no voice folders with clone.list under {self.root}"

    def voice_meta(self, voice_id: str) -> dict:
        path = self.root / voice_id / "meta.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def speakers(self) -> list[SpeakerInfo]:
        out = []
        for folder in self._folders():
            meta = self.voice_meta(folder.name)
            out.append(SpeakerInfo(
                f"voice-{folder.name}", VOICE_PERSONS.get(folder.name, folder.name), _list_lang(folder / "clone.list"),
                "?", self.info.name, str(meta.get("licence", "unknown: see the voice folder")),
                str(meta.get("attribution", "")),
            ))
        return out

    def utterances(self, speaker: SpeakerInfo, seed: int) -> Iterator[RawUtterance]:
        folder = self.root / speaker.id.removeprefix("voice-")
        items: list[tuple[Path, str]] = []
        for line in (folder / "clone.list").read_text(encoding="utf-8").splitlines():
            parts = line.split("|", 3)
            if len(parts) == 4:
                items.append((folder / parts[0], parts[3].strip()))
        if (folder / "ref.flac").is_file() and (folder / "ref.txt").is_file():
            items.append((folder / "ref.flac", (folder / "ref.txt").read_text(encoding="utf-8").strip()))
        for path, text in _shuffled(items, seed, speaker.id):
            yield RawUtterance(speaker, text, str(path), lambda p=path: load_audio(p))


def _list_lang(list_file: Path) -> str:
    for line in list_file.read_text(encoding="utf-8").splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4:
            return parts[2].strip().lower()
    return "auto"


def read_test_sentences(voices_root: Path) -> dict[str, list[str]]:
    """{voice id: held-out sentences from its test.txt} for every voice folder under the root."""
    out: dict[str, list[str]] = {}
    if not Path(voices_root).is_dir():
        return out
    for folder in sorted(Path(voices_root).iterdir()):
        test = folder / "test.txt"
        if test.is_file():
            out[folder.name] = [s.strip() for s in test.read_text(encoding="utf-8").splitlines() if s.strip()]
    return out


def default_sources(voices_root: Path | None = None) -> list[CorpusSource]:
    """Every known source, in build order (installed or not: `missing()` tells)."""
    sources: list[CorpusSource] = [AsteriskSource(lang) for lang in ("en", "fr", "es", "it", "ru")]
    sources += [GcinSource(), FliteSource(), FestivalSource(), EspeakSource()]
    if voices_root is not None:
        sources.append(VoiceFoldersSource(voices_root))
    return sources
