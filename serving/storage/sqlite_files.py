"""The embedded voice registry: SQLite (WAL) for metadata, plain files for audio and tensors.

Layout under `data_dir`:

    registry.sqlite3 (+ -wal, -shm)   one row per committed voice
    voices/<id>/...                   that voice's files
    .lock                             held (flock) by the one process that owns the data dir

Durability protocol (see ARCHITECTURE "Data that must never be lost"):
- create: every file goes to a temp name, is fsynced, renamed, and its directory fsynced; only
  then is the row inserted and committed (synchronous=FULL, so the commit itself is durable).
  A crash before the commit leaves a directory without a row, which the start-up sweep removes.
- delete: the row is deleted and committed first, then the files are removed. A crash in
  between leaves files without a row; the sweep removes them. A deleted voice never returns.

One connection guarded by a lock serves all threads: metadata statements take microseconds,
and the slow part (writing files) happens outside the lock.
"""
from __future__ import annotations

import builtins
import fcntl
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    FileSource,
    StorageError,
    StoredFile,
    SweepReport,
    VoiceExistsError,
    VoiceRecord,
    VoiceStore,
    check_file_name,
    check_voice_id,
)
from .fileio import durable_write, fsync_dir, is_temp_name, make_dirs_durable, remove_tree

SCHEMA_VERSION = 1
DB_NAME = "registry.sqlite3"
DELETED_MARK = ".deleted-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    transcript TEXT,
    prompt_text TEXT,
    created_at REAL NOT NULL,
    content_hash TEXT NOT NULL,
    files TEXT NOT NULL,
    embedding BLOB,
    status TEXT NOT NULL,
    gpt_weights TEXT,
    sovits_weights TEXT,
    stats TEXT NOT NULL,
    warnings TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS voices_by_owner ON voices (owner, created_at);
