"""Child process for test_durability: writes and deletes voices until it is killed.

    python durability_child.py DATA_DIR SEED

After each `put_voice` returns it prints `created <id> <json {name: sha256}>`; after each
`delete` returns it prints `deleted <id>` (and `deleting <id>` before it starts). Lines are flushed immediately, so the parent knows
exactly which operations were acknowledged before the SIGKILL.
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
import time

import numpy as np

from serving.storage import SQLiteFileStore, VoiceRecord, new_voice_id


def main(data_dir: str, seed: int) -> None:
    rng = random.Random(seed)
    store = SQLiteFileStore(data_dir)
    store.sweep_orphans()
    created: list[str] = []
    for i in range(10_000):  # bounded; the parent kills us long before
        if created and rng.random() < 0.2:
            victim = created.pop(rng.randrange(len(created)))
            print(f"deleting {victim}", flush=True)
            store.delete(victim)
            print(f"deleted {victim}", flush=True)
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
        print(f"created {record.id} {json.dumps(hashes)}", flush=True)
        created.append(record.id)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
