"""Pinyin syllable -> (initial phone, final phone) with the "opencpop-strict" conventions.

The GPT-SoVITS zh phones are an initial and a toned final per syllable. Instead of shipping the
429-line lookup table, the mapping is derived from the structure of pinyin spelling:

- zero-initial syllables get a pseudo initial from their first letter: ``a -> AA``, ``e -> EE``
  (also ``er``), ``o -> OO``;
- ``y`` and ``w`` act as initials; after ``y`` the final keeps its surface spelling except that
  ``u -> v`` (yu, yuan, yue, yun), ``an -> En`` (yan) and ``e -> E`` (ye); after ``w`` it is the
  spelling without ``w`` (wu -> u);
- ``j q x`` + ``u`` is ``ü`` (``v``);
- the apical vowels: ``zhi chi shi ri`` have final ``ir``, ``zi ci si`` have ``i0``;
- abbreviated finals are used as spelled: ``ui iu un`` (not ``uei iou uen``).

pypinyin's strict finals style (what the official code feeds in) writes the underlying finals
(``uei``, ``iou``, ``ia`` for "ya", ...), so :func:`respell` first rebuilds the written syllable.
"""
from __future__ import annotations

_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h",
             "j", "q", "x", "r", "z", "c", "s", "y", "w")
_PSEUDO_INITIALS = {"a": "AA", "e": "EE", "o": "OO"}
_ABBREVIATED = {"uei": "ui", "iou": "iu", "uen": "un"}
_ZERO_INITIAL_WHOLE = {"i": "yi", "in": "yin", "ing": "ying", "u": "wu"}
# Interjections outside the regular syllable inventory -> closest regular phones.
_IRREGULAR = {
    "m": ("m", "u"), "n": ("EE", "en"), "ng": ("EE", "eng"),
    "hm": ("h", "en"), "hng": ("h", "eng"), "ê": ("EE", "ei"),
}
TONES = "12345"


def respell(initial: str, final: str) -> str:
    """Rebuild a written syllable from pypinyin strict initial/final parts (no tone digit).

    ``("", "iou") -> "you"``, ``("g", "uei") -> "gui"``, ``("", "v") -> "yu"``.
    """
    if initial:
        return initial + _ABBREVIATED.get(final, final)
    if final in _ZERO_INITIAL_WHOLE:
        return _ZERO_INITIAL_WHOLE[final]
    if final.startswith("v"):
        return "yu" + final[1:]
    if final.startswith("i"):
        return "y" + final[1:]
    if final.startswith("u"):
        return "w" + final[1:]
    return final


def _final_after(initial: str, rest: str) -> str:
    if initial == "y":
        if rest.startswith("u"):
            return "v" + rest[1:]
        return {"an": "En", "e": "E"}.get(rest, rest)
    if initial in ("j", "q", "x") and rest.startswith("u"):
        return "v" + rest[1:]
    if rest == "i" and initial in ("zh", "ch", "sh", "r"):
        return "ir"
    if rest == "i" and initial in ("z", "c", "s"):
        return "i0"
    return rest


def split_syllable(syllable: str) -> tuple[str, str]:
    """Split a written toneless syllable into (initial phone, final phone).

    ``"shi" -> ("sh", "ir")``, ``"yan" -> ("y", "En")``, ``"er" -> ("EE", "er")``.
    """
    if syllable in _IRREGULAR:
        return _IRREGULAR[syllable]
    for initial in _INITIALS:
        if syllable.startswith(initial) and len(syllable) > len(initial):
            return initial, _final_after(initial, syllable[len(initial):])
    pseudo = _PSEUDO_INITIALS.get(syllable[:1], "EE")
    return pseudo, syllable


def syllable_phones(initial: str, final_with_tone: str) -> list[str]:
    """Phones for one syllable given pypinyin strict initial and ``FINALS_TONE3`` final.

    A final without a tone digit (pypinyin leaves some interjections empty) gets tone 5.
    """
    if final_with_tone and final_with_tone[-1] in TONES:
        final, tone = final_with_tone[:-1], final_with_tone[-1]
    else:
        final, tone = final_with_tone, "5"
    if not final:
        # pypinyin leaves the final empty for nasal interjections (嗯 n, 呣 m, 噷 hm, hng).
        return [initial or "EE", "en" + tone]
    init_phone, final_phone = split_syllable(respell(initial, final))
    return [init_phone, final_phone + tone]
