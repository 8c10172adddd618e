"""Mandarin tone sandhi on jieba words, following the rules of PaddleSpeech's ``ToneSandhi``.

A word's syllables are given as pypinyin ``FINALS_TONE3`` strings ("ao3", "i5"): only the trailing
tone digit is ever changed. The rules, in the order they run per word:

1. 不: before a 4th tone it becomes 2nd (不怕); in X不X it is neutral (看不懂).
2. 一: inside digit strings it is unchanged (一零零); in X一X it is neutral (看一看); 第一 is 1st;
   otherwise 2nd before a 4th tone (一段) and 4th before other tones (一天).
3. Neutral tone: noun/verb/adjective reduplication (奶奶, 试试), sentence particles (吧, 呢),
   的/地/得, aspect 了/着/过, -们/-子 suffixes, locatives (桌上), directional complements (上来),
   the measure word 个, and a lexicon of words whose last syllable is neutral.
4. Third tone: 3-3 becomes 2-3 inside a word, with 3-syllable words split into 2+1 or 1+2 and
   4-syllable words into 2+2.

Before that, :meth:`ToneSandhi.pre_merge` glues jieba words so the rules see whole units: 不 and
一 with the following word, X一X, reduplications, adjacent third-tone words (up to 3 chars) and a
trailing 儿.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Callable, Sequence

Word = tuple[str, str]  # (text, jieba part-of-speech flag)

_PARTICLES = "吧呢哈啊呐噻嘛吖嗨哦哒额滴哩哟喽啰耶喔诶"
_STRUCTURAL = "的地得"
_ASPECT = "了着过"
_ASPECT_POS = {"ul", "uz", "ug"}
_LOCATIVES = "上下里"
_DIRECTIONAL_HEADS = "上下进出回过起开"
_GE_PREFIXES = "几有两半多各整每做是"
_YI_PUNCT = "：，；。？！“”‘’':,;.?!"


@dataclass(frozen=True)
class ZhLexicon:
    """Word lists used by tone sandhi and erhua (loaded from ``zh_lexicon.json``)."""

    neutral_tone_words: frozenset[str] = field(default_factory=frozenset)
    not_neutral_words: frozenset[str] = field(default_factory=frozenset)
    not_erhua: frozenset[str] = field(default_factory=frozenset)
    must_erhua: frozenset[str] = field(default_factory=frozenset)


@lru_cache(maxsize=1)
def load_lexicon() -> ZhLexicon:
    """Load the bundled word lists (cached)."""
    raw = resources.files(__package__).joinpath("zh_lexicon.json").read_text(encoding="utf-8")
    data = json.loads(raw)
    return ZhLexicon(**{k: frozenset(v) for k, v in data.items() if not k.startswith("_")})


def set_tone(final: str, tone: str) -> str:
    """Replace the tone digit of ``final``; finals without one (punctuation) are unchanged."""
    return final[:-1] + tone if final and final[-1] in "12345" else final


def all_third_tone(finals: Sequence[str]) -> bool:
    return all(f[-1:] == "3" for f in finals)


class ToneSandhi:
    """Tone sandhi rules. ``finals_of(word)`` gives pypinyin tone3 finals (one per char);
    ``search_cut(word)`` gives jieba's search-mode sub-words (used to split 3-char words)."""

    def __init__(
        self,
        finals_of: Callable[[str], list[str]],
        search_cut: Callable[[str], list[str]],
        lexicon: ZhLexicon | None = None,
    ) -> None:
        self._finals_of = finals_of
        self._search_cut = search_cut
        self.lexicon = lexicon or load_lexicon()

    # ------------------------------------------------------------------ word merging
    def pre_merge(self, words: Sequence[Word]) -> list[Word]:
        """Glue jieba words into the units tone sandhi works on."""
        merged = _merge_bu(list(words))
        merged = _merge_yi(merged)
        merged = _merge_reduplication(merged)
        merged = self._merge_third_tones(merged, whole_words=True)
        merged = self._merge_third_tones(merged, whole_words=False)
        return _merge_er(merged)

    def _merge_third_tones(self, words: list[Word], whole_words: bool) -> list[Word]:
        """Glue neighbours that meet in third tones (both all-3, or last/first syllable 3).

        Reduplications are left alone (they need the neutral-tone rule) and a merge never makes
        a unit longer than 3 chars or chains onto a word that was itself just merged.
        """
        finals = [self._finals_of(w) for w, _ in words]
        out: list[list[str]] = []
        merged_prev = False
        for i, (word, pos) in enumerate(words):
            if i and not merged_prev and finals[i - 1] and finals[i]:
                prev_word = words[i - 1][0]
                if whole_words:
                    meets = all_third_tone(finals[i - 1]) and all_third_tone(finals[i])
                else:
                    meets = finals[i - 1][-1][-1:] == "3" and finals[i][0][-1:] == "3"
                short = len(prev_word) + len(word) <= 3
                if meets and short and not _is_reduplication(prev_word):
                    out[-1][0] += word
                    merged_prev = True
                    continue
            out.append([word, pos])
            merged_prev = False
        return [(w, p) for w, p in out]

    # ------------------------------------------------------------------ per-word rules
    def apply(self, word: str, pos: str, finals: list[str]) -> list[str]:
        """Return the finals of ``word`` with all sandhi rules applied (input is not modified)."""
        finals = list(finals)
        if len(finals) != len(word):
            return finals  # grouped non-hanzi chars: nothing to do
        finals = _bu_sandhi(word, finals)
        finals = _yi_sandhi(word, finals)
        finals = self._neutral_sandhi(word, pos, finals)
        return self._third_sandhi(word, finals)

    def split_word(self, word: str) -> tuple[str, str]:
        """Split a word in two around its shortest search-mode sub-word (蒙古包 -> 蒙古/包)."""
        subwords = sorted(self._search_cut(word), key=len)
        shortest = subwords[0] if subwords else word
        if word.startswith(shortest):
            return shortest, word[len(shortest):]
        return word[: len(word) - len(shortest)], shortest

    def _is_neutral_word(self, word: str) -> bool:
        words = self.lexicon.neutral_tone_words
        return word in words or word[-2:] in words

    def _neutral_sandhi(self, word: str, pos: str, finals: list[str]) -> list[str]:
        keep_tone = word in self.lexicon.not_neutral_words
        if pos[:1] in ("n", "v", "a") and not keep_tone:
            for j in range(1, len(word)):
                if word[j] == word[j - 1]:
                    finals[j] = set_tone(finals[j], "5")
        last = word[-1]
        ge = word.find("个")
        if last in _PARTICLES or last in _STRUCTURAL:
            finals[-1] = set_tone(finals[-1], "5")
        elif len(word) == 1 and word in _ASPECT and pos in _ASPECT_POS:
            finals[-1] = set_tone(finals[-1], "5")
        elif len(word) > 1 and last in "们子" and pos in ("r", "n") and not keep_tone:
            finals[-1] = set_tone(finals[-1], "5")
        elif len(word) > 1 and last in _LOCATIVES and pos in ("s", "l", "f"):
            finals[-1] = set_tone(finals[-1], "5")
        elif len(word) > 1 and last in "来去" and word[-2] in _DIRECTIONAL_HEADS:
            finals[-1] = set_tone(finals[-1], "5")
        elif word == "个" or (
            ge >= 1 and (word[ge - 1].isnumeric() or word[ge - 1] in _GE_PREFIXES)
        ):
            finals[ge] = set_tone(finals[ge], "5")
        elif self._is_neutral_word(word):
            finals[-1] = set_tone(finals[-1], "5")
        # Lexicon words can also sit inside a longer unit (老朋友 -> 朋友).
        head, tail = self.split_word(word)
        for start, part in ((0, head), (len(head), tail)):
            if part and self._is_neutral_word(part):
                end = start + len(part) - 1
                finals[end] = set_tone(finals[end], "5")
        return finals

    def _third_sandhi(self, word: str, finals: list[str]) -> list[str]:
        if len(word) == 2 and all_third_tone(finals):
            finals[0] = set_tone(finals[0], "2")
        elif len(word) == 3:
            head, _ = self.split_word(word)
            if all_third_tone(finals):
                if len(head) == 2:  # 蒙古/包
                    finals[0] = set_tone(finals[0], "2")
                    finals[1] = set_tone(finals[1], "2")
                elif len(head) == 1:  # 纸/老虎
                    finals[1] = set_tone(finals[1], "2")
            else:
                first, second = finals[: len(head)], finals[len(head):]
                if len(first) == 2 and all_third_tone(first):  # 所有/人
                    first[0] = set_tone(first[0], "2")
                if len(second) == 2 and all_third_tone(second):
                    second[0] = set_tone(second[0], "2")
                elif second and not all_third_tone(second) and second[0][-1:] == "3" \
                        and first[-1][-1:] == "3":  # 好/喜欢
                    first[-1] = set_tone(first[-1], "2")
                finals = first + second
        elif len(word) == 4:  # idioms: two 2-char halves
            for half in (slice(0, 2), slice(2, 4)):
                if all_third_tone(finals[half]):
                    finals[half.start] = set_tone(finals[half.start], "2")
        return finals


