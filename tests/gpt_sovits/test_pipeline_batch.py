"""`Synthesizer.synthesize_many`: several requests in one GPT batch, each as if it ran alone.

Runs the real tiny random models, whose audio depends on the voice, the seed and the tokens, so
"equal to alone" is a real check of per-row seeds, prompts and the split of rows back per job.
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from gpt_sovits.pipeline import ModelBundle, SynthesisParams, Synthesizer, VoicePrompt
from gpt_sovits.text.errors import EmptyTextError, LanguageNotInstalledError


def params(seed: int, **kw) -> SynthesisParams:
    return SynthesisParams(text_lang="en", seed=seed, max_tokens_per_phone=3.0, **kw)


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return ModelBundle.random_tiny(seed=0)


@pytest.fixture(scope="module")
def voices(bundle, voices_dir) -> dict[str, VoicePrompt]:
    out = {}
    for name in ("en_slt", "en_allison"):
        audio, sr = sf.read(voices_dir / name / "ref.flac", dtype="float32")
        text = (voices_dir / name / "ref.txt").read_text().strip()
        out[name] = VoicePrompt.from_audio(bundle, audio, sr, text, "en")
    audio, sr = sf.read(voices_dir / "en_slt" / "ref.flac", dtype="float32")
    out["free"] = VoicePrompt.from_audio(bundle, audio, sr, prompt_text=None)  # reference-free row
    return out


@pytest.fixture(scope="module")
def jobs(voices):
    """Different voices, seeds, lengths and segment counts (one job has three segments)."""
    return [
        ("Hello there.", voices["en_slt"], params(1)),
        ("A somewhat longer sentence, with a pause. And a second one!", voices["en_allison"], params(2)),
        ("Short.", voices["free"], params(3, noise_scale=0.0)),
        ("Hello there.", voices["en_allison"], params(1)),  # same text and seed as job 0, other voice
    ]


def alone(synth: Synthesizer, job) -> np.ndarray:
    text, voice, p = job[:3]
    return synth.synthesize(text, voice, p)


def test_batched_equals_each_alone(bundle, jobs) -> None:
    synth = Synthesizer(bundle)
    expected = [alone(synth, job) for job in jobs]
    seen: list[tuple[int, object]] = []
    results = synth.synthesize_many([(*job, None) for job in jobs], on_result=lambda i, r: seen.append((i, r)))
    assert len(results) == len(jobs)
    for got, want in zip(results, expected, strict=True):
        assert isinstance(got, np.ndarray) and got.size > 0
        np.testing.assert_array_equal(got, want)
    assert sorted(i for i, _ in seen) == [0, 1, 2, 3]  # each job settled once, with its own result
    assert all(r is results[i] for i, r in seen)
    assert not np.array_equal(results[0][:2000], results[3][:2000])  # the voice matters


def test_bad_text_fails_only_its_own_job(bundle, jobs) -> None:
    synth = Synthesizer(bundle)
    batch = [(*jobs[0], None),
             ("   ", jobs[1][1], params(5), None),
             (jobs[1][0], jobs[1][1], SynthesisParams(text_lang="ja", seed=5), None),
             (*jobs[2], None)]
    results = synth.synthesize_many(batch)
    assert isinstance(results[1], EmptyTextError)
    assert isinstance(results[2], LanguageNotInstalledError)
    np.testing.assert_array_equal(results[0], alone(synth, jobs[0]))
    np.testing.assert_array_equal(results[3], alone(synth, jobs[2]))


class RefusingDecoder:
    """Wraps a decoder and refuses any batch holding a request longer than `max_phones`."""

    def __init__(self, inner, max_phones: int) -> None:
        self.inner, self.max_phones, self.calls = inner, max_phones, 0

    def generate(self, requests, params, should_stop=None, **kwargs):
        self.calls += 1
        if any(r.phones.numel() > self.max_phones for r in requests):
            raise ValueError("request too long for this decoder")
        return self.inner.generate(requests, params, should_stop=should_stop, **kwargs)


def test_joint_decode_error_is_pinned_on_the_job_that_caused_it(bundle, jobs, voices) -> None:
    plain = Synthesizer(bundle)
    synth = Synthesizer(bundle)
    long_text = "This sentence is much too long for the refusing decoder to accept at all"
    longest_ok = max(plain._request(s, v).phones.numel()
                     for t, v, p in jobs[:3] for s in plain.segments(t, p))
    synth.decoder = RefusingDecoder(plain.decoder, longest_ok)
    results = synth.synthesize_many([(*jobs[0], None), (long_text, voices["en_slt"], params(9), None),
                                     (*jobs[2], None)])
    assert isinstance(results[1], ValueError)
    assert synth.decoder.calls == 4  # the joint call, then each job alone
    np.testing.assert_array_equal(results[0], alone(plain, jobs[0]))
    np.testing.assert_array_equal(results[2], alone(plain, jobs[2]))


class StopAfter:
    """A `should_stop` that turns True at its n-th call and counts calls after that."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def test_stopping_one_job_leaves_the_others_unchanged(bundle, jobs) -> None:
    synth = Synthesizer(bundle)
    stop = StopAfter(3)  # trips during the joint decode

    def row_steps(stops) -> int:  # batch rows summed over every GPT forward
        rows: list[int] = []
        hook = bundle.gpt.register_forward_pre_hook(lambda _m, args: rows.append(args[0].shape[0]))
        try:
            out = synth.synthesize_many([(*job, s) for job, s in zip(jobs, stops)])
        finally:
            hook.remove()
        return out, sum(rows)

    results, with_stop = row_steps([None, stop, None])
    assert stop.calls == 3  # latched: never asked again once it said stop
    # Its rows left the batch at once instead of decoding on to their end beside the others.
    _, without = row_steps([None, None, None])
    assert with_stop < without
    assert results[1].size == 0  # nothing vocoded for the stopped job
    np.testing.assert_array_equal(results[0], alone(synth, jobs[0]))
    np.testing.assert_array_equal(results[2], alone(synth, jobs[2]))


def test_batch_ends_early_when_every_job_stopped(bundle, jobs) -> None:
    synth = Synthesizer(bundle)
    steps: list[int] = []
    inner = synth.decoder.generate

    def counting(requests, params, should_stop=None, **kwargs):
        def stop() -> bool:
            steps.append(1)
            return should_stop()
        return inner(requests, params, should_stop=stop, **kwargs)

    synth.decoder.generate = counting  # type: ignore[method-assign]
    stops = [StopAfter(2), StopAfter(4)]
    results = synth.synthesize_many([(*jobs[0], stops[0]), (*jobs[1], stops[1])])
    # Each stop is asked once before decoding; the batch ends at the poll where the last job
    # (4th call = 3rd decode poll) asks to stop, though the first one stopped earlier.
    assert len(steps) == 3 and stops[0].calls == 2
    assert all(r.size == 0 for r in results)
    already = synth.synthesize_many([(*jobs[0], lambda: True)])
    assert already[0].size == 0
