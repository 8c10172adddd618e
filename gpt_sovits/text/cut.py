"""Text cut methods (``cut0`` .. ``cut5``) and the sentence pre-segmentation used before G2P.

The cut methods reproduce the official GPT-SoVITS ``text_segmentation_method.py`` behaviour:

- ``cut0`` ("none"): no cut;
- ``cut1`` ("four_sentences"): split after every clause mark, then glue groups of 4 clauses;
- ``cut2`` ("fifty_chars"): glue clauses until a piece exceeds 50 chars; a short tail is merged back;
- ``cut3`` ("zh_period"): split on ``。`` (the mark is dropped);
- ``cut4`` ("en_period"): split on ``.`` unless it sits between two digits (the mark is dropped);
- ``cut5`` ("punctuation"): split after any punctuation mark (a ``.`` between digits is kept).

Each returns a list of pieces (the official code joins them with newlines instead); pieces made
only of punctuation are dropped. :func:`pre_segment` then turns a piece list into the sentences
that are fed to G2P one by one (TextPreprocessor.pre_seg_text in the official code).
"""
from __future__ import annotations

import re
from typing import Callable

from .errors import UnknownSplitMethodError

#: Clause marks used by cut1/cut2 and by pre-segmentation.
SPLITS = frozenset("，。？！,.?!~:：—…")
#: Marks cut5 splits after.
_CUT5_MARKS = frozenset(",.;?!、，。？！；：…")
#: A piece made only of these characters is dropped (official ``punctuation`` set).
_PUNCT_ONLY = frozenset("!?…,.- ")

MAX_SENTENCE_CHARS = 510  # BERT limit minus [CLS]/[SEP]
_SHORT_LINE_CHARS = 5
_SHORT_FIRST_CLAUSE = 4


def _is_punct_only(piece: str) -> bool:
    return set(piece) <= _PUNCT_ONLY


def _keep_spoken(pieces: list[str]) -> list[str]:
    return [p for p in pieces if not _is_punct_only(p)]


def split_clauses(text: str) -> list[str]:
    """Split after every clause mark in :data:`SPLITS`; each clause keeps its trailing mark.

    ``……`` counts as ``。`` and ``——`` as ``，``. Text after the last mark is kept as a final
    clause without a mark (the official code appends ``。`` instead; pre-segmentation adds the
    right mark for the language later).
    """
    text = text.replace("……", "。").replace("——", "，")
    clauses, start = [], 0
    for i, ch in enumerate(text):
        if ch in SPLITS:
            clauses.append(text[start : i + 1])
            start = i + 1
    if start < len(text):
        clauses.append(text[start:])
    return clauses


def cut0(text: str) -> list[str]:
    """No cut: the whole text is one piece (nothing when it is only punctuation)."""
    return [] if _is_punct_only(text) else [text]


def cut1(text: str) -> list[str]:
    """Glue clauses in groups of four (the last group may be shorter).

    Up to four clauses the text is returned unchanged. The official code folds the last two
    groups into one piece (so 5..8 clauses give a single piece); we keep plain groups of four.
    """
    text = text.strip("\n")
    clauses = split_clauses(text)
    if len(clauses) <= 4:
        return _keep_spoken([text])
    pieces = ["".join(clauses[i : i + 4]) for i in range(0, len(clauses), 4)]
    return _keep_spoken(pieces)


def cut2(text: str, max_chars: int = 50) -> list[str]:
    """Glue clauses until a piece is longer than ``max_chars``; merge a short last piece back."""
    text = text.strip("\n")
    clauses = split_clauses(text)
    if len(clauses) < 2:
        return [text]
    pieces, current = [], ""
    for clause in clauses:
        current += clause
        if len(current) > max_chars:
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    if len(pieces) > 1 and len(pieces[-1]) < max_chars:
        pieces[-2] += pieces.pop()
    return _keep_spoken(pieces)


def cut3(text: str) -> list[str]:
    """Split on the Chinese full stop ``。`` (dropped from the pieces)."""
    text = text.strip("\n").strip("。")
    return _keep_spoken(text.split("。"))