def _is_reduplication(word: str) -> bool:
    return len(word) == 2 and word[0] == word[1]


def _merge_bu(words: list[Word]) -> list[Word]:
    """Attach a lone 不 to the next word (a trailing 不 stays alone, tagged adverb)."""
    out: list[Word] = []
    pending = False
    for word, pos in words:
        if pending:
            word, pending = "不" + word, False
        if word == "不":
            pending = True
            continue
        out.append((word, pos))
    if pending:
        out.append(("不", "d"))
    return out


def _merge_yi(words: list[Word]) -> list[Word]:
    """Merge verb-一-verb (听一听) and attach a lone 一 to the following word."""
    out: list[list[str]] = []
    skip_next = False
    for i, (word, pos) in enumerate(words):
        if skip_next:
            skip_next = False
            continue
        is_v_yi_v = (
            word == "一" and 0 < i < len(words) - 1 and out
            and words[i - 1][0] == words[i + 1][0] and words[i - 1][1] == "v"
            and out[-1][0] == words[i - 1][0]
        )
        if is_v_yi_v:
            out[-1][0] += "一" + words[i + 1][0]
            skip_next = True
            continue
        out.append([word, pos])
    glued: list[list[str]] = []
    for word, pos in out:
        if glued and glued[-1][0] == "一":
            glued[-1][0] += word
        else:
            glued.append([word, pos])
    return [(w, p) for w, p in glued]


