"""The voice registry interface: what every storage backend must provide.

The service talks to storage only through `VoiceStore`, so the embedded default (SQLite + local
files, `SQLiteFileStore`) can be replaced by PostgreSQL + S3-compatible object storage without
touching the service. Backends promise one thing above all: a voice whose `put_voice` returned
is durable (it survives a crash), and a voice whose `delete` returned never comes back.
"""
from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from gpt_sovits.errors import GSVError

VOICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
"""Accepted voice ids: they become directory names, so no dots, slashes or long strings."""

FileSource = bytes | Path
"""File content handed to `put_voice`: the bytes themselves or a local file to copy."""


class StorageError(GSVError):
    """The registry could not read or write (disk full, database locked, permissions, ...)."""

    code = "storage_error"


class InvalidVoiceIdError(GSVError, ValueError):
    """A voice id that cannot exist (wrong characters or length); treated like "not found"."""

    code = "voice_not_found"


class VoiceExistsError(StorageError):
    """`put_voice` was given an id that is already registered."""

    code = "voice_exists"


@dataclass(frozen=True)
class StoredFile:
    """Integrity facts about one stored file (checked by `VoiceStore.verify`)."""

    sha256: str
    size: int


@dataclass
class VoiceRecord:
    """Metadata of one voice. Tensors and audio live in its files, not here."""

    id: str
    owner: str
    """Hash of the owner's API key (never the key itself)."""
    name: str
    language: str
    """Prompt language ("auto", "en", "zh", ...)."""
    transcript: str | None
    """What the user said the upload contains, as given."""
    prompt_text: str | None
    """Transcript actually used for the reference; None means reference-free prompting."""
    created_at: float
    """Unix time of creation."""
    content_hash: str
    """Hash of the voice prompt; part of cache keys so stale tensors are never served."""
    files: dict[str, StoredFile] = field(default_factory=dict)
    """Relative file name (posix) -> integrity facts; filled by `put_voice`."""
    embedding: np.ndarray | None = None
    """Unit-length speaker embedding (float32), or None when no speaker encoder was available."""
    status: str = "ready"
    gpt_weights: str | None = None
    """File name of fine-tuned GPT weights among `files`, if the voice has them."""
    sovits_weights: str | None = None
    """File name of fine-tuned SoVITS weights among `files`, if the voice has them."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Ingest statistics (durations, levels, chosen segments) for display and debugging."""
    warnings: list[dict[str, Any]] = field(default_factory=list)
    """Warnings raised at creation, e.g. {"code": "near_duplicate", "voice_id": ..., ...}."""

    @property
    def has_finetune(self) -> bool:
        return self.gpt_weights is not None or self.sovits_weights is not None


@dataclass
class SweepReport:
    """What a start-up sweep found and removed."""

    removed_dirs: list[str] = field(default_factory=list)
    removed_temp_files: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    """Ids of registered voices whose files are missing (kept: an operator must look)."""


def new_voice_id() -> str:
    """A fresh random voice id (96 bits; not guessable, so ids are safe to share in URLs)."""
    return "v_" + secrets.token_hex(12)


def check_voice_id(voice_id: str) -> str:
    """Return `voice_id` if it is well formed, else raise `InvalidVoiceIdError`."""
    if not isinstance(voice_id, str) or not VOICE_ID_RE.match(voice_id):
        raise InvalidVoiceIdError(f"Voice '{voice_id}' does not exist (malformed id).")
    return voice_id


def check_file_name(name: str) -> str:
    """Relative posix names only: no absolute paths, no '..', no hidden or temp-looking parts."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or any(p in ("", ".", "..") or p.startswith(".") for p in path.parts):
        raise ValueError(f"invalid stored file name {name!r}: use a relative path like 'prompt/tokens.bin'")
    return path.as_posix()


class VoiceStore(ABC):
    """Durable voice registry: metadata plus the voice's files."""

    @abstractmethod
    def put_voice(self, record: VoiceRecord, files: Mapping[str, FileSource]) -> VoiceRecord:
        """Store all `files`, then commit `record`; return it with `files` filled in.

        When this returns the voice is durable. When it raises, nothing is visible (leftover
        files are removed now or by the next `sweep_orphans`).
        """

    @abstractmethod
    def get(self, voice_id: str) -> VoiceRecord | None:
        """The record, or None when no such voice exists (malformed ids included)."""

    @abstractmethod
    def list(self, owner: str | None = None) -> list[VoiceRecord]:
        """Voices of one owner (all voices when None), oldest first."""

    @abstractmethod
    def delete(self, voice_id: str) -> bool:
        """Remove the record (committed first), then its files. False when it did not exist."""

    @abstractmethod
    def sweep_orphans(self) -> SweepReport:
        """Remove files that belong to no committed record (crash leftovers, temp files)."""

    @abstractmethod
    def local_dir(self, voice_id: str) -> Path:
        """A local directory holding the voice's files (a download cache for remote stores)."""

    @abstractmethod
    def read_file(self, voice_id: str, name: str) -> bytes:
        """The content of one stored file."""

    def verify(self, voice_id: str) -> list[str]:
        """Problems with a voice's files (missing, size or hash mismatch); empty when intact."""
        import hashlib

        record = self.get(voice_id)
        if record is None:
            return [f"voice {voice_id} is not registered"]
        problems = []
        for name, facts in record.files.items():
            try:
                data = self.read_file(voice_id, name)
            except (OSError, StorageError) as exc:
                problems.append(f"{name}: unreadable ({exc})")
                continue
            if len(data) != facts.size or hashlib.sha256(data).hexdigest() != facts.sha256:
                problems.append(f"{name}: content does not match the record")
        return problems

    def close(self) -> None:
        """Release connections and locks; the store is unusable afterwards."""

    def __enter__(self) -> "VoiceStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