def cut4(text: str) -> list[str]:
    """Split on ``.`` that is not between two digits (dropped from the pieces)."""
    text = text.strip("\n").strip(".")
    # The official regex also refuses to split after a number ("3.14. Next"); we split there.
    return _keep_spoken(re.split(r"(?<!\d)\.|\.(?!\d)", text))


def cut5(text: str) -> list[str]:
    """Split after every punctuation mark; a decimal point between digits does not split."""
    text = text.strip("\n")
    pieces, current = [], []
    for i, ch in enumerate(text):
        current.append(ch)
        if ch not in _CUT5_MARKS:
            continue
        if ch == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
            continue
        pieces.append("".join(current))
        current = []
    if current:
        pieces.append("".join(current))
    return [p for p in pieces if not set(p) <= _CUT5_MARKS]


CUT_METHODS: dict[str, Callable[[str], list[str]]] = {
    "cut0": cut0, "cut1": cut1, "cut2": cut2, "cut3": cut3, "cut4": cut4, "cut5": cut5,
}
ALIASES = {
    "none": "cut0", "four_sentences": "cut1", "fifty_chars": "cut2",
    "zh_period": "cut3", "en_period": "cut4", "punctuation": "cut5",
}


def resolve_method(name: str) -> str:
    """Map a cut name or alias to its canonical ``cutN`` name."""
    canonical = ALIASES.get(name, name)
    if canonical not in CUT_METHODS:
        names = ", ".join([*CUT_METHODS, *ALIASES])
        raise UnknownSplitMethodError(f"unknown split method {name!r}: use one of {names}")
    return canonical


def cut(text: str, method: str = "cut5") -> list[str]:
    """Cut ``text`` with a method given by name (``"cut0"``..``"cut5"`` or an alias)."""
    return CUT_METHODS[resolve_method(method)](text)


def first_clause(text: str) -> str:
    """Text before the first clause mark, stripped."""
    return re.split("[" + re.escape("".join(sorted(SPLITS))) + "]", text)[0].strip()


def merge_short_lines(lines: list[str], threshold: int = _SHORT_LINE_CHARS) -> list[str]:
    """Glue lines shorter than ``threshold`` to the following ones; a short tail joins the last."""
    if len(lines) < 2:
        return lines
    merged, current = [], ""
    for line in lines:
        current += line
        if len(current) >= threshold:
            merged.append(current)
            current = ""
    if current:
        if merged:
            merged[-1] += current
        else:
            merged.append(current)
    return merged


def split_long_text(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Split text longer than ``max_chars`` at clause marks into pieces of at most that size.

    A single clause longer than ``max_chars`` is hard-split so no piece exceeds the limit.
    """
    parts = re.split("([" + re.escape("".join(sorted(SPLITS))) + "])", text)
    pieces, current = [], ""
    for part in parts:
        while len(part) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(part[:max_chars])
            part = part[max_chars:]
        if len(current) + len(part) > max_chars:
            pieces.append(current)
            current = part
        else:
            current += part
    if current:
        pieces.append(current)
    return [p for p in pieces if p]


def _has_word_chars(text: str) -> bool:
    return bool(re.sub(r"\W+", "", text))


def pre_segment(text: str, lang: str, method: str = "cut5") -> list[str]:
    """Turn user text into the sentences that are phonemised one at a time.

    Steps (official ``pre_seg_text``): prepend ``。`` (``.`` for en) when the first clause is
    shorter than 4 chars, cut with ``method``, break on newlines, drop empty and symbol-only
    lines, merge lines shorter than 5 chars, end each line with a clause mark, and split lines
    longer than 510 chars.
    """
    stop = "." if lang == "en" else "。"
    text = text.strip("\n")
    if not text:
        return []
    if text[0] not in SPLITS and len(first_clause(text)) < _SHORT_FIRST_CLAUSE:
        text = stop + text
    lines = [line for piece in cut(text, method) for line in piece.split("\n")]
    lines = [line for line in lines if line.strip()]
    lines = merge_short_lines(lines)
    sentences: list[str] = []
    for line in lines:
        if not line.strip() or not _has_word_chars(line):
            continue
        if line[-1] not in SPLITS:
            line += stop
        if len(line) > MAX_SENTENCE_CHARS:
            sentences.extend(split_long_text(line))
        else:
            sentences.append(line)
    return sentences
