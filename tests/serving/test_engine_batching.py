"""Cross-request micro-batching in the engine: queued whole-file jobs share one GPT batch.

Runs the real pipeline on tiny random models (audio depends on voice, seed and tokens). A gate
holds the single worker inside a first job so that the jobs under test pile up in the queue.
"""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from gpt_sovits.pipeline import SynthesisParams, Synthesizer, VoicePrompt
from gpt_sovits.text.errors import LanguageNotInstalledError
from serving.engine import EngineConfig, InferenceEngine, RequestCancelledError, SynthesisJob, _JobQueue
from serving.errors import RequestTimeoutError


def params(seed: int, **kw) -> SynthesisParams:
    return SynthesisParams(text_lang="en", seed=seed, max_tokens_per_phone=3.0, **kw)


class Probe:
    """Shared by the synthesizers of one engine: a start gate, decoder hooks, what ran how."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.batch_sizes: list[int] = []
        self.decode_ends: list[float] = []
        self.on_step = None  # called with the step number of every joint decode poll


class _ProbedDecoder:
    def __init__(self, inner, probe: Probe) -> None:
        self.inner, self.probe = inner, probe

    def generate(self, requests, params, should_stop=None, **kwargs):
        steps = [0]

        def stop() -> bool:
            steps[0] += 1
            if self.probe.on_step is not None:
                self.probe.on_step(steps[0])
            return should_stop is not None and should_stop()

        out = self.inner.generate(requests, params, should_stop=stop, **kwargs)
        self.probe.decode_ends.append(time.monotonic())
        return out

    def stream(self, *args, **kwargs):
        return self.inner.stream(*args, **kwargs)


class ProbedSynthesizer(Synthesizer):
    """The real pipeline; single jobs wait at the gate, batches are recorded."""

    def __init__(self, bundle, probe: Probe) -> None:
        super().__init__(bundle)
        self.probe = probe
        self.decoder = _ProbedDecoder(self.decoder, probe)

    def synthesize(self, *args, **kwargs):
        assert self.probe.gate.wait(30), "test gate never opened"
        return super().synthesize(*args, **kwargs)

    def synthesize_many(self, jobs, on_result=None):
        self.probe.batch_sizes.append(len(jobs))
        return super().synthesize_many(jobs, on_result=on_result)


@pytest.fixture(scope="module")
def voices(tiny_bundle, voices_dir) -> list[VoicePrompt]:
    out = []
    for name in ("en_slt", "en_allison"):
        audio, sr = sf.read(voices_dir / name / "ref.flac", dtype="float32")
        text = (voices_dir / name / "ref.txt").read_text().strip()
        out.append(VoicePrompt.from_audio(tiny_bundle, audio, sr, text, "en"))
    return out


@pytest.fixture
def probe() -> Probe:
    return Probe()


def make_engine(bundle, probe: Probe, finished: list | None = None, **cfg) -> InferenceEngine:
    config = EngineConfig(**{"workers": 1, "batch_max_requests": 4, **cfg})
    hook = finished.append if finished is not None else None
    engine = InferenceEngine(bundle, lambda b: ProbedSynthesizer(b, probe), config, on_finished=hook)
    engine.start()
    return engine


async def hold_worker(engine: InferenceEngine, probe: Probe, voice: VoicePrompt):
    """Submit a whole-file job and wait until the worker is stuck in it at the gate."""
    probe.gate.clear()
    blocker = engine.submit(SynthesisJob("Hold on.", voice, params(0)))
    for _ in range(500):
        if engine.inflight():
            return blocker
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never picked up the blocking job")


async def settle(sessions) -> list:
    return await asyncio.gather(*(s.result() for s in sessions), return_exceptions=True)


def expected(bundle, job: SynthesisJob) -> np.ndarray:
    return Synthesizer(bundle).synthesize(job.text, job.voice, job.params)


def batch_jobs(voices) -> list[SynthesisJob]:
    return [SynthesisJob("Hello there.", voices[0], params(1)),
            SynthesisJob("A longer sentence, in two parts. Yes!", voices[1], params(2)),
            SynthesisJob("Short.", voices[0], params(3, noise_scale=0.0)),
            SynthesisJob("Hello there.", voices[1], params(1))]


def test_queued_whole_file_jobs_share_one_batch_and_sound_as_alone(tiny_bundle, voices, probe) -> None:
    finished: list = []
    engine = make_engine(tiny_bundle, probe, finished)
    jobs = batch_jobs(voices)

    async def main():
        blocker = await hold_worker(engine, probe, voices[0])
        sessions = [engine.submit(j) for j in jobs]
        probe.gate.set()
        return await blocker.result(), await settle(sessions), sessions

    _, results, sessions = asyncio.run(main())
    engine.shutdown()
    assert probe.batch_sizes == [4]
    assert engine.stats.batches == 1 and engine.stats.batched_jobs == 4 and engine.stats.completed == 5
    for job, got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(got, expected(tiny_bundle, job))
    assert len(finished) == 5 and all(s.status == "done" for s in finished)
    for s, audio in zip(sessions, results):  # per-request bookkeeping: start, first chunk, length
        assert s.created <= s.started <= s.first_chunk_at <= s.finished
        assert s.chunks == 1 and s.audio_samples == audio.size
    assert engine.inflight() == 0


def test_max_one_runs_jobs_one_by_one(tiny_bundle, voices, probe) -> None:
    engine = make_engine(tiny_bundle, probe, batch_max_requests=1)
    jobs = batch_jobs(voices)[:3]

    async def main():
        blocker = await hold_worker(engine, probe, voices[0])
        sessions = [engine.submit(j) for j in jobs]
        probe.gate.set()
        await blocker.result()
        return await settle(sessions)

    results = asyncio.run(main())
    engine.shutdown()
    assert probe.batch_sizes == [] and engine.stats.batches == 0 and engine.stats.completed == 4
    for job, got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(got, expected(tiny_bundle, job))


def test_bad_text_fails_alone_and_streams_are_not_batched(tiny_bundle, voices, probe) -> None:
    engine = make_engine(tiny_bundle, probe)
    good = batch_jobs(voices)[:2]
    bad = SynthesisJob("Hello there.", voices[0], SynthesisParams(text_lang="ja", seed=1))
    stream = SynthesisJob("Hello there.", voices[1], params(4), stream=True)

    async def main():
        blocker = await hold_worker(engine, probe, voices[0])
        sessions = [engine.submit(j) for j in (good[0], stream, bad, good[1])]
        probe.gate.set()
        await blocker.result()
        streamed = [c async for c in sessions[1].chunks_async()]
        return await settle([sessions[0], sessions[2], sessions[3]]), streamed

    (first, failed, second), streamed = asyncio.run(main())
    engine.shutdown()
    assert isinstance(failed, LanguageNotInstalledError)
    np.testing.assert_array_equal(first, expected(tiny_bundle, good[0]))
    np.testing.assert_array_equal(second, expected(tiny_bundle, good[1]))
    assert streamed and probe.batch_sizes == [3]  # the stream ran on its own
    assert engine.stats.failed == 1 and engine.stats.completed == 4


def test_cancelled_job_is_answered_while_the_batch_still_decodes(tiny_bundle, voices, probe) -> None:
    finished: list = []
    engine = make_engine(tiny_bundle, probe, finished)
    jobs = batch_jobs(voices)[:3]
    sessions: list = []

    def cancel_second(step: int) -> None:
        if step == 2 and len(probe.batch_sizes) == 1:  # second poll of the joint decode
            sessions[1].cancel()

    async def main():
        blocker = await hold_worker(engine, probe, voices[0])
        sessions.extend(engine.submit(j) for j in jobs)
        probe.on_step = cancel_second
        probe.gate.set()
        await blocker.result()
        return await settle(sessions)

    results = asyncio.run(main())
    engine.shutdown()
    assert probe.batch_sizes == [3]
    assert isinstance(results[1], RequestCancelledError) and sessions[1].status == "cancelled"
    assert sessions[1].finished < probe.decode_ends[-1]  # answered before the joint decode ended
    assert sessions[1].audio_samples == 0 and sessions[1].first_chunk_at is None
    for i in (0, 2):
        np.testing.assert_array_equal(results[i], expected(tiny_bundle, jobs[i]))
    assert engine.stats.cancelled == 1 and engine.stats.completed == 3
    assert sorted(s.status for s in finished) == ["cancelled", "done", "done", "done"]
    assert engine.inflight() == 0


def test_timed_out_job_in_a_batch_times_out_alone(tiny_bundle, voices, probe) -> None:
    engine = make_engine(tiny_bundle, probe)
    jobs = batch_jobs(voices)[:2]
    late = SynthesisJob("Too late.", voices[0], params(7), timeout_s=0.05)

    async def main():
        blocker = await hold_worker(engine, probe, voices[0])
        sessions = [engine.submit(j) for j in (jobs[0], late, jobs[1])]
        await asyncio.sleep(0.1)  # the deadline of `late` passes while it waits in the queue
        probe.gate.set()
        await blocker.result()
        return await settle(sessions), sessions

    results, sessions = asyncio.run(main())
    engine.shutdown()
    assert isinstance(results[1], RequestTimeoutError) and sessions[1].status == "timeout"
    assert probe.batch_sizes == [3]
    np.testing.assert_array_equal(results[0], expected(tiny_bundle, jobs[0]))
    np.testing.assert_array_equal(results[2], expected(tiny_bundle, jobs[1]))
    assert engine.stats.timed_out == 1 and engine.stats.completed == 3


def test_batches_never_mix_model_bundles(fakes, fake_control) -> None:
    """Fine-tuned voices run on their own bundle: only jobs for the same bundle share a batch."""
    batches: list[tuple[str, int]] = []

    fake_synthesizer = type(fakes.factory(fake_control)(fakes.Bundle()))  # conftest's fake pipeline

    class BatchingFake(fake_synthesizer):
        def synthesize_many(self, jobs, on_result=None):
            batches.append((self.bundle.tag, len(jobs)))
            return [self.synthesize(text, voice, p, should_stop=stop) for text, voice, p, stop in jobs]

    engine = InferenceEngine(fakes.Bundle(), lambda b: BatchingFake(b, fake_control),
                             EngineConfig(workers=1, batch_max_requests=8))
    engine.start()
    voice = fakes.Voice("a")

    async def main():
        fake_control.gate.clear()
        blocker = engine.submit(SynthesisJob("hold", voice, fakes.Params(seed=0)))
        for _ in range(500):
            if engine.inflight():
                break
            await asyncio.sleep(0.01)
        texts, tuned = ("one", "two", "three", "four"), (None, "g.ckpt", None, "g.ckpt")
        jobs = [SynthesisJob(t, voice, fakes.Params(seed=i), gpt_weights=g) for i, (t, g) in enumerate(zip(texts, tuned))]
        sessions = [engine.submit(j) for j in jobs]
        fake_control.gate.set()
        await blocker.result()
        return await settle(sessions)

    results = asyncio.run(main())
    engine.shutdown()
    assert batches == [("base", 2), ("g.ckpt|None", 2)]
    assert [r.size for r in results] == [len(t) * 2 * fakes.samples_per_step for t in ("one", "two", "three", "four")]
    assert engine.stats.batched_jobs == 4 and engine.stats.completed == 5


def test_job_queue_take_waits_for_a_matching_job(fakes) -> None:
    """`batch_wait_ms`: a worker filling a batch picks up a job that arrives while it waits."""
    from serving.engine import RequestSession

    q = _JobQueue(maxsize=4)
    loop = asyncio.new_event_loop()
    try:
        def session(text: str) -> RequestSession:
            return RequestSession(job=SynthesisJob(text, fakes.Voice("a"), fakes.Params()), loop=loop,
                                  deadline=time.monotonic() + 60)

        other = session("other")
        q.put_nowait(other)
        wanted = session("wanted")
        timer = threading.Timer(0.05, q.put_nowait, args=(wanted,))
        timer.start()
        taken = q.take(lambda s: s.job.text == "wanted", limit=1, wait_s=30.0)
        timer.join()
        assert taken == [wanted] and q.qsize() == 1 and q.get_nowait() is other
        assert q.take(lambda s: True, limit=3, wait_s=0.0) == []
    finally:
        loop.close()


def test_app_passes_the_batch_settings_to_the_engine(tmp_path, tiny_bundle, helpers) -> None:
    app = helpers.make_app(tmp_path, tiny_bundle, batch_max_requests=3, batch_wait_ms=5)
    with helpers.running(app):
        config = app.state.gsv.engine.config
        assert (config.batch_max_requests, config.batch_wait_ms) == (3, 5)
