"""Errors raised by the vocoder package."""
from __future__ import annotations

from gpt_sovits.errors import GSVError


class VocoderConfigError(GSVError, ValueError):
    """A `VocoderConfig` that cannot describe a working generator."""

    code = "invalid_vocoder_config"


class VocoderInputError(GSVError, ValueError):
    """A tensor of the wrong shape or type was handed to a vocoder model or loss."""

    code = "invalid_vocoder_input"
