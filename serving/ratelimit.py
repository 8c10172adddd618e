"""Per-key token-bucket rate limiting (in process; one bucket per API key).

A bucket holds up to `burst` tokens and refills at `per_minute / 60` tokens per second. A request
takes one token; with none left the caller gets 429 and a Retry-After equal to the time until
the next token. Buckets live in an LRU dict with a size cap, so a flood of distinct keys cannot
grow memory without bound (only configured keys reach here when auth is on anyway).
Beyond one process the limit belongs in the gateway or a shared store, not here.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from serving.errors import OverloadedError, RateLimitedError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by caller identity. `per_minute <= 0` disables limiting."""

    def __init__(self, per_minute: int, burst: int | None = None, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, per_minute))
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def acquire(self, key: str) -> float | None:
        """Take a token; return None on success or the seconds to wait before retrying."""
        if not self.enabled:
            return None
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(key, None) or _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[key] = bucket  # re-insert as most recent
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / self.rate

    def check(self, key: str) -> None:
        """`acquire` that raises `RateLimitedError` (429 + Retry-After) when out of tokens."""
        wait = self.acquire(key)
        if wait is not None:
            raise RateLimitedError(
                f"Rate limit of {self.per_minute} requests per minute exceeded; "
                f"retry in {wait:.1f} s.",
                retry_after=wait,
            )


class ConcurrencyLimit:
    """A non-blocking counting limit (open streams): over capacity fails fast with 503.

    Waiting would only move the overload into open sockets; a quick 503 with Retry-After lets
    a load balancer send the client elsewhere.
    """

    def __init__(self, capacity: int, *, retry_after_s: float = 1.0, what: str = "streams") -> None:
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self.what = what
        self._used = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return self._used

    def acquire(self) -> None:
        """Take a slot or raise `OverloadedError` (code too_many_streams, 503)."""
        with self._lock:
            if self._used >= self.capacity:
                raise OverloadedError(
                    f"{self.capacity} {self.what} are already open; retry after the Retry-After delay.",
                    code="too_many_streams", retry_after=self.retry_after_s,
                )
            self._used += 1

    def release(self) -> None:
        with self._lock:
            self._used = max(0, self._used - 1)
