"""SQLiteFileStore: round trip, WAL, orphan sweep, deletes that never come back, locking."""
from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from serving.storage import (
    DataDirLockedError,
    SQLiteFileStore,
    StorageError,
    VoiceExistsError,
    VoiceRecord,
    new_voice_id,
)
from serving.storage import sqlite_files


def _record(owner: str = "owner-a", **kw) -> VoiceRecord:
    base = dict(id=new_voice_id(), owner=owner, name="Ann", language="en", transcript="hello there",
                prompt_text=None, created_at=time.time(), content_hash="c0ffee",
                embedding=np.linspace(-1, 1, 8, dtype=np.float32), stats={"speech_s": 12.5},
                warnings=[{"code": "near_duplicate", "voice_id": "v_x", "similarity": 0.9}])
    base.update(kw)
    return VoiceRecord(**base)


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteFileStore(tmp_path / "data")
    yield s
    s.close()


def test_round_trip_keeps_every_field_and_file(store: SQLiteFileStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(np.random.default_rng(0).bytes(300_000))
    rec = _record(gpt_weights="weights/gpt.ckpt")
    files = {"prompt/voice.json": b'{"a": 1}', "audio/ref.flac": b"\x00\x01" * 50, "weights/gpt.ckpt": src}
    stored = store.put_voice(rec, files)

    got = store.get(rec.id)
    assert got is not None
    for name in ("id", "owner", "name", "language", "transcript", "prompt_text", "content_hash",
                 "status", "gpt_weights", "sovits_weights", "stats", "warnings"):
        assert getattr(got, name) == getattr(rec, name), name
    assert got.created_at == pytest.approx(rec.created_at)
    np.testing.assert_array_equal(got.embedding, rec.embedding)
    assert got.has_finetune
    assert set(got.files) == set(files)
    assert got.files == stored.files
    assert got.files["weights/gpt.ckpt"].sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert store.read_file(rec.id, "prompt/voice.json") == b'{"a": 1}'
    assert (store.local_dir(rec.id) / "audio" / "ref.flac").read_bytes() == b"\x00\x01" * 50
    assert store.verify(rec.id) == []


def test_list_filters_by_owner_oldest_first(store: SQLiteFileStore) -> None:
    a1 = store.put_voice(_record("a", created_at=100.0), {"f": b"1"})
    b1 = store.put_voice(_record("b", created_at=150.0), {"f": b"2"})
    a2 = store.put_voice(_record("a", created_at=200.0), {"f": b"3"})
    assert [r.id for r in store.list("a")] == [a1.id, a2.id]
    assert [r.id for r in store.list("b")] == [b1.id]
    assert store.list("nobody") == []
    assert {r.id for r in store.list()} == {a1.id, a2.id, b1.id}


def test_database_is_in_wal_mode_with_full_sync(store: SQLiteFileStore) -> None:
    store.put_voice(_record(), {"f": b"x"})
    assert store.journal_mode() == "wal"
    # WAL is a property of the database file: a fresh connection sees it too, and can read
    # while the store's connection stays open.
    other = sqlite3.connect(store.data_dir / sqlite_files.DB_NAME)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT COUNT(*) FROM voices").fetchone()[0] == 1
    finally:
        other.close()
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_verify_detects_tampered_and_missing_files(store: SQLiteFileStore) -> None:
    rec = store.put_voice(_record(), {"a.bin": b"original", "b.bin": b"other"})
    (store.local_dir(rec.id) / "a.bin").write_bytes(b"tampered")
    (store.local_dir(rec.id) / "b.bin").unlink()
    problems = store.verify(rec.id)
    assert any(p.startswith("a.bin") for p in problems)
    assert any(p.startswith("b.bin") for p in problems)


def test_sweep_removes_orphans_and_temp_files_but_keeps_committed_voices(store: SQLiteFileStore) -> None:
    kept = store.put_voice(_record(), {"prompt/voice.json": b"{}"})
    voices = store.voices_dir
    (voices / "v_orphan" / "prompt").mkdir(parents=True)  # files written, row never committed
    (voices / "v_orphan" / "prompt" / "voice.json").write_bytes(b"{}")
    (voices / ".deleted-v_old-1234").mkdir()  # interrupted delete
    (voices / "stray.txt").write_bytes(b"?")
    temp_in_kept = store.local_dir(kept.id) / "prompt" / ".voice.json.tmp-abcd"
    temp_in_kept.write_bytes(b"half")

    report = store.sweep_orphans()

    assert sorted(report.removed_dirs) == sorted(["v_orphan", ".deleted-v_old-1234", "stray.txt"])
    assert report.removed_temp_files == [f"{kept.id}/prompt/.voice.json.tmp-abcd"]
    assert report.damaged == []
    assert sorted(p.name for p in voices.iterdir()) == [kept.id]
    assert not temp_in_kept.exists()
    assert store.verify(kept.id) == []
    assert store.sweep_orphans().removed_dirs == []  # idempotent


def test_sweep_reports_but_keeps_voices_with_missing_files(store: SQLiteFileStore) -> None:
    rec = store.put_voice(_record(), {"a.bin": b"1"})
    (store.local_dir(rec.id) / "a.bin").unlink()
    report = store.sweep_orphans()
    assert report.damaged == [rec.id]
    assert store.get(rec.id) is not None


def test_deleted_voice_never_comes_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SQLiteFileStore(data) as store:
        rec = store.put_voice(_record(), {"prompt/voice.json": b"{}"})
        keep = store.put_voice(_record(), {"prompt/voice.json": b"{}"})
        assert store.delete(rec.id) is True
        assert store.get(rec.id) is None
        assert not store.local_dir(rec.id).exists()
        assert store.delete(rec.id) is False
    with SQLiteFileStore(data) as store:
        store.sweep_orphans()
        assert store.get(rec.id) is None
        assert [r.id for r in store.list()] == [keep.id]


def test_crash_between_row_delete_and_file_removal_is_cleaned_by_sweep(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    store = SQLiteFileStore(data)
    rec = store.put_voice(_record(), {"a.bin": b"secret audio"})

    def crash(*_args, **_kw):
        raise KeyboardInterrupt("simulated crash after the row delete committed")

    monkeypatch.setattr(sqlite_files, "remove_tree", crash)
    with pytest.raises(KeyboardInterrupt):
        store.delete(rec.id)
    monkeypatch.undo()
    store.close()

    with SQLiteFileStore(data) as store:
        assert store.get(rec.id) is None  # the row delete was committed before the files went
        report = store.sweep_orphans()
        assert report.removed_dirs and all(rec.id in name for name in report.removed_dirs)
        assert list(store.voices_dir.iterdir()) == []


def test_failed_put_leaves_nothing_behind(store: SQLiteFileStore, tmp_path: Path) -> None:
    rec = _record()
    with pytest.raises(StorageError):
        store.put_voice(rec, {"a.bin": b"ok", "b.bin": tmp_path / "does-not-exist"})
    assert store.get(rec.id) is None
    assert not store.local_dir(rec.id).exists()


def test_duplicate_ids_and_unsafe_names_are_rejected(store: SQLiteFileStore) -> None:
    rec = store.put_voice(_record(), {"a": b"1"})
    with pytest.raises(VoiceExistsError):
        store.put_voice(_record(id=rec.id), {"a": b"2"})
    assert store.read_file(rec.id, "a") == b"1"
    for bad in ("../evil", "/etc/passwd", "a/../../b", ".hidden", ""):
        with pytest.raises(ValueError):
            store.put_voice(_record(), {bad: b"x"})
    for bad_id in ("../data", "a/b", "", "x" * 65, ".v"):
        assert store.get(bad_id) is None
        assert store.delete(bad_id) is False
    with pytest.raises(ValueError):
        store.put_voice(_record(id="../escape"), {"a": b"x"})


def test_one_store_per_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = SQLiteFileStore(data)
    with pytest.raises(DataDirLockedError):
        SQLiteFileStore(data)
    first.close()
    with SQLiteFileStore(data) as again:
        assert again.list() == []


def test_concurrent_writers_and_readers(store: SQLiteFileStore) -> None:
    errors: list[BaseException] = []
    ids: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            for i in range(5):
                rec = store.put_voice(_record(f"o{n}"), {"f.bin": f"{n}-{i}".encode() * 100})
                with lock:
                    ids.append(rec.id)
                assert store.get(rec.id) is not None
                store.list(f"o{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.id for r in store.list()) == sorted(ids)
    assert len(ids) == 20
    assert all(store.verify(i) == [] for i in ids)
