"""InferenceEngine: queueing, backpressure, cancellation, timeouts, drain, bundle pool (fake model)."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from serving.bundle_pool import BundlePool
from serving.engine import (
    EngineClosedError,
    EngineConfig,
    InferenceEngine,
    QueueFullError,
    SynthesisJob,
)
from serving.errors import RequestTimeoutError


def make_engine(fakes, control, **cfg) -> InferenceEngine:
    engine = InferenceEngine(fakes.Bundle(), fakes.factory(control), EngineConfig(**cfg))
    engine.start()
    return engine


async def collect(session) -> np.ndarray:
    parts = [np.asarray(c.samples) async for c in session.chunks_async()]
    return np.concatenate(parts)


def test_stream_joins_to_file_output(fakes, fake_control) -> None:
    engine = make_engine(fakes, fake_control)
    voice, params = fakes.Voice("a"), fakes.Params(seed=3)

    async def main():
        streamed = await collect(engine.submit(SynthesisJob("hello there", voice, params, stream=True)))
        whole = await engine.submit(SynthesisJob("hello there", voice, params)).result()
        return streamed, whole

    streamed, whole = asyncio.run(main())
    engine.shutdown()
    assert whole.size == len("hello there") * 2 * fakes.samples_per_step
    np.testing.assert_array_equal(streamed, whole)
    assert engine.stats.completed == 2


def test_concurrent_voices_equal_each_alone(fakes, fake_control) -> None:
    engine = make_engine(fakes, fake_control, workers=2)
    jobs = [SynthesisJob("first voice text", fakes.Voice("a"), fakes.Params(seed=1)),
            SynthesisJob("second voice says this", fakes.Voice("b"), fakes.Params(seed=1))]

    async def alone():
        return [await engine.submit(j).result() for j in jobs]

    async def together():
        return await asyncio.gather(*(engine.submit(j).result() for j in jobs))

    single = asyncio.run(alone())
    fake_control.step_delay = 0.001  # make the two interleave on the two workers
    both = asyncio.run(together())
    engine.shutdown()
    for a, b in zip(single, both, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(single[0][:100], single[1][:100])


def test_queue_full_rejects_at_once_and_accepted_jobs_finish(fakes, fake_control) -> None:
    engine = make_engine(fakes, fake_control, workers=1, queue_size=2, retry_after_s=3)
    fake_control.gate.clear()  # hold the worker inside the first job
    voice, params = fakes.Voice("a"), fakes.Params(seed=0)

    async def main():
        accepted = [engine.submit(SynthesisJob("abc", voice, params))]
        for _ in range(200):  # wait until the worker took the first job off the queue
            if engine.inflight():
                break
            await asyncio.sleep(0.01)
        accepted += [engine.submit(SynthesisJob("abc", voice, params)) for _ in range(2)]
        with pytest.raises(QueueFullError) as info:
            engine.submit(SynthesisJob("abc", voice, params))
        assert info.value.retry_after == 3 and info.value.status_code == 503
        fake_control.gate.set()
        return [await s.result() for s in accepted]

    results = asyncio.run(main())
    engine.shutdown()
    assert len(results) == 3 and all(r.size == 3 * 2 * fakes.samples_per_step for r in results)
    assert engine.stats.rejected == 1 and engine.stats.completed == 3


def test_consumer_going_away_stops_decoding_within_a_few_steps(fakes, fake_control) -> None:
    engine = make_engine(fakes, fake_control)
    fake_control.step_delay = 0.002
    text = "x" * 400  # 800 steps if nobody stopped it

    async def main():
        session = engine.submit(SynthesisJob(text, fakes.Voice("a"), fakes.Params(seed=0), stream=True))
        agen = session.chunks_async()
        await agen.__anext__()
        await agen.aclose()  # what a disconnect does to the streaming route
        return session

    session = asyncio.run(main())
    assert session.wait_done(5.0)
    engine.shutdown()
    assert session.status == "cancelled"
    assert session.stop_checks_after_cancel <= 2
    assert fake_control.steps < 100
    assert engine.stats.cancelled == 1


def test_deadline_stops_a_stuck_request_with_timeout_error(fakes, fake_control) -> None:
    engine = make_engine(fakes, fake_control, request_timeout_s=0.1)
    fake_control.step_delay = 0.01

    async def main():
        return engine.submit(SynthesisJob("y" * 500, fakes.Voice("a"), fakes.Params()))

    async def run():
        session = await main()
        with pytest.raises(RequestTimeoutError):
            await session.result()
        return session

    session = asyncio.run(run())
    assert session.wait_done(5.0)
    engine.shutdown()
    assert session.status == "timeout"
    assert fake_control.steps < 1000


def test_worker_error_reaches_the_caller_and_worker_survives(fakes, fake_control) -> None:
    engine = make_engine(fakes, fake_control)
    fake_control.fail_with = ValueError("bad text for this voice")

    async def main():
        with pytest.raises(ValueError, match="bad text"):
            await engine.submit(SynthesisJob("abc", fakes.Voice("a"), fakes.Params())).result()
        fake_control.fail_with = None
        return await engine.submit(SynthesisJob("abc", fakes.Voice("a"), fakes.Params())).result()

    audio = asyncio.run(main())
    engine.shutdown()
    assert audio.size > 0 and engine.stats.failed == 1 and engine.stats.completed == 1


def test_shutdown_drains_queued_work_then_refuses(fakes, fake_control) -> None:
    engine = make_engine(fakes, fake_control)
    fake_control.step_delay = 0.001

    async def main():
        sessions = [engine.submit(SynthesisJob("drain me", fakes.Voice("a"), fakes.Params())) for _ in range(3)]
        done = await asyncio.to_thread(engine.shutdown, 10.0)
        results = [await s.result() for s in sessions]
        with pytest.raises(EngineClosedError):
            engine.submit(SynthesisJob("late", fakes.Voice("a"), fakes.Params()))
        return done, results

    drained, results = asyncio.run(main())
    assert drained and len(results) == 3 and engine.stats.completed == 3
    assert not engine.alive()


def test_warm_up_sets_ready_and_failure_leaves_not_ready(fakes, fake_control) -> None:
    engine = InferenceEngine(fakes.Bundle(), fakes.factory(fake_control))
    fake_control.fail_with = RuntimeError("broken weights")
    with pytest.raises(RuntimeError):
        engine.warm_up(fakes.Voice("w"), fakes.Params(max_new_tokens=4))
    assert not engine.ready
    fake_control.fail_with = None
    engine.warm_up(fakes.Voice("w"), fakes.Params(max_new_tokens=4))
    assert engine.ready and fake_control.steps == 4


def test_finetuned_bundles_share_an_lru_pool(fakes, fake_control) -> None:
    base = fakes.Bundle()
    pool = BundlePool(base, capacity=2)
    assert pool.get(None, None) is base
    a = pool.get("a.ckpt", None)
    assert pool.get("a.ckpt", None) is a and a.tag == "a.ckpt|None"
    pool.get(None, "b.pth")
    pool.get("a.ckpt", None)  # a is now most recent: c evicts b
    pool.get("c.ckpt", "c.pth")
    assert len(pool) == 2 and pool.loads == 3
    assert pool.get("a.ckpt", None) is a
    pool.get(None, "b.pth")
    assert pool.loads == 4


def test_pool_adopts_a_loaded_bundle_without_loading(fakes) -> None:
    base = fakes.Bundle()
    pool = BundlePool(base, capacity=2)
    loaded = base.with_weights("a.ckpt", None)
    pool.put("a.ckpt", None, loaded)
    assert pool.get("a.ckpt", None) is loaded and pool.loads == 0
    pool.put(None, None, loaded)  # the base is not a pool entry
    assert len(pool) == 1
    pool.put("b.ckpt", None, base.with_weights("b.ckpt", None))
    pool.put("c.ckpt", None, base.with_weights("c.ckpt", None))  # LRU: a goes
    assert len(pool) == 2 and pool.get("a.ckpt", None) is not loaded and pool.loads == 1
    off = BundlePool(base, capacity=0)
    off.put("a.ckpt", None, loaded)
    assert len(off) == 0


def test_pool_loads_each_key_once_under_concurrency(fakes) -> None:
    calls: list[str] = []

    class SlowBundle(fakes.Bundle):
        def with_weights(self, gpt, sovits):
            calls.append(gpt)
            threading.Event().wait(0.05)
            return fakes.Bundle(tag=str(gpt))

    pool = BundlePool(SlowBundle(), capacity=2)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(pool.get("x", None))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert calls == ["x"] and len({id(g) for g in got}) == 1


def test_engine_uses_finetuned_bundle_for_voice_weights(fakes, fake_control) -> None:
    engine = make_engine(fakes, fake_control)
    voice, params = fakes.Voice("a"), fakes.Params(seed=5)

    async def main():
        base = await engine.submit(SynthesisJob("same text", voice, params)).result()
        tuned = await engine.submit(SynthesisJob("same text", voice, params, gpt_weights="g.ckpt")).result()
        return base, tuned

    base, tuned = asyncio.run(main())
    engine.shutdown()
    assert base.shape == tuned.shape and not np.array_equal(base, tuned)
    assert engine.pool.loads == 1


def test_pipeline_synthesizers_build_one_backend_per_bundle(monkeypatch, tiny_bundle) -> None:
    import serving.backends
    from serving.app import PipelineSynthesizers

    # CPU at fp32 everywhere: the bundle's eager models, no prepared copy.
    assert PipelineSynthesizers("torch", precision="fp32", vocoder_precision="fp32").backend_for(tiny_bundle) is None
    built: list[str] = []

    class Built:
        warmed = 0

        def warmup(self) -> None:
            self.warmed += 1

    def make(name, bundle, **kwargs):
        built.append(bundle.name)
        return Built()

    monkeypatch.setattr(serving.backends, "make_backend", make)
    fast = PipelineSynthesizers("torch", precision="int8").backend_for(tiny_bundle)
    assert isinstance(fast, Built) and fast.warmed == 1  # any other precision: a warmed fast backend
    built.clear()
    factory = PipelineSynthesizers("onnx", capacity=1)
    first = factory.backend_for(tiny_bundle)
    assert factory.backend_for(tiny_bundle) is first and built == [tiny_bundle.name]
