"""Exceptions raised by the text frontend.

Every error subclasses :class:`FrontendError`, itself a ``ValueError``, so callers (e.g. the HTTP
layer) can map all bad-input cases to one 4xx response while still telling them apart.
"""
from __future__ import annotations


class FrontendError(ValueError):
    """Base class for every text-frontend input error."""


class EmptyTextError(FrontendError):
    """The text is empty, or contains nothing that can be spoken."""


class TextTooLongError(FrontendError):
    """The text is longer than the configured character limit."""


class UnknownLanguageError(FrontendError):
    """The language code is not one of the GPT-SoVITS v2 codes."""


class LanguageNotInstalledError(FrontendError):
    """The language code is valid but no G2P backend is registered for it."""


class UnknownSplitMethodError(FrontendError):
    """The text split (cut) method name is not known."""


class UnknownVersionError(FrontendError):
    """The model version has no phone table."""


class BertFeatureError(FrontendError):
    """An injected BERT callable returned a tensor of the wrong shape."""
