"""Language codes, language segmentation of mixed text, and the registry of G2P backends.

GPT-SoVITS v2 language codes:

- ``zh`` / ``ja`` / ``ko`` / ``yue``: the user's language mixed with English; every non-English
  run is read in the user's language.
- ``all_zh`` / ``all_ja`` / ``all_ko`` / ``all_yue``: the text is in that language; Latin-letter
  runs stay English but are read letter by letter (as acronyms).
- ``en``: the whole text is English.
- ``auto``: each run gets its detected script language (Han -> zh, kana -> ja, hangul -> ko,
  Latin -> en); ``auto_yue`` reads Han runs as Cantonese.

Only zh and en backends ship with this package. A code whose language has no registered backend
raises :class:`LanguageNotInstalledError`; new backends are added with :func:`register_g2p`.
Digits carry no language: they join the neighbouring run (see :func:`split_by_script`).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from .errors import LanguageNotInstalledError, UnknownLanguageError

LANGUAGE_CODES = ("auto", "auto_yue", "en", "zh", "ja", "ko", "yue",
                  "all_zh", "all_ja", "all_ko", "all_yue")


class G2PBackend(Protocol):
    """What a language backend provides. ``word2ph`` is per normalised char, or None."""

    lang: str

    def normalize(self, text: str) -> str: ...

    def g2p(self, norm_text: str) -> tuple[list[str], list[int] | None]: ...


_FACTORIES: dict[str, Callable[[], G2PBackend]] = {}
_INSTANCES: dict[str, G2PBackend] = {}
_REGISTRY_LOCK = threading.Lock()


def register_g2p(lang: str, factory: Callable[[], G2PBackend]) -> None:
    """Register (or replace) the backend factory for ``lang``; it is called on first use."""
    with _REGISTRY_LOCK:
        _FACTORIES[lang] = factory
        _INSTANCES.pop(lang, None)


def unregister_g2p(lang: str) -> None:
    """Remove the backend for ``lang`` (built-in zh/en come back on the next lookup)."""
    with _REGISTRY_LOCK:
        _FACTORIES.pop(lang, None)
        _INSTANCES.pop(lang, None)


def installed_languages() -> list[str]:
    """Languages that have a registered G2P backend."""
    _register_builtins()
    return sorted(_FACTORIES)


def is_installed(lang: str) -> bool:
    _register_builtins()
    return lang in _FACTORIES


def get_g2p(lang: str) -> G2PBackend:
    """The (shared, lazily built) backend for ``lang``."""
    _register_builtins()
    with _REGISTRY_LOCK:
        if lang not in _FACTORIES:
            raise LanguageNotInstalledError(
                f"language {lang!r} is not installed: no G2P backend is registered for it "
                f"(installed: {', '.join(sorted(_FACTORIES))}); add one with "
                "gpt_sovits.text.lang.register_g2p(lang, factory)"
            )
        if lang not in _INSTANCES:
            _INSTANCES[lang] = _FACTORIES[lang]()
        return _INSTANCES[lang]


def _make_zh() -> G2PBackend:
    from .zh_g2p import ChineseG2P

    return ChineseG2P()


def _make_en() -> G2PBackend:
    from .en_g2p import EnglishG2P

    return EnglishG2P()


def _register_builtins() -> None:
    with _REGISTRY_LOCK:
        _FACTORIES.setdefault("zh", _make_zh)
        _FACTORIES.setdefault("en", _make_en)


def check_language(code: str) -> None:
    """Raise if ``code`` is unknown or needs a backend that is not installed.

    ``auto`` only needs zh and en up front; it fails later if the text has kana or hangul.
    """
    if code not in LANGUAGE_CODES:
        raise UnknownLanguageError(
            f"unknown language code {code!r}: use one of {', '.join(LANGUAGE_CODES)}"
        )
    needed = {"auto": "zh", "auto_yue": "yue"}.get(code, code.removeprefix("all_"))
    get_g2p(needed)


# ---------------------------------------------------------------------------- segmentation
@dataclass
class LangRun:
    """A stretch of text in one language."""

    lang: str
    text: str
    spell: bool = False  # read Latin words letter by letter (all_xx modes)


_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA = r"\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = r"\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
_LATIN = r"A-Za-z\uff21-\uff3a\uff41-\uff5a\u00c0-\u024f"
_DIGIT = r"0-9\uff10-\uff19"
# Unit symbols glued to a number belong to it ("5kg" is one token), so the number's run reads
# them; both normalisers know these units.
_UNIT_SUFFIX = (
    r"(?:\s?(?:km/h|m/s|mAh|kHz|MHz|GHz|Hz|KB|MB|GB|TB|kW|dB|km²|m²|cm²|m³|km|cm|mm|nm|kg|mg"
    r"|ml|mL|ms|min|°C|°F|℃|℉|%|％|m|g|l|L|s|h|t|W|V)(?![A-Za-z]))?"
)
_TOKEN_RE = re.compile(
    rf"(?P<zh>[{_HAN}]+)|(?P<ja>[{_KANA}]+)|(?P<ko>[{_HANGUL}]+)|(?P<en>[{_LATIN}]+)"
    rf"|(?P<num>[{_DIGIT}]+(?:[.,:/][{_DIGIT}]+)*{_UNIT_SUFFIX})|(?P<other>.)",
    re.S,
)
_CJK_START_RE = re.compile(rf"[{_HAN}{_KANA}{_HANGUL}]")


def _tokens(text: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "other", m.group(0)) for m in _TOKEN_RE.finditer(text)]


def _number_language(tokens: list[tuple[str, str]], i: int, default: str) -> str:
    """Pick the language a digit token joins.

    Glued to letters on its left (``GPT4``) it joins them; directly followed by CJK text
    (``3个``, ``2024年``) it joins that; otherwise the previous run, else the next one.
    """
    prev = tokens[i - 1] if i > 0 else None
    if prev and prev[0] == "en":
        return "en"
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    if nxt and nxt[0] in ("zh", "ja", "ko"):
        return nxt[0]
    for kind, _ in reversed(tokens[:i]):
        if kind in ("zh", "ja", "ko", "en"):
            return kind
    for kind, _ in tokens[i + 1:]:
        if kind in ("zh", "ja", "ko", "en"):
            return kind
    return default


def split_by_script(text: str, default: str = "zh") -> list[LangRun]:
    """Split text into runs by script: Han -> zh, kana -> ja, hangul -> ko, Latin -> en.

    Digits join a neighbouring run; spaces and punctuation stay with the run they follow
    (leading ones join the first run). Text with no letters at all is one ``default`` run.
    """
    tokens = _tokens(text)
    langs: list[str | None] = []
    for i, (kind, _) in enumerate(tokens):
        if kind == "num":
            langs.append(_number_language(tokens, i, default))
        elif kind == "other":
            langs.append(None)
        else:
            langs.append(kind)
    first = next((lang for lang in langs if lang), default)
    runs: list[LangRun] = []
    for (_, chunk), lang in zip(tokens, langs):
        lang = lang or (runs[-1].lang if runs else first)
        if runs and runs[-1].lang == lang:
            runs[-1].text += chunk
        else:
            runs.append(LangRun(lang, chunk))
    return runs


def _merge_same(runs: list[LangRun]) -> list[LangRun]:
    out: list[LangRun] = []
    for run in runs:
        if out and out[-1].lang == run.lang and out[-1].spell == run.spell:
            out[-1].text += run.text
        else:
            out.append(LangRun(run.lang, run.text, run.spell))
    return out


def segment_languages(text: str, code: str) -> list[LangRun]:
    """Split ``text`` into language runs for language code ``code`` (see module docstring)."""
    if code not in LANGUAGE_CODES:
        raise UnknownLanguageError(
            f"unknown language code {code!r}: use one of {', '.join(LANGUAGE_CODES)}"
        )
    text = re.sub(" {2,}", " ", text)
    if code == "en":
        return [LangRun("en", text)]
    if code in ("auto", "auto_yue"):
        runs = split_by_script(text, default="zh")
        if code == "auto_yue":
            runs = [LangRun("yue" if r.lang == "zh" else r.lang, r.text) for r in runs]
        return _merge_same(runs)
    user = code.removeprefix("all_")
    spell = code.startswith("all_")
    runs = [
        LangRun("en", r.text, spell) if r.lang == "en" else LangRun(user, r.text)
        for r in split_by_script(text, default=user)
    ]
    return _merge_same(runs)
