"""The inference engine: worker threads fed by a bounded queue, one session per request.

Why it looks like this
- Models are loaded once (`ModelBundle`) and never mutated by a request. Everything that belongs
  to one request (text, voice, params, cancel flag, deadline, output queue, counters) lives in a
  `RequestSession`, so concurrent requests cannot see each other's state.
- Synthesis is blocking PyTorch work. It runs on worker threads, never on the event loop; chunks
  travel back to the async side through an `asyncio.Queue` fed with `call_soon_threadsafe`.
- The job queue is bounded. When it is full `submit` fails at once with a 503 and a Retry-After
  instead of letting latency grow without limit (load shedding beats timeouts).
- Cancellation is cooperative: the session's `should_stop` is passed to the synthesizer, which
  checks it every decode step, so a client that disconnects stops decoding within a few steps.
  The same hook enforces the request deadline.
- Per-voice fine-tuned weights are bundles made with `base.with_weights(gpt, sovits)`; they
  share the SSL/BERT/front end with the base and sit in a small LRU pool.

Batching: whole-file jobs are micro-batched across requests. A worker that picks one takes up
to `batch_max_requests` queued whole-file jobs for the same bundle (waiting `batch_wait_ms` for
more, if set) and hands them to `Synthesizer.synthesize_many`: ONE `Decoder.generate` over all
their segments, then each job vocoded and answered on its own. A GPT step is memory-bound (the
weights are read once per step whatever the row count), so B rows cost far less than B steps:
about one on a GPU, and measured ~1.9x throughput for 4 requests even on one CPU thread with a
v2-size GPT. Per-request semantics stay: rows keep their own seeds and knobs (same audio batched
or alone), a bad request fails alone, and a cancelled or timed-out job is answered at the next
decode step; its rows cannot leave the running batch, so they decode on and are thrown away
(the batch ends early only once every job in it stopped). Streaming jobs are never batched: they
are judged by first-chunk and per-token latency, which a wider step and a wait to fill the batch
would only worsen. Batched jobs may overtake an earlier streaming or other-bundle job; it waits
at most one batch longer.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from serving.bundle_pool import BundlePool
from serving.errors import OverloadedError, RequestTimeoutError, ServingError

log = logging.getLogger(__name__)


class SynthesizerLike(Protocol):
    """What the engine needs from `gpt_sovits.pipeline.Synthesizer` (tests pass a fake)."""

    def synthesize(self, text: str, voice: Any, params: Any,
                   should_stop: Callable[[], bool] | None = None) -> np.ndarray: ...

    def stream(self, text: str, voice: Any, params: Any,
               should_stop: Callable[[], bool] | None = None) -> Iterator[Any]: ...


BatchJob = tuple[str, Any, Any, Callable[[], bool]]
"""(text, voice, params, should_stop): one job of `synthesize_many(jobs, on_result=...)`, which a
synthesizer may also offer (returns `list[np.ndarray | Exception]` and calls `on_result(i, r)` as
each job settles; see `gpt_sovits.pipeline.Synthesizer`); without it jobs run one by one."""

SynthesizerFactory = Callable[[Any], SynthesizerLike]


class EngineClosedError(OverloadedError):
    code = "shutting_down"


class QueueFullError(OverloadedError):
    code = "queue_full"


class RequestCancelledError(ServingError):
    """The request was cancelled (client went away) before it finished."""

    code, status_code = "cancelled", 499


@dataclass(frozen=True)
class EngineConfig:
    """Sizes and limits of the engine; built from `Settings` by the app."""

    workers: int = 1
    """Synthesis threads. One per accelerator stream; more only helps if the device is idle."""
    batch_max_requests: int = 1
    """Whole-file jobs for one bundle decoded together in one GPT batch; 1 runs them one by one."""
    batch_wait_ms: int = 0
    """How long a worker holding a whole-file job waits for more to fill its batch (0: no wait)."""
    queue_size: int = 8
    """Jobs waiting for a worker; beyond this `submit` rejects with 503."""
    bundle_pool_size: int = 2
    """Fine-tuned (per-voice) model bundles kept loaded, least recently used evicted."""
    request_timeout_s: float = 120.0
    """A request still running after this long is stopped and answered with 504."""
    retry_after_s: float = 1.0
    """Retry-After hint sent with 503 when the queue is full."""


@dataclass(frozen=True)
class SynthesisJob:
    """One request's work: immutable once submitted."""

    text: str
    voice: Any
    """A `VoicePrompt`."""
    params: Any
    """A `SynthesisParams`."""
    stream: bool = False
    gpt_weights: str | None = None
    sovits_weights: str | None = None
    timeout_s: float | None = None


_END = object()


