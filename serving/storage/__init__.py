"""Voice registry storage: the `VoiceStore` interface and its embedded SQLite + files backend."""
from __future__ import annotations

from .base import (
    FileSource,
    InvalidVoiceIdError,
    StorageError,
    StoredFile,
    SweepReport,
    VoiceExistsError,
    VoiceRecord,
    VoiceStore,
    check_voice_id,
    new_voice_id,
)
from .sqlite_files import DataDirLockedError, SQLiteFileStore

__all__ = [
    "DataDirLockedError",
    "FileSource",
    "InvalidVoiceIdError",
    "SQLiteFileStore",
    "StorageError",
    "StoredFile",
    "SweepReport",
    "VoiceExistsError",
    "VoiceRecord",
    "VoiceStore",
    "check_voice_id",
    "new_voice_id",
]