def _merge_reduplication(words: list[Word]) -> list[Word]:
    """Glue a word onto an identical predecessor (谢 谢 -> 谢谢)."""
    out: list[list[str]] = []
    for word, pos in words:
        if out and out[-1][0] == word:
            out[-1][0] += word
        else:
            out.append([word, pos])
    return [(w, p) for w, p in out]


def _merge_er(words: list[Word]) -> list[Word]:
    """Glue a separate 儿 onto the preceding word so erhua can see it."""
    out: list[list[str]] = []
    for word, pos in words:
        if out and word == "儿" and out[-1][0] != "#":
            out[-1][0] += word
        else:
            out.append([word, pos])
    return [(w, p) for w, p in out]


def bu_sandhi(word: str, finals: list[str]) -> list[str]:
    """Public wrapper of the 不 rule (for tests and reuse)."""
    return _bu_sandhi(word, list(finals))


def yi_sandhi(word: str, finals: list[str]) -> list[str]:
    """Public wrapper of the 一 rule (for tests and reuse)."""
    return _yi_sandhi(word, list(finals))


def _bu_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 3 and word[1] == "不":  # 看不懂
        finals[1] = set_tone(finals[1], "5")
        return finals
    for i in range(len(word) - 1):
        if word[i] == "不" and finals[i + 1][-1:] == "4":  # 不怕
            finals[i] = set_tone(finals[i], "2")
    return finals


def _yi_sandhi(word: str, finals: list[str]) -> list[str]:
    if "一" in word and all(ch.isnumeric() for ch in word if ch != "一"):
        return finals  # a digit string such as 一零零
    if len(word) == 3 and word[1] == "一" and word[0] == word[2]:  # 看一看
        finals[1] = set_tone(finals[1], "5")
    elif word.startswith("第一"):
        finals[1] = set_tone(finals[1], "1")
    else:
        for i in range(len(word) - 1):
            if word[i] != "一":
                continue
            if finals[i + 1][-1:] == "4":  # 一段
                finals[i] = set_tone(finals[i], "2")
            elif word[i + 1] not in _YI_PUNCT:  # 一天
                finals[i] = set_tone(finals[i], "4")
    return finals
