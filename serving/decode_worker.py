"""Child process that decodes one untrusted upload: `python -m serving.decode_worker ...`.

Run by `serving.ingest.AudioDecoder`, never imported by the server for its work. The upload comes
on stdin; the answer goes to stdout as one JSON line followed, on success, by the 32 kHz mono
float32 samples (little-endian). Running in a fresh interpreter means a decoder that hangs,
crashes or eats memory takes down only this process; the parent enforces the time limit and the
child caps its own address space before reading anything.

    argv: max_seconds max_channels memory_bytes
    out:  {"ok": true, "frames": N, "info": {...}}\\n<N float32>   or   {"ok": false, "code", "message"}\\n
"""
from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

OUTPUT_SAMPLE_RATE = 32000


def limit_memory(extra_bytes: int) -> None:
    """Cap this process's address space at its current size plus `extra_bytes` (Linux only)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = current + extra_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError, ImportError):
        pass  # no /proc or no rlimits: the parent's timeout still bounds us


def clipped_fraction(x: Any) -> float:
    """Share of active samples sitting at the peak. Natural peaks touch it a few times; clipping
    holds it for long runs. Only meaningful when the peak is near full scale."""
    import numpy as np

    mag = np.abs(x)
    peak = float(mag.max()) if mag.size else 0.0
    if peak < 0.9:
        return 0.0
    active = int(np.count_nonzero(mag > 0.02))
    return float(np.count_nonzero(mag >= 0.99 * peak)) / max(active, 1)


def probe_channels(data: bytes) -> int | None:
    """Channel count from the header, or None (then `load_audio` reports the real problem)."""
    import soundfile as sf

    try:
        return int(sf.info(io.BytesIO(data)).channels)
    except Exception:  # noqa: BLE001 - any header failure is reported by the full decode
        return None


def decode(data: bytes, max_seconds: float, max_channels: int) -> tuple[dict[str, Any], bytes]:
    """Decode and measure; returns (answer header, sample bytes). Errors become headers."""
    import numpy as np

    from gpt_sovits.audio import AudioDecodeError, load_audio, resample

    channels = probe_channels(data)
    if channels is not None and channels > max_channels:
        return {"ok": False, "code": "too_many_channels",
                "message": f"The upload has {channels} channels; send mono or stereo (downmix it first)."}, b""
    try:
        samples, rate = load_audio(data, max_seconds=max_seconds)
    except AudioDecodeError as exc:
        return {"ok": False, "code": exc.code, "message": str(exc)}, b""
    info = {"input_sample_rate": rate, "input_channels": channels,
            "input_duration_s": round(len(samples) / rate, 3),
            "peak": float(np.max(np.abs(samples))), "clipped_fraction": clipped_fraction(samples)}
    out = resample(samples, rate, OUTPUT_SAMPLE_RATE).astype("<f4")
    return {"ok": True, "frames": int(out.shape[0]), "info": info}, out.tobytes()


def main(argv: list[str]) -> int:
    max_seconds, max_channels, memory_bytes = float(argv[0]), int(argv[1]), int(argv[2])
    # Import first: numpy/OpenBLAS reserve their buffers at import, which is not the upload's cost.
    import numpy  # noqa: F401
    import soundfile  # noqa: F401

    import gpt_sovits.audio  # noqa: F401

    limit_memory(memory_bytes)
    data = sys.stdin.buffer.read()
    try:
        header, payload = decode(data, max_seconds, max_channels)
    except MemoryError:
        header, payload = {"ok": False, "code": "too_long", "message": (
            "Decoding this upload needed more memory than allowed; send a shorter recording.")}, b""
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the upload's fault here
        header, payload = {"ok": False, "code": "corrupt_audio",
                           "message": f"The audio could not be decoded ({type(exc).__name__}: {exc})."}, b""
    sys.stdout.buffer.write(json.dumps(header).encode() + b"\n")
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