@dataclass(eq=False)  # a session is equal only to itself
class RequestSession:
    """Per-request state shared by one worker thread and one async consumer."""

    job: SynthesisJob
    loop: asyncio.AbstractEventLoop
    deadline: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    first_chunk_at: float | None = None
    finished: float | None = None
    status: str = "queued"
    """queued -> running -> done | cancelled | timeout | failed."""
    error: BaseException | None = None
    stop_checks: int = 0
    stop_checks_after_cancel: int = 0
    chunks: int = 0
    audio_samples: int = 0

    def __post_init__(self) -> None:
        self._cancel = threading.Event()
        self._out: asyncio.Queue[Any] = asyncio.Queue()
        self._done = threading.Event()
        self._closed = False  # the engine has counted it and run its on_finished hook

    # ---- called from any thread -------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the worker to stop; safe to call many times and after completion."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def timed_out(self) -> bool:
        return time.monotonic() > self.deadline

    def should_stop(self) -> bool:
        """Polled by the decoder every step: cancelled or past the deadline."""
        self.stop_checks += 1
        if self._cancel.is_set():
            self.stop_checks_after_cancel += 1
            return True
        return self.timed_out()

    def wait_done(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    # ---- called from the worker thread ------------------------------------------------------
    def _put(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self._out.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._cancel.set()

    def _emit(self, item: Any, n_samples: int) -> None:
        if self.first_chunk_at is None:
            self.first_chunk_at = time.monotonic()
        self.chunks += 1
        self.audio_samples += n_samples
        self._put(item)

    def _finish(self, status: str, error: BaseException | None = None) -> None:
        self.status, self.error, self.finished = status, error, time.monotonic()
        self._done.set()
        self._put(_END)

    # ---- called from the event loop ---------------------------------------------------------
    async def _next(self) -> Any:
        remaining = self.deadline - time.monotonic()
        try:
            return await asyncio.wait_for(self._out.get(), timeout=max(remaining, 0.0) + 1.0)
        except asyncio.TimeoutError:
            self.cancel()
            raise RequestTimeoutError(
                "Synthesis did not finish within the request timeout; send shorter text."
            ) from None

    async def chunks_async(self) -> AsyncIterator[Any]:
        """Yield `AudioChunk`s as the worker makes them; raise the worker's error at the end."""
        try:
            while True:
                item = await self._next()
                if item is _END:
                    if self.error is not None:
                        raise self.error
                    return
                yield item
        finally:
            self.cancel()  # consumer gone (done, error or disconnect): stop the worker

    async def result(self) -> np.ndarray:
        """Wait for a whole-file job and return its float32 samples."""
        audio: np.ndarray | None = None
        async for item in self.chunks_async():
            audio = item
        if audio is None:
            raise RequestTimeoutError("Synthesis produced no audio before it stopped.")
        return audio


def _bundle_key(job: SynthesisJob) -> tuple[str, str]:
    return job.gpt_weights or "", job.sovits_weights or ""


class _JobQueue:
    """Bounded FIFO of sessions that also lets a worker take matching jobs out of turn (batching).

    `queue.Queue` cannot remove items from the middle, so this is a deque under one condition.
    `None` is the worker stop signal; it ignores the bound so shutdown never blocks on it.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[RequestSession | None] = deque()
        self._cond = threading.Condition()

    def _jobs(self) -> int:
        return sum(1 for item in self._items if item is not None)

    def qsize(self) -> int:
        with self._cond:
            return self._jobs()

    def put_nowait(self, session: RequestSession) -> None:
        with self._cond:
            if self._jobs() >= self.maxsize:
                raise queue.Full
            self._items.append(session)
            self._cond.notify_all()  # a worker waiting to fill a batch must see it too

    def put_stop(self) -> None:
        with self._cond:
            self._items.append(None)
            self._cond.notify_all()

    def get(self) -> RequestSession | None:
        with self._cond:
            while not self._items:
                self._cond.wait()
            return self._items.popleft()

    def get_nowait(self) -> RequestSession | None:
        with self._cond:
            if not self._items:
                raise queue.Empty
            return self._items.popleft()

    def take(self, match: Callable[[RequestSession], bool], limit: int, wait_s: float) -> list[RequestSession]:
        """Remove up to `limit` queued sessions that `match`, oldest first, waiting at most `wait_s`."""
        end = time.monotonic() + wait_s
        taken: list[RequestSession] = []
        with self._cond:
            while True:
                keep: deque[RequestSession | None] = deque()
                for item in self._items:  # by identity: sessions hold tensors, `==` is no use
                    if len(taken) < limit and item is not None and match(item):
                        taken.append(item)
                    else:
                        keep.append(item)
                self._items = keep
                remaining = end - time.monotonic()
                if len(taken) >= limit or remaining <= 0 or any(i is None for i in self._items):
                    return taken
                self._cond.wait(remaining)


@dataclass
class EngineStats:
    submitted: int = 0
    rejected: int = 0
    completed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    failed: int = 0
    batches: int = 0
    """Cross-request batches run (two or more jobs in one `synthesize_many` call)."""
    batched_jobs: int = 0
    """Jobs that ran inside such a batch."""


class InferenceEngine:
    """Worker pool + bounded queue around a shared, read-only `ModelBundle`."""

    def __init__(self, bundle: Any, synthesizer_factory: SynthesizerFactory,
                 config: EngineConfig | None = None,
                 on_finished: Callable[[RequestSession], None] | None = None) -> None:
        self.config = config or EngineConfig()
        self.bundle = bundle
        self.pool = BundlePool(bundle, self.config.bundle_pool_size)
        self._factory = synthesizer_factory
        self._queue = _JobQueue(self.config.queue_size)
        self._lock = threading.Lock()
        self._inflight = 0
        self._accepting = False
        self._threads: list[threading.Thread] = []
        self.stats = EngineStats()
        self.ready = False
        self._on_finished = on_finished

    @property
    def sample_rate(self) -> int:
        return int(self.bundle.sample_rate)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        self._accepting = True
        for i in range(max(1, self.config.workers)):
            t = threading.Thread(target=self._work, name=f"gsv-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop_accepting(self) -> None:
        self._accepting = False
        self.ready = False

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Drain: refuse new jobs, let queued and running ones finish, then stop the workers.

        Returns False when work was still running at the timeout (it is then cancelled).
        """
        self.stop_accepting()
        end = time.monotonic() + timeout
        while (self.queue_depth() or self.inflight()) and time.monotonic() < end:
            time.sleep(0.02)
        drained = not (self.queue_depth() or self.inflight())
        if not drained:
            self._cancel_queued()
        for _ in self._threads:
            self._queue.put_stop()
        for t in self._threads:
            t.join(timeout=max(0.1, end - time.monotonic()))
        self._threads = []
        return drained

    def _cancel_queued(self) -> None:
        while True:
            try:
                s = self._queue.get_nowait()
            except queue.Empty:
                return
            if s is not None:
                s.cancel()
                s._finish("cancelled", EngineClosedError("The server is shutting down."))

    # ---- submission -------------------------------------------------------------------------
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def inflight(self) -> int:
        with self._lock:
            return self._inflight

    def submit(self, job: SynthesisJob, loop: asyncio.AbstractEventLoop | None = None) -> RequestSession:
        """Queue a job; raises `QueueFullError`/`EngineClosedError` (503) instead of waiting."""
        if not self._accepting:
            raise EngineClosedError("The server is draining or not started; retry on another instance.",
                                    retry_after=self.config.retry_after_s)
        timeout = job.timeout_s or self.config.request_timeout_s
        session = RequestSession(job=job, loop=loop or asyncio.get_running_loop(),
                                 deadline=time.monotonic() + timeout)
        try:
            self._queue.put_nowait(session)
        except queue.Full:
            with self._lock:
                self.stats.rejected += 1
            raise QueueFullError(
                f"All {self.config.workers} synthesis workers are busy and {self.config.queue_size} "
                "requests are waiting; retry after the Retry-After delay.",
                retry_after=self.config.retry_after_s,
            ) from None
        with self._lock:
            self.stats.submitted += 1
        return session

    # ---- worker side ------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            session = self._queue.get()
            if session is None:
                return
            with self._lock:
                self._inflight += 1
            batch: list[RequestSession] = [session]
            try:
                try:
                    batch, synth = self._gather(session)
                except Exception:  # never lose the job or the worker over batching
                    log.exception("gathering a batch failed; running the job alone")
                    synth = None
                if len(batch) == 1:
                    self._run(session, synth)
                else:
                    self._run_batch(batch, synth)
            finally:
                for s in batch:
                    self._close(s)

    def _close(self, session: RequestSession) -> None:
        """Count a finished session and run the hook, once; called right after `_finish`."""
        if session._closed:
            return
        session._closed = True
        with self._lock:
            self._inflight -= 1
            self._count(session.status)
        if self._on_finished is not None:
            try:
                self._on_finished(session)
            except Exception:  # metrics must never kill a worker
                log.exception("on_finished hook failed")

    def _count(self, status: str) -> None:
        attr = {"done": "completed", "cancelled": "cancelled", "timeout": "timed_out"}.get(status, "failed")
        setattr(self.stats, attr, getattr(self.stats, attr) + 1)

    def _gather(self, head: RequestSession) -> tuple[list[RequestSession], SynthesizerLike | None]:
        """The head job plus queued whole-file jobs for its bundle, when batching can help."""
        cfg, job = self.config, head.job
        if job.stream or cfg.batch_max_requests <= 1:
            return [head], None
        try:
            synth = self._factory(self.pool.get(job.gpt_weights, job.sovits_weights))
        except Exception:  # `_run` makes it again and reports the error on this job alone
            return [head], None
        if not callable(getattr(synth, "synthesize_many", None)):
            return [head], synth
        key = _bundle_key(job)
        more = self._queue.take(lambda s: not s.job.stream and _bundle_key(s.job) == key,
                                cfg.batch_max_requests - 1, cfg.batch_wait_ms / 1000.0)
        if more:
            with self._lock:
                self._inflight += len(more)
        return [head, *more], synth

    def _run(self, session: RequestSession, synth: SynthesizerLike | None = None) -> None:
        job = session.job
        session.started, session.status = time.monotonic(), "running"
        try:
            if not session.should_stop():
                synth = synth or self._factory(self.pool.get(job.gpt_weights, job.sovits_weights))
                if job.stream:
                    for chunk in synth.stream(job.text, job.voice, job.params, should_stop=session.should_stop):
                        session._emit(chunk, int(np.asarray(chunk.samples).size))
                        if session.cancelled or session.timed_out():
                            break
                else:
                    audio = synth.synthesize(job.text, job.voice, job.params, should_stop=session.should_stop)
                    if not session.cancelled and not session.timed_out():
                        session._emit(np.asarray(audio, dtype=np.float32), int(np.asarray(audio).size))
        except Exception as exc:  # reported to the client by the async side
            log.warning("synthesis %s failed: %s", session.id, exc)
            session._finish("failed", exc)
            return
        self._finish_ended(session)

    def _finish_ended(self, session: RequestSession) -> None:
        if session.cancelled:
            session._finish("cancelled", RequestCancelledError("The request was cancelled."))
        elif session.timed_out():
            session._finish("timeout", RequestTimeoutError(
                "Synthesis did not finish within the request timeout; send shorter text."))
        else:
            session._finish("done")

    def _run_batch(self, batch: list[RequestSession], synth: Any) -> None:
        """Several whole-file jobs through one `synthesize_many` call, each finished on its own."""
        now = time.monotonic()
        for s in batch:
            s.started, s.status = now, "running"
        with self._lock:
            self.stats.batches += 1
            self.stats.batched_jobs += len(batch)
        jobs = [(s.job.text, s.job.voice, s.job.params, self._batch_stop(s)) for s in batch]
        settled: set[int] = set()

        def on_result(i: int, result: Any) -> None:  # each job is answered as soon as it is ready
            settled.add(i)
            self._deliver(batch[i], result)

        try:
            results = synth.synthesize_many(jobs, on_result=on_result)
        except Exception as exc:  # the pipeline isolates per-job errors; this is the batch itself
            log.warning("batch of %d failed: %s", len(batch), exc)
            results = [exc] * len(batch)
        for i, (s, result) in enumerate(zip(batch, results, strict=True)):
            if i not in settled:
                self._deliver(s, result)

    def _deliver(self, session: RequestSession, result: Any) -> None:
        """Answer one batched job with its audio or error (unless it was answered already)."""
        if session.finished is not None:  # cancelled or timed out mid-batch
            return
        if isinstance(result, BaseException):
            log.warning("synthesis %s failed: %s", session.id, result)
            session._finish("failed", result)
        else:
            if not session.cancelled and not session.timed_out():
                audio = np.asarray(result, dtype=np.float32)
                session._emit(audio, int(audio.size))
            self._finish_ended(session)
        self._close(session)

    def _batch_stop(self, session: RequestSession) -> Callable[[], bool]:
        """`should_stop` for a batched job: the first time it trips, answer the client right away.

        The job's rows may still be decoding inside the shared batch, but the caller gets its
        cancelled/timeout answer (and the metrics hook runs) now, not when the batch ends.
        """
        def stop() -> bool:
            if session.finished is not None:
                return True
            if not session.should_stop():
                return False
            self._finish_ended(session)
            self._close(session)
            return True

        return stop

    # ---- warm-up ----------------------------------------------------------------------------
    def warm_up(self, voice: Any, params: Any, text: str = "Hello.", timeout: float = 300.0) -> None:
        """Run one tiny synthesis on a worker (compiles kernels, fills caches); sets `ready`.

        Runs the job directly on the worker path so it neither needs an event loop nor counts
        against the queue; raises if it fails, leaving the engine not ready.
        """
        loop = asyncio.new_event_loop()
        try:
            session = RequestSession(job=SynthesisJob(text, voice, params), loop=loop,
                                     deadline=time.monotonic() + timeout)
            self._run(session)
            if session.status != "done":
                raise RuntimeError(f"warm-up synthesis ended with status {session.status}: {session.error}")
        finally:
            loop.close()
        self.ready = True