"""
_COLUMNS = (
    "id, owner, name, language, transcript, prompt_text, created_at, content_hash, files, "
    "embedding, status, gpt_weights, sovits_weights, stats, warnings"
)


class DataDirLockedError(StorageError):
    """Another process (or another open store in this process) owns the data directory."""

    code = "data_dir_locked"


class SQLiteFileStore(VoiceStore):
    """`VoiceStore` on one machine: SQLite in WAL mode plus files under data_dir/voices/."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.voices_dir = self.data_dir / "voices"
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.voices_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"Cannot create the data directory '{self.data_dir}': {exc}") from exc
        self._lock_fd = _acquire_dir_lock(self.data_dir)
        self._lock = threading.RLock()
        self._in_flight: set[str] = set()  # ids whose files are being written (sweep skips them)
        try:
            self._db = self._connect()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # ------------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.data_dir / DB_NAME, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"SQLite refused WAL mode (got {mode}); is '{self.data_dir}' on a network disk?")
            # FULL: in WAL mode, NORMAL may lose the last commits on power loss; we promise durability.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"The registry in '{self.data_dir}' has schema {version}, newer than this "
                    f"server understands ({SCHEMA_VERSION}); upgrade the server."
                )
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StorageError(f"Cannot open the voice registry in '{self.data_dir}': {exc}") from exc
        return db

    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    def close(self) -> None:
        with self._lock:
            if getattr(self, "_db", None) is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError("The voice store is closed.")
        return self._db

    # ------------------------------------------------------------------------------ write
    def put_voice(self, record: VoiceRecord, files: Mapping[str, FileSource]) -> VoiceRecord:
        voice_id = check_voice_id(record.id)
        names = {check_file_name(name): source for name, source in files.items()}
        for ref in (record.gpt_weights, record.sovits_weights):
            if ref is not None and ref not in names:
                raise ValueError(f"weights file {ref!r} is referenced by the record but not given")
        with self._lock:
            if voice_id in self._in_flight or self._exists(voice_id):
                raise VoiceExistsError(f"Voice '{voice_id}' already exists.")
            self._in_flight.add(voice_id)
        vdir = self.voices_dir / voice_id
        try:
            if vdir.exists():  # a crash leftover with the same id: it was never committed
                remove_tree(vdir)
            record.files = self._write_files(vdir, names)
            self._insert(record)
        except sqlite3.Error as exc:
            remove_tree(vdir)
            raise StorageError(f"Could not register voice '{voice_id}': {exc}") from exc
        except OSError as exc:
            remove_tree(vdir)
            raise StorageError(f"Could not write the files of voice '{voice_id}': {exc}") from exc
        except BaseException:
            remove_tree(vdir)
            raise
        finally:
            with self._lock:
                self._in_flight.discard(voice_id)
        return record

    def _write_files(self, vdir: Path, files: Mapping[str, FileSource]) -> dict[str, StoredFile]:
        """Write every file durably; the directory entries are fsynced before returning."""
        make_dirs_durable(vdir, stop_at=self.voices_dir)
        stored: dict[str, StoredFile] = {}
        touched: set[Path] = {vdir}
        for name, source in sorted(files.items()):
            dest = vdir / name
            make_dirs_durable(dest.parent, stop_at=vdir)
            stored[name] = durable_write(dest, source)
            touched.add(dest.parent)
        for directory in touched:
            fsync_dir(directory)
        return stored

    def _insert(self, record: VoiceRecord) -> None:
        row = _to_row(record)
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"INSERT INTO voices ({_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def delete(self, voice_id: str) -> bool:
        try:
            check_voice_id(voice_id)
        except ValueError:
            return False
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                gone = db.execute("DELETE FROM voices WHERE id = ?", (voice_id,)).rowcount
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StorageError(f"Could not delete voice '{voice_id}': {exc}") from exc
        vdir = self.voices_dir / voice_id
        if vdir.exists():
            # Rename first so the id's directory vanishes at once even if rmtree is interrupted.
            trash = self.voices_dir / f"{DELETED_MARK}{voice_id}-{secrets.token_hex(4)}"
            os.replace(vdir, trash)
            remove_tree(trash)
        return bool(gone)

    # ------------------------------------------------------------------------------- read
    def _exists(self, voice_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM voices WHERE id = ?", (voice_id,)).fetchone() is not None

    def get(self, voice_id: str) -> VoiceRecord | None:
        try:
            check_voice_id(voice_id)
        except ValueError:
            return None
        with self._lock:
            row = self._conn().execute(f"SELECT {_COLUMNS} FROM voices WHERE id = ?", (voice_id,)).fetchone()
        return _from_row(row) if row else None

    def list(self, owner: str | None = None) -> builtins.list[VoiceRecord]:
        query = f"SELECT {_COLUMNS} FROM voices"
        args: tuple[Any, ...] = ()
        if owner is not None:
            query += " WHERE owner = ?"
            args = (owner,)
        with self._lock:
            rows = self._conn().execute(query + " ORDER BY created_at, id", args).fetchall()
        return [_from_row(row) for row in rows]

    def local_dir(self, voice_id: str) -> Path:
        return self.voices_dir / check_voice_id(voice_id)

    def read_file(self, voice_id: str, name: str) -> bytes:
        return (self.local_dir(voice_id) / check_file_name(name)).read_bytes()

    # ------------------------------------------------------------------------------ sweep
    def sweep_orphans(self) -> SweepReport:
        report = SweepReport()
        with self._lock:
            known = {row[0] for row in self._conn().execute("SELECT id FROM voices")}
            busy = set(self._in_flight)
        present = set()
        for entry in sorted(self.voices_dir.iterdir()):
            name = entry.name
            if name in busy:
                continue
            if name in known and entry.is_dir():
                present.add(name)
                report.removed_temp_files += self._sweep_temp_files(entry)
            elif is_temp_name(name) or name.startswith(DELETED_MARK) or not entry.is_dir() or name not in known:
                remove_tree(entry)
                report.removed_dirs.append(name)
        for voice_id in sorted(known - present - busy):
            report.damaged.append(voice_id)
        for voice_id in sorted(present):
            record = self.get(voice_id)
            if record and any(not (self.voices_dir / voice_id / f).is_file() for f in record.files):
                report.damaged.append(voice_id)
        return report

    def _sweep_temp_files(self, vdir: Path) -> builtins.list[str]:
        removed = []
        for path in sorted(vdir.rglob("*")):
            if path.is_file() and is_temp_name(path.name):
                path.unlink(missing_ok=True)
                fsync_dir(path.parent)
                removed.append(str(path.relative_to(self.voices_dir)))
        return removed


# ---------------------------------------------------------------------------- helpers


def _acquire_dir_lock(data_dir: Path) -> int:
    """Take an exclusive flock on data_dir/.lock; the kernel drops it when the process dies."""
    fd = os.open(data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise DataDirLockedError(
            f"The data directory '{data_dir}' is in use by another server process (or another "
            "open store). Run one server per data directory, or close the other store first."
        ) from exc
    return fd


def _to_row(record: VoiceRecord) -> tuple[Any, ...]:
    embedding = None
    if record.embedding is not None:
        embedding = np.ascontiguousarray(record.embedding, dtype="<f4").tobytes()
    files = {name: {"sha256": f.sha256, "size": f.size} for name, f in record.files.items()}
    return (
        record.id, record.owner, record.name, record.language, record.transcript, record.prompt_text,
        float(record.created_at or time.time()), record.content_hash, json.dumps(files, sort_keys=True),
        embedding, record.status, record.gpt_weights, record.sovits_weights,
        json.dumps(record.stats, sort_keys=True), json.dumps(record.warnings, sort_keys=True),
    )


def _from_row(row: tuple[Any, ...]) -> VoiceRecord:
    (vid, owner, name, language, transcript, prompt_text, created_at, content_hash, files,
     embedding, status, gpt_weights, sovits_weights, stats, warnings) = row
    return VoiceRecord(
        id=vid, owner=owner, name=name, language=language, transcript=transcript,
        prompt_text=prompt_text, created_at=created_at, content_hash=content_hash,
        files={k: StoredFile(**v) for k, v in json.loads(files).items()},
        embedding=None if embedding is None else np.frombuffer(embedding, dtype="<f4").astype(np.float32),
        status=status, gpt_weights=gpt_weights, sovits_weights=sovits_weights,
        stats=json.loads(stats), warnings=json.loads(warnings),
    )
