"""Errors raised by the SoVITS model parts."""
from __future__ import annotations

from gpt_sovits.errors import GSVError


class SoVITSConfigError(GSVError, ValueError):
    """A `SoVITSConfig` that cannot build a working model."""

    code = "invalid_sovits_config"


class SoVITSInputError(GSVError, ValueError):
    """A tensor of the wrong shape, dtype or range was handed to the SoVITS model."""

    code = "invalid_sovits_input"
