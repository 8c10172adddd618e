"""Exceptions raised by the text frontend.

Every error subclasses :class:`FrontendError`, a ``ValueError`` and a
:class:`gpt_sovits.errors.GSVError`, so callers (e.g. the HTTP layer) map all bad-input cases to a
4xx response and tell them apart by the machine-readable ``code``.
"""
from __future__ import annotations

from gpt_sovits.errors import GSVError


class FrontendError(GSVError, ValueError):
    """Base class for every text-frontend input error."""

    code = "invalid_text"


class EmptyTextError(FrontendError):
    """The text is empty, or contains nothing that can be spoken."""

    code = "empty_text"


class TextTooLongError(FrontendError):
    """The text is longer than the configured character limit."""

    code = "text_too_long"


class UnknownLanguageError(FrontendError):
    """The language code is not one of the GPT-SoVITS v2 codes."""

    code = "unknown_language"


class LanguageNotInstalledError(FrontendError):
    """The language code is valid but no G2P backend is registered for it."""

    code = "language_not_installed"


class UnknownSplitMethodError(FrontendError):
    """The text split (cut) method name is not known."""

    code = "unknown_split_method"


class UnknownVersionError(FrontendError):
    """The model version has no phone table."""

    code = "unknown_version"


class BertFeatureError(FrontendError):
    """An injected BERT callable returned a tensor of the wrong shape."""

    code = "bert_feature"
