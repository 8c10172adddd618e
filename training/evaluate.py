"""`gsv eval`: how good is a model at cloning? Speaker similarity, intelligibility and speed.

For every voice folder (`ref.flac` + `ref.txt` as the prompt, `clone.flac` as the voice's own
audio, `test.txt` as held-out sentences) and every system (zero-shot base weights, per-voice
fine-tuned weights) we synthesize each sentence and measure:

- similarity: cosine of GE2E embeddings (`speaker_encoder`) between the synthesis and the
  voice's own recording;
- intelligibility: WER (CER for Chinese) of an offline recogniser's transcript against the
  sentence: pocketsphinx's bundled en-us model for English, or faster-whisper from a local
  model folder for any language;
- real-time factor: synthesis wall time / audio duration (after one untimed warm-up call).

The baseline is the same similarity between the voices' own recordings: `same` (ref.flac of
the voice vs its clone.flac) is what a real recording scores, and `bar` (the best *other* voice's
ref.flac against this voice's clone.flac) is what a clone must beat to sound more like the
voice than a different speaker does.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gpt_sovits.audio import load_audio, resample
from gpt_sovits.errors import GSVError

if TYPE_CHECKING:
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.pipeline import SynthesisParams

log = logging.getLogger(__name__)

SYNTH_LANGS = frozenset({"en", "zh"})
"""Languages the text frontend can synthesize (voices in others are skipped with a reason)."""


class EvalError(GSVError):
    """The evaluation cannot run as asked (missing voice files, unknown recogniser, ...)."""

    code = "eval_error"


# ------------------------------------------------------------------------------ text metrics


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions + deletions + insertions), one row of memory."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass
class ErrorCount:
    """Edit errors against a reference of `length` tokens; rates add up by summing both."""

    errors: int = 0
    length: int = 0

    @property
    def rate(self) -> float:
        return self.errors / self.length if self.length else float(self.errors > 0)

    def __add__(self, other: ErrorCount) -> ErrorCount:
        return ErrorCount(self.errors + other.errors, self.length + other.length)


_EN_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _spell_numbers_en(text: str) -> str:
    import inflect

    engine = inflect.engine()
    return _EN_NUMBER.sub(lambda m: " " + engine.number_to_words(m.group(0), andword="") + " ", text)


def _spell_numbers_zh(text: str) -> str:
    import cn2an

    return re.sub(r"\d+", lambda m: cn2an.an2cn(m.group(0)), text)


def normalize_text(text: str, lang: str) -> str:
    """Lower case, digits spelled out, punctuation and hyphens removed, single spaces.

    Recognisers write "6" or "six", "it's" or "it is" inconsistently; spelling digits out on
    both sides keeps those from counting as errors. Apostrophes inside words are kept.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    if lang == "en":
        text = _spell_numbers_en(text)
    elif lang == "zh":
        text = _spell_numbers_zh(text)
    text = re.sub(r"[-‐‑–—]", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


def word_errors(ref: str, hyp: str, lang: str = "en") -> ErrorCount:
    r, h = normalize_text(ref, lang).split(), normalize_text(hyp, lang).split()
    return ErrorCount(edit_distance(r, h), len(r))


def char_errors(ref: str, hyp: str, lang: str = "zh") -> ErrorCount:
    r, h = normalize_text(ref, lang).replace(" ", ""), normalize_text(hyp, lang).replace(" ", "")
    return ErrorCount(edit_distance(r, h), len(r))


def error_metric(lang: str) -> str:
    """CER for scripts without word spaces, WER otherwise."""
    return "cer" if lang in ("zh", "ja", "yue") else "wer"


def text_errors(ref: str, hyp: str, lang: str) -> ErrorCount:
    return char_errors(ref, hyp, lang) if error_metric(lang) == "cer" else word_errors(ref, hyp, lang)


# ------------------------------------------------------------------------------ recognisers


class Recognizer(Protocol):
    name: str

    def supports(self, lang: str) -> bool: ...

    def transcribe(self, wav16k: np.ndarray, lang: str) -> str: ...


class PocketSphinxRecognizer:
    """CMU pocketsphinx with the en-us model bundled in its PyPI wheel (English only)."""

    name = "pocketsphinx-en-us"

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise EvalError("pocketsphinx is not installed: pip install pocketsphinx "
                            "(its wheel bundles the en-us model), or use --asr whisper/none.",
                            code="missing_dependency") from exc
        self._decoder = Decoder(samprate=16000, logfn="/dev/null")

    def supports(self, lang: str) -> bool:
        return lang == "en"

    def transcribe(self, wav16k: np.ndarray, lang: str) -> str:
        pcm = (np.clip(np.asarray(wav16k, dtype=np.float32), -1, 1) * 32767).astype("<i2").tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


class WhisperRecognizer:
    """faster-whisper from a local model folder (any language it knows)."""

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        from training.transcripts import WhisperTranscriber

        self.name = f"faster-whisper:{Path(model_dir).name}"
        self._asr = WhisperTranscriber(Path(model_dir), device)

    def supports(self, lang: str) -> bool:
        return True

    def transcribe(self, wav16k: np.ndarray, lang: str) -> str:
        return self._asr.transcribe(wav16k, lang)[0]


def make_recognizer(kind: str, model_dir: Path | None = None, device: str = "cpu") -> Recognizer | None:
    """`pocketsphinx`, `whisper` (needs model_dir), `none`, or `auto` (whisper if a folder is
    given, else pocketsphinx when installed, else none)."""
    if kind == "auto":
        if model_dir is not None:
            kind = "whisper"
        else:
            try:
                return PocketSphinxRecognizer()
            except EvalError:
                log.warning("no recogniser: pip install pocketsphinx or pass --asr-model; WER/CER skipped")
                return None
    if kind == "none":
        return None
    if kind == "pocketsphinx":
        return PocketSphinxRecognizer()
    if kind == "whisper":
        if model_dir is None:
            raise EvalError("--asr whisper needs --asr-model DIR (a local faster-whisper model folder).")
        return WhisperRecognizer(model_dir, device)
    raise EvalError(f"Unknown recogniser '{kind}'; choose auto, pocketsphinx, whisper or none.")


# ----------------------------------------------------------------------------------- voices


@dataclass
class EvalVoice:
    id: str
    lang: str
    ref: np.ndarray
    ref_sr: int
    ref_text: str
    own: np.ndarray
    """The voice's own recording that syntheses are compared with (clone.flac)."""
    own_sr: int
    sentences: list[str]


def load_voice(folder: Path) -> EvalVoice:
    """Read a voice folder; every missing file is named in the error."""
    folder = Path(folder)
    needed = ["ref.flac", "ref.txt", "clone.flac", "clone.list", "test.txt"]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise EvalError(f"Voice folder '{folder}' lacks {', '.join(missing)} (layout: shared/data/voices/README.md).")
    lang = "auto"
    for line in (folder / "clone.list").read_text(encoding="utf-8").splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4:
            lang = parts[2].strip().lower()
            break
    ref, ref_sr = load_audio(folder / "ref.flac")
    own, own_sr = load_audio(folder / "clone.flac")
    sentences = [s.strip() for s in (folder / "test.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
    return EvalVoice(folder.name, lang, ref, ref_sr, (folder / "ref.txt").read_text(encoding="utf-8").strip(),
                     own, own_sr, sentences)


# ------------------------------------------------------------------------------- similarity


class SimilarityJudge:
    """GE2E embeddings (cached per key) and their cosine."""

    def __init__(self, weights: Path | None = None) -> None:
        import dataclasses

        import speaker_encoder

        self._model, config = speaker_encoder.load(weights)
        # Same weights without VAD trimming: audio the VAD finds no speech in (a broken clone)
        # still gets a (low) score instead of none at all.
        self._untrimmed = speaker_encoder.Model(dataclasses.replace(config, trim_silence=False))
        self._untrimmed.load_state_dict(self._model.state_dict())
        self._untrimmed.eval()
        self._cosine = speaker_encoder.cosine
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, wav: np.ndarray, sr: int, key: str | None = None) -> np.ndarray | None:
        """Embedding, or None when the audio is empty or digital silence."""
        if key is not None and key in self._cache:
            return self._cache[key]
        try:
            emb = self._model.embed(wav, sr)
        except ValueError:
            try:
                emb = self._untrimmed.embed(wav, sr)
            except ValueError:
                return None
        if key is not None:
            self._cache[key] = emb
        return emb

    def similarity(self, a: np.ndarray | None, b: np.ndarray | None) -> float | None:
        return None if a is None or b is None else float(self._cosine(a, b))


@dataclass
class Baseline:
    """Similarity between the voices' own recordings: ref (rows) x own audio (columns)."""

    voices: list[str]
    matrix: list[list[float | None]]

    def same(self, voice: str) -> float | None:
        i = self.voices.index(voice)
        return self.matrix[i][i]

    def bar(self, voice: str) -> float | None:
        """Highest similarity of any other voice's ref to this voice's own audio."""
        j = self.voices.index(voice)
        others = [row[j] for i, row in enumerate(self.matrix) if i != j and row[j] is not None]
        return max(others) if others else None

    def summary(self) -> dict[str, float | None]:
        n = len(self.voices)
        diag = [self.matrix[i][i] for i in range(n) if self.matrix[i][i] is not None]
        off = [self.matrix[i][j] for i in range(n) for j in range(n) if i != j and self.matrix[i][j] is not None]
        return {"same_mean": _mean(diag), "different_mean": _mean(off), "different_max": max(off) if off else None}


def baseline_similarity(voices: list[EvalVoice], judge: SimilarityJudge) -> Baseline:
    refs = [judge.embed(v.ref, v.ref_sr, f"ref:{v.id}") for v in voices]
    owns = [judge.embed(v.own, v.own_sr, f"own:{v.id}") for v in voices]
    return Baseline([v.id for v in voices], [[judge.similarity(r, o) for o in owns] for r in refs])


# --------------------------------------------------------------------------------- synthesis


@dataclass
class SentenceResult:
    text: str
    hypothesis: str | None = None
    errors: int | None = None
    words: int | None = None
    similarity: float | None = None
    audio_seconds: float = 0.0
    synth_seconds: float = 0.0
    error: str | None = None

    @property
    def rtf(self) -> float | None:
        return self.synth_seconds / self.audio_seconds if self.audio_seconds > 0 else None


@dataclass
class VoiceResult:
    system: str
    voice: str
    lang: str
    metric: str
    sentences: list[SentenceResult] = field(default_factory=list)
    skipped: str | None = None
    sampling: dict[str, float] = field(default_factory=dict)
    """The GPT knobs this system decoded with, unset request knobs resolved from its model config."""

    @property
    def error_rate(self) -> float | None:
        counted = [s for s in self.sentences if s.errors is not None]
        if not counted:
            return None
        total = sum((ErrorCount(s.errors or 0, s.words or 0) for s in counted), ErrorCount())
        return total.rate

    @property
    def similarity(self) -> float | None:
        return _mean([s.similarity for s in self.sentences if s.similarity is not None])

    @property
    def rtf(self) -> float | None:
        audio = sum(s.audio_seconds for s in self.sentences)
        return sum(s.synth_seconds for s in self.sentences) / audio if audio > 0 else None


@dataclass
class System:
    """A named way to get the bundle for a voice (None = no weights for that voice: skipped)."""

    name: str
    bundle_for: Callable[[str], "ModelBundle | None"]


def _synthesize_sentence(synth, voice_prompt, text: str, params: "SynthesisParams") -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    audio = synth.synthesize(text, voice_prompt, params)
    return audio, time.perf_counter() - start


def _score_sentence(result: SentenceResult, audio: np.ndarray, sr: int, voice: EvalVoice, judge: SimilarityJudge,
                    recognizer: Recognizer | None) -> None:
    result.audio_seconds = len(audio) / sr
    own = judge.embed(voice.own, voice.own_sr, f"own:{voice.id}")
    result.similarity = judge.similarity(judge.embed(audio, sr) if audio.size else None, own)
    if recognizer is not None and recognizer.supports(voice.lang):
        result.hypothesis = recognizer.transcribe(resample(audio, sr, 16000), voice.lang) if audio.size else ""
        count = text_errors(result.text, result.hypothesis, voice.lang)
        result.errors, result.words = count.errors, count.length


def evaluate_voice(system: System, voice: EvalVoice, judge: SimilarityJudge, recognizer: Recognizer | None,
                   params: "SynthesisParams", max_sentences: int | None = None,
                   reference_free: bool = False) -> VoiceResult:
    """Synthesize the voice's held-out sentences with one system and score every one.

    `reference_free` drops ref.txt, as the service does for an upload without a transcript: the
    GPT then gets no prompt tokens and the reference sets only the SoVITS style.
    """
    from gpt_sovits.pipeline import Synthesizer, VoicePrompt

    out = VoiceResult(system.name, voice.id, voice.lang, error_metric(voice.lang))
    if voice.lang not in SYNTH_LANGS:
        out.skipped = f"language '{voice.lang}' is not a synthesis language ({sorted(SYNTH_LANGS)})"
        return out
    try:
        bundle = system.bundle_for(voice.id)
    except GSVError as exc:
        out.skipped = f"weights failed to load: {exc}"
        return out
    if bundle is None:
        out.skipped = "no weights for this voice"
        return out
    try:
        prompt = VoicePrompt.from_audio(bundle, voice.ref, voice.ref_sr, None if reference_free else voice.ref_text,
                                        voice.lang)
    except GSVError as exc:
        out.skipped = f"reference prompt failed: {exc}"
        return out
    synth = Synthesizer(bundle)
    lang_params = _with_lang(params, voice.lang)
    resolved = lang_params.sampling(0, model=bundle.gpt_config)
    out.sampling = {"top_k": resolved.top_k, "repetition_penalty": resolved.repetition_penalty,
                    "grammar": lang_params.grammar_on(bundle.gpt_config)}
    _warm_up(synth, prompt, voice, lang_params)
    for text in voice.sentences[:max_sentences]:
        result = SentenceResult(text)
        try:
            audio, result.synth_seconds = _synthesize_sentence(synth, prompt, text, lang_params)
            _score_sentence(result, audio, bundle.sample_rate, voice, judge, recognizer)
        except GSVError as exc:
            result.error = f"{exc.code}: {exc}"
        out.sentences.append(result)
        log.info("%s/%s: %r sim=%s err=%s/%s", system.name, voice.id, text[:40], result.similarity,
                 result.errors, result.words)
    return out


def _warm_up(synth, prompt, voice: EvalVoice, params: "SynthesisParams") -> None:  # noqa: ANN001
    """One short untimed synthesis, so lazy initialisation does not inflate the first RTF."""
    import dataclasses

    if voice.sentences:
        try:
            synth.synthesize(voice.sentences[0], prompt, dataclasses.replace(params, max_new_tokens=8))
        except GSVError:
            pass  # the timed call reports the error


def _with_lang(params: "SynthesisParams", lang: str) -> "SynthesisParams":
    import dataclasses

    return dataclasses.replace(params, text_lang=lang) if params.text_lang == "auto" else params


# ----------------------------------------------------------------------------------- report


@dataclass
class EvalReport:
    baseline: Baseline
    results: list[VoiceResult]
    recognizer: str | None
    seen: dict[str, str] = field(default_factory=dict)
    """voice -> 'held-out' / 'seen' in the base model's training corpus (when known)."""
    floor: dict[str, float] = field(default_factory=dict)
    """voice -> the recogniser's error rate on the voice's own ref.flac: what a perfect clone would score."""
    decoding: dict[str, float] = field(default_factory=dict)
    """The sampling knobs every system used (a report is only comparable with one decoded alike);
    None means each model's own default (a row's `sampling` says what it resolved to)."""

    def to_json(self) -> dict:
        rows = []
        for r in self.results:
            rows.append({
                "system": r.system, "voice": r.voice, "lang": r.lang, "metric": r.metric,
                "skipped": r.skipped, "in_training": self.seen.get(r.voice),
                "similarity": _clean(r.similarity), "error_rate": _clean(r.error_rate), "rtf": _clean(r.rtf),
                "same_speaker": _clean(self.baseline.same(r.voice)) if r.voice in self.baseline.voices else None,
                "different_speaker_bar": _clean(self.baseline.bar(r.voice)) if r.voice in self.baseline.voices else None,
                "asr_floor": _clean(self.floor.get(r.voice)), "sampling": dict(r.sampling),
                "sentences": [{**{k: _clean(v) for k, v in asdict(s).items()}, "rtf": _clean(s.rtf)} for s in r.sentences],
            })
        return {
            "recognizer": self.recognizer,
            "decoding": dict(self.decoding),
            "baseline": {"voices": self.baseline.voices,
                         "matrix": [[_clean(v) for v in row] for row in self.baseline.matrix],
                         **{k: _clean(v) for k, v in self.baseline.summary().items()}},
            "results": rows,
        }

    def table(self) -> str:
        head = f"{'system':<12} {'voice':<12} {'train':<8} {'n':>2} {'sim':>6} {'same':>6} {'bar':>6} {'err':>10} {'floor':>6} {'rtf':>6}"
        lines = [head, "-" * len(head)]
        for r in self.results:
            if r.skipped:
                lines.append(f"{r.system:<12} {r.voice:<12} skipped: {r.skipped}")
                continue
            err = f"{r.metric} {_fmt(r.error_rate, 2)}" if r.error_rate is not None else "-"
            lines.append(
                f"{r.system:<12} {r.voice:<12} {self.seen.get(r.voice, '?'):<8} {len(r.sentences):>2} "
                f"{_fmt(r.similarity):>6} {_fmt(self.baseline.same(r.voice)):>6} {_fmt(self.baseline.bar(r.voice)):>6} "
                f"{err:>10} {_fmt(self.floor.get(r.voice), 2):>6} {_fmt(r.rtf, 2):>6}"
            )
        s = self.baseline.summary()
        lines.append(f"baseline (own recordings): same speaker {_fmt(s['same_mean'])}, different speakers mean "
                     f"{_fmt(s['different_mean'])}, max {_fmt(s['different_max'])}; a clone should beat 'bar'")
        if self.floor:
            lines.append("floor: the recogniser's error rate on the voice's own ref.flac (a perfect clone's score)")
        return "\n".join(lines)

    def baseline_table(self) -> str:
        ids = self.baseline.voices
        width = max([10] + [len(v) for v in ids])
        corner = "ref \\ own"
        lines = [f"{corner:<{width}} " + " ".join(f"{v[:width]:>{width}}" for v in ids)]
        for v, row in zip(ids, self.baseline.matrix):
            lines.append(f"{v:<{width}} " + " ".join(f"{_fmt(x):>{width}}" for x in row))
        return "\n".join(lines)


def load_bundle(gpt: Path, sovits: Path, content_dir: Path, bert_dir: Path | None = None,
                device: str = "cpu") -> "ModelBundle":
    """Base bundle from local files; `content_dir` is chinese-hubert-base or our content encoder.

    `ModelBundle.from_paths` opens either kind and refuses (`ModelConfigError`, code
    model_mismatch) an encoder other than the one the SoVITS config names.
    """
    from gpt_sovits.bundle import ModelBundle

    return ModelBundle.from_paths(gpt, sovits, content_dir, bert_dir, device=device)


def run_eval(voices: list[EvalVoice], systems: list[System], judge: SimilarityJudge, recognizer: Recognizer | None,
             params: "SynthesisParams", max_sentences: int | None = None, seen: dict[str, str] | None = None,
             reference_free: bool = False) -> EvalReport:
    """Baseline similarity first, then every (system, voice) pair."""
    if not voices:
        raise EvalError("No voices to evaluate: pass voice folders (each with ref.flac, ref.txt, clone.flac, test.txt).")
    baseline = baseline_similarity(voices, judge)
    floor = recognizer_floor(voices, recognizer)
    results = [evaluate_voice(s, v, judge, recognizer, params, max_sentences, reference_free)
               for s in systems for v in voices]
    decoding = {k: getattr(params, k) for k in ("top_k", "top_p", "temperature", "repetition_penalty", "noise_scale",
                                                 "seed", "max_new_tokens", "grammar")}
    decoding["reference_free"] = reference_free
    return EvalReport(baseline, results, recognizer.name if recognizer is not None else None, dict(seen or {}), floor,
                      decoding)


def recognizer_floor(voices: list[EvalVoice], recognizer: Recognizer | None) -> dict[str, float]:
    """The recogniser's error rate on each voice's own reference recording.

    Offline recognisers are weak (pocketsphinx misses many words of synthetic voices), so a
    clone's WER means little without the score of the real voice under the same recogniser.
    """
    if recognizer is None:
        return {}
    floor = {}
    for v in voices:
        if recognizer.supports(v.lang) and v.ref_text:
            hyp = recognizer.transcribe(resample(v.ref, v.ref_sr, 16000), v.lang)
            floor[v.id] = text_errors(v.ref_text, hyp, v.lang).rate
    return floor


def write_report(report: EvalReport, path: Path) -> None:
    Path(path).write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _clean(value):  # noqa: ANN001, ANN202 - JSON-safe scalars: NaN/inf -> None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
