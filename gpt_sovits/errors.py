"""Exception types shared across the project.

Every error we raise on purpose derives from `GSVError` and carries a short machine-readable
`code` (snake_case), so the HTTP layer can map failures to status codes and clients can branch on
them without parsing messages. Modules add their own subclasses here when more than one package
needs them; module-private errors live beside the code that raises them.
"""
from __future__ import annotations

from pathlib import Path


class GSVError(Exception):
    """Base class for deliberate project errors.

    `code` is stable and machine-readable; the message is for humans and says what to do.
    """

    code: str = "gsv_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ModelNotFoundError(GSVError, FileNotFoundError):
    """Pretrained weights were asked for but are not on disk (we never download at run time)."""

    code = "model_not_found"

    def __init__(self, path: str | Path, what: str, *, missing: list[str] | None = None) -> None:
        self.path = Path(path)
        self.missing = list(missing or [])
        detail = f" (missing: {', '.join(self.missing)})" if self.missing else ""
        super().__init__(
            f"Model files not found at '{self.path}'{detail}. Expected {what}. "
            "Weights are never downloaded at run time: copy them there or pass the right path."
        )


class CheckpointError(GSVError):
    """A weight file is missing, corrupt, truncated, of an unknown format or does not fit the model."""

    code = "checkpoint_error"


class UnsupportedCheckpointError(CheckpointError):
    """A well-formed checkpoint of a model family we deliberately do not implement (GPT-SoVITS v3/v4)."""

    code = "unsupported_checkpoint"
