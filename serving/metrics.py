"""Prometheus metrics, kept in a per-app registry (several apps in one test process never clash).

Labels are bounded: routes are the path *templates* (`/v1/voices/{voice_id}`), never raw paths,
and error codes come from our fixed code set.
"""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5, 4.0, 8.0, 15.0, 30.0)
_RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0)


class Metrics:
    """All service metrics plus the registry they live in."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("gsv_requests_total", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.errors = Counter("gsv_errors_total", "Error responses by error code", ["code"], registry=r)
        self.queue_depth = Gauge("gsv_queue_depth", "Synthesis jobs waiting for a worker", registry=r)
        self.inflight = Gauge("gsv_inflight_jobs", "Synthesis jobs running on workers", registry=r)
        self.active_streams = Gauge("gsv_active_streams", "Streaming responses and WebSocket sessions open",
                                    registry=r)
        self.first_chunk = Histogram("gsv_first_chunk_seconds",
                                     "Time from request accepted to first audio chunk ready",
                                     buckets=_LATENCY_BUCKETS, registry=r)
        self.rtf = Histogram("gsv_rtf", "Real-time factor: synthesis seconds / audio seconds",
                             buckets=_RTF_BUCKETS, registry=r)
        self.jobs = Counter("gsv_jobs_total", "Finished synthesis jobs by final status", ["status"], registry=r)

    def bind_engine(self, queue_depth: Callable[[], float], inflight: Callable[[], float]) -> None:
        """Read engine gauges lazily at scrape time instead of updating them on every change."""
        self.queue_depth.set_function(queue_depth)
        self.inflight.set_function(inflight)

    def observe_job(self, status: str, created: float, started: float | None, first_chunk_at: float | None,
                    finished: float | None, audio_seconds: float) -> None:
        """Record one finished engine job (called from a worker thread; prometheus is thread-safe)."""
        self.jobs.labels(status=status).inc()
        if first_chunk_at is not None:
            self.first_chunk.observe(max(0.0, first_chunk_at - created))
        if status == "done" and started is not None and finished is not None and audio_seconds > 0:
            self.rtf.observe((finished - started) / audio_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
