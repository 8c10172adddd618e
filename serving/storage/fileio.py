"""Crash-safe file writing: temp name -> fsync -> rename -> fsync directory.

A rename is atomic on POSIX file systems, so a reader sees either no file or the complete file.
The fsyncs make the order survive power loss: the data blocks reach the disk before the rename,
and the rename (a directory entry) reaches the disk before we report success.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

from .base import FileSource, StoredFile

TEMP_MARK = ".tmp-"
"""Part of every temporary file name; the sweep deletes any file containing it."""
_CHUNK = 1 << 20


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARK in name


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (new, renamed or removed names) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path: Path, stop_at: Path) -> list[Path]:
    """`mkdir -p path` and fsync each parent that got a new entry; returns the created dirs."""
    created: list[Path] = []
    missing = []
    current = path
    while not current.exists() and current != stop_at and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir()
        fsync_dir(directory.parent)
        created.append(directory)
    return created


def durable_write(dest: Path, source: FileSource) -> StoredFile:
    """Write `source` (bytes or a file to copy) to `dest` atomically and durably.

    The caller must `fsync_dir(dest.parent)` afterwards (once per directory, not per file).
    """
    tmp = dest.parent / f".{dest.name}{TEMP_MARK}{secrets.token_hex(4)}"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "xb") as out:
            if isinstance(source, (bytes, bytearray, memoryview)):
                out.write(source)
                digest.update(source)
                size = len(source)
            else:
                with open(source, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return StoredFile(sha256=digest.hexdigest(), size=size)


def remove_tree(path: Path) -> None:
    """Delete a directory tree (or file) and make the removal durable in its parent."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    if path.parent.exists():
        fsync_dir(path.parent)
