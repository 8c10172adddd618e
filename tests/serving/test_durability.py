"""Crash durability: a writer killed with SIGKILL at random moments loses nothing it acknowledged.

Each round starts a child that creates (and sometimes deletes) voices in a loop and prints every
acknowledged operation, kills it with SIGKILL after a random delay, then reopens the store the way
a restarting server does. Every acknowledged voice must be present with byte-identical files,
every acknowledged delete must stay deleted, and the sweep must leave no orphans behind.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving.storage import SQLiteFileStore

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("durability_child.py")
ROUNDS = 5


def _run_and_kill(data_dir: Path, seed: int, delay_s: float, log_dir: Path, late_s: float = 0.0) -> list[str]:
    """Start the writer, let it work for `delay_s` after its first ack, SIGKILL it, return its lines.

    `late_s` starts reading only that long after the start, as a parent on a busy machine does,
    so several acks are already waiting in the pipe when the first one is read.

    Every line is read through the one buffered `proc.stdout`: `readline()` may pull several
    lines into that buffer at once (a busy parent wakes late), and `communicate()` reads the raw
    pipe, so mixing the two silently drops acknowledged operations.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    err_path = log_dir / f"writer-{seed}.stderr"
    with err_path.open("wb") as err:  # a file, not a pipe: nothing to drain while the writer runs
        proc = subprocess.Popen([sys.executable, str(CHILD), str(data_dir), str(seed)], stdout=subprocess.PIPE,
                                stderr=err, env=env)
    assert proc.stdout is not None
    try:
        time.sleep(late_s)
        first = proc.stdout.readline()  # wait for the first acknowledged operation (start-up done)
        assert first, f"writer died before doing anything: {err_path.read_text()[-2000:]}"
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()  # buffered remainder + everything up to EOF (the writer is dead)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the writer must be killed, not finish"
    text = (first + rest).decode()
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]  # the last piece may be a half-written line


@pytest.mark.timeout(300)
def test_sigkill_at_random_points_loses_no_acknowledged_voice(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    data = tmp_path / "data"
    alive: dict[str, dict[str, str]] = {}
    deleted: set[str] = set()
    for round_ in range(ROUNDS):
        lines = _run_and_kill(data, seed=round_, delay_s=rng.uniform(0.05, 0.8), log_dir=tmp_path,
                              late_s=0.5 if round_ % 2 else 0.0)
        numbers = [int(line.split(" ", 1)[0]) for line in lines]
        assert numbers == list(range(len(lines))), f"round {round_}: the test lost acknowledgement lines"
        in_doubt: set[str] = set()  # delete started, not acknowledged: either outcome is fine
        for line in lines:
            _, kind, voice_id, *rest = line.split(" ", 3)
            if kind == "created":
                assert voice_id not in alive and voice_id not in deleted, f"voice id {voice_id} reused"
                alive[voice_id] = json.loads(rest[0])
            elif kind == "deleting":
                assert voice_id in alive, f"round {round_}: delete of a voice never acknowledged: {voice_id}"
                in_doubt.add(voice_id)
            else:
                assert kind == "deleted" and voice_id in in_doubt, f"round {round_}: unexpected line {line!r}"
                in_doubt.discard(voice_id)
                alive.pop(voice_id)
                deleted.add(voice_id)

        with SQLiteFileStore(data) as store:  # what a restarting server does
            report = store.sweep_orphans()
            assert report.damaged == []
            registered = {r.id for r in store.list()}
            for voice_id in in_doubt - registered:
                alive.pop(voice_id)
                deleted.add(voice_id)
            assert set(alive) <= registered, f"round {round_}: acknowledged voices lost"
            assert not (deleted & registered), f"round {round_}: deleted voices came back"
            # At most one voice can be committed without its ack line having been read.
            assert len(registered - set(alive)) <= 1
            for voice_id, hashes in alive.items():
                record = store.get(voice_id)
                assert {name: f.sha256 for name, f in record.files.items()} == hashes
                assert store.verify(voice_id) == []
            on_disk = {p.name for p in store.voices_dir.iterdir()}
            assert on_disk == registered, f"round {round_}: orphans left after the sweep"
            temp = [p for p in store.voices_dir.rglob("*") if ".tmp-" in p.name]
            assert temp == []
            # Voices committed without an ack are legitimate; adopt them so later rounds check them too.
            for voice_id in registered - set(alive):
                alive[voice_id] = {n: f.sha256 for n, f in store.get(voice_id).files.items()}
    assert len(alive) + len(deleted) >= ROUNDS  # every round acknowledged at least one operation
