"""Child process for test_durability: writes and deletes voices until it is killed.

    python durability_child.py DATA_DIR SEED

After each `put_voice` returns it prints `<n> created <id> <json {name: sha256}>`; before each
`delete` starts it prints `<n> deleting <id>` and after it returns `<n> deleted <id>`. `<n>` counts
the lines from 0, so the parent can tell that it read every line. Lines are flushed immediately,
so the parent knows exactly which operations were acknowledged before the SIGKILL.
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
import time

import numpy as np

from serving.storage import SQLiteFileStore, VoiceRecord, new_voice_id


class Acks:
    """Numbered, flushed output lines: one per acknowledged step."""

    def __init__(self) -> None:
        self.count = 0

    def emit(self, text: str) -> None:
        print(f"{self.count} {text}", flush=True)
        self.count += 1


def main(data_dir: str, seed: int) -> None:
    rng = random.Random(seed)
    acks = Acks()
    store = SQLiteFileStore(data_dir)
    store.sweep_orphans()
    created: list[str] = []
    for i in range(10_000):  # bounded; the parent kills us long before
        if created and rng.random() < 0.2:
            victim = created.pop(rng.randrange(len(created)))
            acks.emit(f"deleting {victim}")
            store.delete(victim)
            acks.emit(f"deleted {victim}")
            continue
        files = {
            "prompt/voice.safetensors": rng.randbytes(rng.randint(1, 400_000)),
            "prompt/voice.json": json.dumps({"i": i, "seed": seed}).encode(),
            "audio/reference.flac": rng.randbytes(rng.randint(1, 200_000)),
        }
        record = VoiceRecord(
            id=new_voice_id(), owner="durability", name=f"voice {i}", language="en", transcript=None,
            prompt_text=None, created_at=time.time(), content_hash=f"{seed}-{i}",
            embedding=np.full(4, float(i), dtype=np.float32),
        )
        store.put_voice(record, files)
        hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        acks.emit(f"created {record.id} {json.dumps(hashes)}")
        created.append(record.id)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
