"""`gsv corpus build`: a multi-speaker corpus with transcripts and licences for our own base model.

Sources (`training.corpus_sources`) yield raw utterances; each is trimmed at the edges,
loudness-normalised, checked for length and written as 16-bit FLAC at its own rate (at most
`max_sample_rate`; training resamples later). The output folder:

    audio/<speaker>/<n>.flac
    train.list, heldout.list            wav|speaker|lang|text for zh/en (the text frontend's languages)
    train_other.list, heldout_other.list  same format, other languages: audio-only use
                                          (content encoder, speaker diversity), not `gsv prepare`
    utterances.jsonl                    one record per utterance, with its origin
    manifest.json                       sources (licence, attribution, packages + versions),
                                        speakers (person, split), held-out set and why, counts
    LICENSES/                           the copyright files of the Debian packages used

Held-out persons never enter the train lists, in any source (a person can appear in several:
Allison Smith recorded the English and Spanish prompts). Sentences of the evaluation voices'
`test.txt` are dropped everywhere, so `gsv eval` never scores text the model saw.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from gpt_sovits.audio import resample
from gpt_sovits.config import JsonConfig
from gpt_sovits.errors import GSVError
from training.corpus_sources import (
    CorpusSource,
    CorpusSourceError,
    RawUtterance,
    SpeakerInfo,
    package_version,
    read_test_sentences,
)
from training.slicing import active_rms_dbfs, normalise_loudness

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
FRONTEND_LANGS = frozenset({"zh", "en"})
DEFAULT_HELDOUT = ("allison-smith", "arctic-slt", "arctic-rms", "piper-joe")
HELDOUT_WHY = (
    "Zero-shot evaluation voices: Allison Smith (the only real English voice: en_allison, also the Spanish "
    "Asterisk prompts), ARCTIC SLT (en_slt; festival HTS and flite slt), ARCTIC RMS (en_rms; flite rms) and "
    "piper joe (en_joe, not a corpus source). They cover a real female, a synthetic female, a synthetic male "
    "and a neural voice. en_kal, fr_june and zh_gcin_a stay in training and are evaluated as seen speakers."
)


class CorpusError(GSVError):
    """The corpus cannot be built as asked (output folder in use, nothing usable, bad options)."""

    code = "corpus_error"


@dataclass
class CorpusConfig(JsonConfig):
    """How `gsv corpus build` selects and processes utterances."""

    heldout_persons: list[str] = field(default_factory=lambda: list(DEFAULT_HELDOUT))
    """Persons kept out of training (their utterances go to heldout*.list only)."""
    max_utts_per_speaker: int = 400
    """Cap per training speaker (0 = everything the source has)."""
    heldout_utts_per_speaker: int = 20
    """Cap per held-out speaker: enough for validation losses and similarity checks."""
    min_seconds: float = 0.6
    """Shorter utterances (after trimming) are dropped: single words teach little."""
    max_seconds: float = 15.0
    """Longer utterances are dropped (training crops are far shorter)."""
    max_sample_rate: int = 32000
    """Audio above this rate is resampled down; lower rates are kept (no fake bandwidth)."""
    target_dbfs: float = -20.0
    """Active-speech RMS after normalisation."""
    peak_dbfs: float = -1.0
    """Peak ceiling after normalisation."""
    silence_dbfs: float = -55.0
    """Utterances whose active RMS is below this are dropped as silent."""
    trim_db: float = 40.0
    """Edge trimming: frames quieter than the loudest frame minus this count as silence."""
    edge_margin_s: float = 0.1
    """Silence kept before and after the speech."""
    seed: int = 0
    """Order in which each speaker's utterances are drawn (caps take a random subset)."""


@dataclass
class UtteranceRecord:
    id: str
    speaker: str
    person: str
    lang: str
    split: str
    text: str
    path: str
    """Relative to the corpus folder."""
    seconds: float
    sample_rate: int
    origin: str


