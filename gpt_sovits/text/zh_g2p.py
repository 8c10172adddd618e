"""Mandarin G2P: normalised text -> (phones, word2ph), GPT-SoVITS v2 "chinese2" conventions.

Pipeline per sentence: jieba part-of-speech segmentation, :class:`ToneSandhi` word merging,
pypinyin (strict initials + ``FINALS_TONE3`` finals, neutral tone = 5), tone sandhi, erhua, then
each syllable becomes an initial and a toned final (``zh_pinyin``). Every CJK char yields exactly
2 phones and every punctuation mark 1, so ``len(word2ph) == len(norm_text)``, which the BERT
feature expansion relies on.

This is the pypinyin path of the official code; the official default resolves polyphones with
the g2pW ONNX model, which is not bundled here, so a few polyphonic characters may differ.

jieba and pypinyin are imported on first use: jieba builds (or reads) its prefix-dict cache and
logs to stderr when it loads, so loading is deferred and its logger is silenced meanwhile.
"""
from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from .symbols import PUNCTUATION, UNK
from .tone_sandhi import ToneSandhi, Word, load_lexicon
from .zh_normalize import normalize_zh
from .zh_pinyin import syllable_phones

_SENTENCE_END_RE = re.compile("(?<=[" + re.escape("".join(PUNCTUATION)) + r"])\s*")
_LATIN_RE = re.compile(r"[a-zA-Z]+")
_ERHUA_BLOCKING_POS = {"a", "j", "nr"}


@contextmanager
def _quiet_jieba() -> Iterator[None]:
    """Silence jieba's "Building prefix dict ..." messages while it loads."""
    logger = logging.getLogger("jieba")
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


class _Jieba:
    """A private jieba tokenizer pair (plain + part-of-speech), built on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._pos_tokenizer: Any = None

    def _ensure(self) -> None:
        if self._pos_tokenizer is not None:
            return
        with self._lock:
            if self._pos_tokenizer is not None:
                return
            import jieba  # its import resets the "jieba" logger to DEBUG, so silence after it
            import jieba.posseg

            with _quiet_jieba():
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                self._tokenizer = tokenizer
                self._pos_tokenizer = jieba.posseg.POSTokenizer(tokenizer)

    def pos_cut(self, text: str) -> list[Word]:
        self._ensure()
        return [(pair.word, pair.flag) for pair in self._pos_tokenizer.lcut(text)]

    def search_cut(self, text: str) -> list[str]:
        self._ensure()
        return list(self._tokenizer.cut_for_search(text))


def _pinyin_parts(word: str) -> tuple[list[str], list[str]]:
    """pypinyin strict initials and tone3 finals for ``word`` (one entry per pinyin item)."""
    from pypinyin import Style, lazy_pinyin

    initials = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.INITIALS)
    finals = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)
    return initials, finals


def _finals_of(word: str) -> list[str]:
    return _pinyin_parts(word)[1]


class ChineseG2P:
    """Mandarin backend: ``normalize`` raw text, then ``g2p`` the normalised text."""

    lang = "zh"

    def __init__(self) -> None:
        self._jieba = _Jieba()
        self._lexicon = load_lexicon()
        self._sandhi = ToneSandhi(_finals_of, self._jieba.search_cut, self._lexicon)

    def normalize(self, text: str) -> str:
        """Numbers etc. to characters, punctuation to ``! ? … , . -``, drop everything else."""
        return normalize_zh(text)

    def g2p(self, norm_text: str) -> tuple[list[str], list[int]]:
        """Phones and word2ph (2 per CJK char, 1 per punctuation mark) for normalised text."""
        phones: list[str] = []
        word2ph: list[int] = []
        for sentence in _SENTENCE_END_RE.split(norm_text):
            if sentence.strip():
                self._sentence_phones(sentence, phones, word2ph)
        return phones, word2ph

    def _sentence_phones(self, sentence: str, phones: list[str], word2ph: list[int]) -> None:
        sentence = _LATIN_RE.sub("", sentence)
        words = self._sandhi.pre_merge(self._jieba.pos_cut(sentence))
        for word, pos in words:
            if pos == "eng" or not word.strip():
                continue
            initials, finals = _pinyin_parts(word)
            finals = self._sandhi.apply(word, pos, finals)
            finals = self._erhua(word, pos, finals)
            for initial, final in zip(initials, finals):
                if initial == final:  # not a syllable: punctuation or an unknown char
                    for ch in initial:
                        phones.append(ch if ch in PUNCTUATION else UNK)
                        word2ph.append(1)
                else:
                    phones.extend(syllable_phones(initial, final))
                    word2ph.append(2)

    def _erhua(self, word: str, pos: str, finals: list[str]) -> list[str]:
        """Erhua: a word-final 儿 (er2/er5) takes the tone of the syllable before it.

        The 儿 keeps its own syllable (2 phones), so word2ph stays 2 per char.
        """
        if len(finals) != len(word) or word[-1] != "儿":
            return finals
        finals = list(finals)
        if finals[-1] == "er1":
            finals[-1] = "er2"
        lex = self._lexicon
        if word not in lex.must_erhua and (word in lex.not_erhua or pos in _ERHUA_BLOCKING_POS):
            return finals
        if len(word) >= 2 and finals[-1] in ("er2", "er5") and word[-2:] not in lex.not_erhua:
            finals[-1] = "er" + finals[-2][-1]
        return finals
