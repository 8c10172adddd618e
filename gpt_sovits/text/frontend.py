"""The text frontend: user text -> sentences of phone ids (+ BERT features) for the T2S model.

Flow for :meth:`TextFrontend.process` (official ``TextPreprocessor.preprocess``):

1. validate (empty / too long / language / split method);
2. :func:`cut.pre_segment` cuts the text into sentences;
3. each sentence is split into language runs (:mod:`lang`); each run is normalised and
   phonemised by its language backend; the runs are concatenated into one :class:`Segment`;
4. a sentence with fewer than 6 phones is processed again with ``.`` in front (the model
   handles very short inputs badly).

BERT features are built on demand (:meth:`Segment.bert_features`): zh runs go through the
injected ``bert(norm_text, word2ph) -> Tensor[bert_dim, n_phones]`` callable, every other run
(and everything when no callable is given) gets zeros.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .cut import SPLITS, pre_segment, resolve_method
from .errors import BertFeatureError, EmptyTextError, FrontendError, TextTooLongError
from .lang import LangRun, check_language, get_g2p, segment_languages
from .symbols import phones_to_ids, vocab_size

if TYPE_CHECKING:
    import torch

BertFn = Callable[[str, list[int]], "torch.Tensor"]

DEFAULT_MAX_CHARS = 10_000
DEFAULT_BERT_DIM = 1024
MIN_SENTENCE_PHONES = 6


@dataclass
class PhoneRun:
    """One language run of a sentence after normalisation and G2P."""

    lang: str
    norm_text: str
    phones: list[str]
    word2ph: list[int] | None


@dataclass
class Segment:
    """One sentence ready for the T2S model.

    ``lang`` is the language of all runs, or ``"mixed"`` when the sentence has several.
    ``word2ph`` is set only when every run has one (pure zh sentences); per-run values are in
    ``runs``.
    """

    norm_text: str
    phones: list[str]
    phone_ids: list[int]
    word2ph: list[int] | None
    lang: str
    runs: list[PhoneRun] = field(default_factory=list)

    @classmethod
    def from_runs(cls, runs: list[PhoneRun], version: str) -> Segment:
        phones = [p for r in runs for p in r.phones]
        langs = {r.lang for r in runs}
        word2ph: list[int] | None = None
        if runs and all(r.word2ph is not None for r in runs):
            word2ph = [n for r in runs for n in r.word2ph or []]
        return cls(
            norm_text="".join(r.norm_text for r in runs),
            phones=phones,
            phone_ids=phones_to_ids(phones, version),
            word2ph=word2ph,
            lang=langs.pop() if len(langs) == 1 else ("mixed" if langs else ""),
            runs=runs,
        )

    def bert_features(self, bert: BertFn | None = None,
                      bert_dim: int = DEFAULT_BERT_DIM) -> "torch.Tensor":
        """BERT matrix ``[bert_dim, len(phones)]``: ``bert`` for zh runs, zeros elsewhere."""
        import torch

        feats: list[torch.Tensor | None] = []
        for run in self.runs:
            if bert is None or run.lang != "zh" or run.word2ph is None:
                feats.append(None)
                continue
            out = bert(run.norm_text, run.word2ph)
            if tuple(out.shape) != (bert_dim, len(run.phones)):
                raise BertFeatureError(
                    f"bert callable returned shape {tuple(out.shape)} for {run.norm_text!r}; "
                    f"expected ({bert_dim}, {len(run.phones)}) = (bert_dim, phones in the run)"
                )
            feats.append(out)
        ref = next((f for f in feats if f is not None), None)
        dtype = ref.dtype if ref is not None else torch.float32
        device = ref.device if ref is not None else None
        parts = [
            f if f is not None else torch.zeros(bert_dim, len(r.phones), dtype=dtype, device=device)
            for f, r in zip(feats, self.runs)
        ]
        if not parts:
            return torch.zeros(bert_dim, 0, dtype=dtype)
        return torch.cat(parts, dim=1)


class TextFrontend:
    """Text -> :class:`Segment` list for one model version.

    Args:
        version: model version whose phone table gives the ids ("v1", "v2", "v2Pro", ...).
        bert: optional ``bert(norm_text, word2ph) -> Tensor[bert_dim, n_phones]`` for zh runs.
        max_chars: longest accepted input text, in characters.
        bert_dim: feature size of the BERT matrix (1024 for chinese-roberta-wwm-ext-large).
    """

    def __init__(self, version: str = "v2", bert: BertFn | None = None, *,
                 max_chars: int = DEFAULT_MAX_CHARS, bert_dim: int = DEFAULT_BERT_DIM) -> None:
        vocab_size(version)  # raises UnknownVersionError early
        if max_chars <= 0:
            raise FrontendError(f"max_chars must be positive, got {max_chars}")
        self.version = version
        self.bert = bert
        self.max_chars = max_chars
        self.bert_dim = bert_dim

    def process(self, text: str, lang: str = "auto", split_method: str = "cut5") -> list[Segment]:
        """Cut ``text`` into sentences and phonemise each one."""
        self._validate(text)
        resolve_method(split_method)
        check_language(lang)
        sentences = pre_segment(text, lang, split_method)
        segments = [seg for seg in (self.sentence(s, lang) for s in sentences) if seg.phones]
        if not segments:
            raise EmptyTextError(
                f"text {text[:40]!r} has nothing to speak once normalised for language "
                f"{lang!r}; give words in a supported language"
            )
        return segments

    def prompt_text(self, text: str, lang: str) -> Segment:
        """Phonemise the reference transcript as one sentence, ending it with 。 or . if needed."""
        self._validate(text)
        check_language(lang)
        text = text.strip()
        if text[-1] not in SPLITS:
            text += "." if lang == "en" else "。"
        segment = self.sentence(text, lang)
        if not segment.phones:
            raise EmptyTextError(f"prompt text {text[:40]!r} has nothing to speak for {lang!r}")
        return segment

    def sentence(self, text: str, lang: str) -> Segment:
        """Phonemise one sentence without cutting (re-run with a leading '.' if < 6 phones)."""
        segment = self._phonemize(text, lang)
        if len(segment.phones) < MIN_SENTENCE_PHONES:
            segment = self._phonemize("." + text, lang)
        return segment

    def bert_features(self, segment: Segment) -> "torch.Tensor":
        """BERT matrix ``[bert_dim, n_phones]`` for ``segment`` using the injected callable."""
        return segment.bert_features(self.bert, self.bert_dim)

    def _phonemize(self, text: str, lang: str) -> Segment:
        runs = [r for r in (self._run_phones(run) for run in segment_languages(text, lang)) if r]
        return Segment.from_runs(runs, self.version)

    def _run_phones(self, run: LangRun) -> PhoneRun | None:
        backend = get_g2p(run.lang)
        source = " ".join(run.text.upper()) if run.spell else run.text
        norm = backend.normalize(source)
        if not norm.strip():
            return None
        phones, word2ph = backend.g2p(norm)
        if not phones:
            return None
        return PhoneRun(run.lang, norm, phones, word2ph)

    def _validate(self, text: str) -> None:
        if not isinstance(text, str):
            raise FrontendError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            raise EmptyTextError("text is empty: give at least one word to speak")
        if len(text) > self.max_chars:
            raise TextTooLongError(
                f"text has {len(text)} characters, more than the limit of {self.max_chars}; "
                "split it into several requests or raise max_chars"
            )