@dataclass
class CorpusReport:
    out_dir: Path
    utterances: list[UtteranceRecord] = field(default_factory=list)
    skipped_sources: dict[str, str] = field(default_factory=dict)
    rejected: Counter = field(default_factory=Counter)

    def seconds(self, split: str) -> float:
        return sum(u.seconds for u in self.utterances if u.split == split)

    def summary(self) -> str:
        lines = [f"corpus at {self.out_dir}"]
        for split in ("train", "heldout"):
            items = [u for u in self.utterances if u.split == split]
            speakers = {u.speaker for u in items}
            lines.append(f"  {split}: {len(items)} utterances, {len(speakers)} speakers, "
                         f"{self.seconds(split) / 60:.1f} min")
        if self.rejected:
            lines.append("  dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())))
        for name, why in self.skipped_sources.items():
            lines.append(f"  source {name} skipped: {why}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ processing


def text_key(text: str) -> str:
    """Comparison key for sentences: case, punctuation and spacing ignored."""
    norm = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\W_]+", "", norm)


def trim_edges(x: np.ndarray, sr: int, threshold_db: float = 40.0, margin_s: float = 0.1) -> np.ndarray:
    """Cut leading/trailing frames quieter than (loudest frame - threshold_db), keeping a margin."""
    hop = max(1, int(0.01 * sr))
    n = len(x) // hop
    if n == 0:
        return x
    power = np.mean(np.asarray(x[: n * hop], dtype=np.float64).reshape(n, hop) ** 2, axis=1)
    if power.max() <= 0:
        return x[:0]
    db = 10 * np.log10(np.maximum(power, 1e-20))
    loud = np.flatnonzero(db >= db.max() - threshold_db)
    margin = int(margin_s * sr)
    start = max(0, loud[0] * hop - margin)
    end = min(len(x), (loud[-1] + 1) * hop + margin)
    return x[start:end]


def process_audio(wav: np.ndarray, sr: int, cfg: CorpusConfig) -> tuple[np.ndarray | None, int, str]:
    """(processed audio or None, rate, verdict): resample down, trim, check, normalise."""
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1:
        x = x.mean(axis=1)
    if not np.isfinite(x).all():
        return None, sr, "non_finite"
    if sr > cfg.max_sample_rate:
        x, sr = resample(x, sr, cfg.max_sample_rate), cfg.max_sample_rate
    x = trim_edges(x, sr, cfg.trim_db, cfg.edge_margin_s)
    seconds = len(x) / sr
    if seconds < cfg.min_seconds:
        return None, sr, "too_short"
    if seconds > cfg.max_seconds:
        return None, sr, "too_long"
    if active_rms_dbfs(x, sr) < cfg.silence_dbfs:
        return None, sr, "silent"
    return normalise_loudness(x, sr, cfg.target_dbfs, cfg.peak_dbfs), sr, "ok"


# --------------------------------------------------------------------------------- building


@dataclass
class _Build:
    """Mutable state of one build: what was written, what was seen."""

    out_dir: Path
    cfg: CorpusConfig
    excluded: set[str]
    report: CorpusReport
    seen: set[tuple[str, str]] = field(default_factory=set)
    speakers: dict[str, dict] = field(default_factory=dict)
    written: Counter = field(default_factory=Counter)
    """Utterances written per speaker id (numbers the files)."""


def _take(build: _Build, utt: RawUtterance, split: str) -> bool:
    """Process and store one utterance; False when it was dropped."""
    key = text_key(utt.text)
    if key in build.excluded:
        build.report.rejected["eval_sentence"] += 1
        return False
    if (utt.speaker.person, key) in build.seen:
        build.report.rejected["duplicate"] += 1
        return False
    try:
        wav, sr = utt.load()
    except (CorpusSourceError, OSError, ValueError) as exc:
        log.warning("could not load %s: %s", utt.origin, exc)
        build.report.rejected["unreadable"] += 1
        return False
    audio, sr, verdict = process_audio(wav, sr, build.cfg)
    if audio is None:
        build.report.rejected[verdict] += 1
        return False
    build.seen.add((utt.speaker.person, key))
    n = build.written[utt.speaker.id]
    build.written[utt.speaker.id] += 1
    rel = Path("audio") / utt.speaker.id / f"{n:05d}.flac"
    (build.out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(build.out_dir / rel, audio, sr, subtype="PCM_16")
    build.report.utterances.append(UtteranceRecord(
        id=f"{utt.speaker.id}/{n:05d}", speaker=utt.speaker.id, person=utt.speaker.person, lang=utt.speaker.lang,
        split=split, text=utt.text, path=rel.as_posix(), seconds=round(len(audio) / sr, 3), sample_rate=sr,
        origin=utt.origin,
    ))
    return True


def _build_speaker(build: _Build, source: CorpusSource, speaker: SpeakerInfo) -> None:
    split = "heldout" if speaker.person in build.cfg.heldout_persons else "train"
    cap = build.cfg.heldout_utts_per_speaker if split == "heldout" else build.cfg.max_utts_per_speaker
    kept = 0
    if cap != 0 or split == "train":
        for utt in source.utterances(speaker, build.cfg.seed):
            if cap and kept >= cap:
                break
            kept += _take(build, utt, split)
    build.speakers[speaker.id] = {
        **asdict(speaker), "split": split, "licence": speaker.licence or source.info.licence,
        "attribution": speaker.attribution or source.info.attribution, "utterances": kept,
    }
    log.info("%s: %d utterances (%s)", speaker.id, kept, split)


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise CorpusError(f"Output folder '{out_dir}' is not empty; choose another or pass --overwrite.")
        if not (out_dir / "manifest.json").is_file():
            raise CorpusError(f"Refusing to overwrite '{out_dir}': it is not a corpus folder (no manifest.json).")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def build_corpus(
    out_dir: Path,
    sources: list[CorpusSource],
    cfg: CorpusConfig | None = None,
    eval_voices: Path | None = None,
    overwrite: bool = False,
    on_speaker: Callable[[str], None] | None = None,
) -> CorpusReport:
    """Build the corpus from every usable source; unusable ones are listed with how to install them.

    `eval_voices` is a voice-folder root whose `test.txt` sentences are excluded from the corpus.
    Raises `CorpusError` when no source is usable or nothing survives the checks.
    """
    cfg = cfg or CorpusConfig()
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    excluded = {text_key(s) for lines in read_test_sentences(eval_voices).values() for s in lines} if eval_voices else set()
    build = _Build(out_dir, cfg, excluded, CorpusReport(out_dir))
    used: list[CorpusSource] = []
    for source in sources:
        why = source.missing()
        if why is not None:
            build.report.skipped_sources[source.info.name] = why
            log.warning("source %s skipped: %s", source.info.name, why)
            continue
        used.append(source)
        for speaker in source.speakers():
            if on_speaker is not None:
                on_speaker(speaker.id)
            _build_speaker(build, source, speaker)
    if not used:
        raise CorpusError("No corpus source is usable:\n" + "\n".join(
            f"  {name}: {why}" for name, why in build.report.skipped_sources.items()))
    if not build.report.utterances:
        raise CorpusError(f"Every utterance was dropped ({dict(build.report.rejected)}); check the sources.")
    _write_outputs(build, used)
    return build.report


# ---------------------------------------------------------------------------------- outputs


def _list_line(u: UtteranceRecord) -> str:
    text = " ".join(u.text.replace("|", " ").split())
    return f"{u.path}|{u.speaker}|{u.lang}|{text}"


def _write_lists(build: _Build) -> dict[str, int]:
    counts: dict[str, int] = {}
    for split in ("train", "heldout"):
        for suffix, keep in (("", lambda u: u.lang in FRONTEND_LANGS), ("_other", lambda u: u.lang not in FRONTEND_LANGS)):
            rows = [_list_line(u) for u in build.report.utterances if u.split == split and keep(u)]
            name = f"{split}{suffix}.list"
            (build.out_dir / name).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
            counts[name] = len(rows)
    return counts


def _copy_licences(build: _Build, used: list[CorpusSource]) -> list[str]:
    target = build.out_dir / "LICENSES"
    target.mkdir(exist_ok=True)
    copied = []
    for source in used:
        for name in source.info.copyright_files:
            path = Path(name)
            if path.is_file():
                dest = target / f"{path.parent.name}.copyright"
                shutil.copyfile(path, dest)
                copied.append(dest.name)
            elif path.is_dir():
                for item in sorted(p for p in path.iterdir() if p.is_file()):
                    shutil.copyfile(item, target / item.name)
                    copied.append(item.name)
    return sorted(set(copied))


def _source_entry(source: CorpusSource, build: _Build) -> dict:
    info = source.info
    items = [u for u in build.report.utterances if build.speakers[u.speaker]["source"] == info.name]
    return {
        **asdict(info), "install": info.install_hint,
        "package_versions": {p: package_version(p) for p in info.packages},
        "utterances": len(items), "minutes": round(sum(u.seconds for u in items) / 60, 2),
    }


def _write_outputs(build: _Build, used: list[CorpusSource]) -> None:
    out = build.out_dir
    with open(out / "utterances.jsonl", "w", encoding="utf-8") as f:
        for u in build.report.utterances:
            f.write(json.dumps(asdict(u), ensure_ascii=False) + "\n")
    lists = _write_lists(build)
    for sid, entry in build.speakers.items():
        entry["seconds"] = round(sum(u.seconds for u in build.report.utterances if u.speaker == sid), 2)
    manifest = {
        "format": "gsv-corpus", "version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": build.cfg.to_dict(),
        "heldout": {"persons": list(build.cfg.heldout_persons), "why": HELDOUT_WHY},
        "sources": [_source_entry(s, build) for s in used],
        "skipped_sources": dict(build.report.skipped_sources),
        "speakers": build.speakers,
        "lists": lists,
        "rejected": dict(build.report.rejected),
        "totals": {split: {"utterances": sum(1 for u in build.report.utterances if u.split == split),
                           "minutes": round(build.report.seconds(split) / 60, 2)} for split in ("train", "heldout")},
        "licences_dir": _copy_licences(build, used),
        "notes": "Redistributing audio or weights derived from CC-BY-SA sources (asterisk en/es/fr) may carry "
                 "ShareAlike obligations; check speakers[].licence before shipping.",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def load_manifest(corpus_dir: Path) -> dict:
    path = Path(corpus_dir) / "manifest.json"
    if not path.is_file():
        raise CorpusError(f"'{corpus_dir}' is not a corpus folder (no manifest.json); build one with `gsv corpus build`.")
    return json.loads(path.read_text(encoding="utf-8"))


def corpus_audio(corpus_dir: Path, split: str = "train") -> list[Path]:
    """Audio of every utterance of a split, all languages (what the content encoder trains on)."""
    corpus_dir = Path(corpus_dir)
    load_manifest(corpus_dir)
    paths = []
    with open(corpus_dir / "utterances.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["split"] == split:
                paths.append(corpus_dir / record["path"])
    return paths
