"""The synthesis pipeline on a backend: same audio as the plain pipeline, early first chunk."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from gpt_sovits.pipeline import SynthesisParams, Synthesizer, VoicePrompt

TEXT = "Hello world, this is the first clause. And here comes a second sentence, then a third."
# Greedy decoding and a fixed seed: every path is deterministic, so outputs can be compared.
PARAMS = SynthesisParams(top_k=1, seed=7, text_lang="en", max_tokens_per_phone=2.0, noise_scale=0.0,
                         first_chunk_tokens=4, chunk_tokens=16)


@pytest.fixture(scope="module")
def voice(tiny_bundle, voices_dir) -> VoicePrompt:
    audio, sr = sf.read(voices_dir / "en_slt" / "ref.flac", dtype="float32")
    text = (voices_dir / "en_slt" / "ref.txt").read_text().strip()
    return VoicePrompt.from_audio(tiny_bundle, audio, sr, text, "en")


@pytest.mark.parametrize("which", ["torch", "onnx"])
def test_backend_pipeline_equals_plain_pipeline(tiny_bundle, voice, torch_backend, onnx_backend, which):
    backend = torch_backend if which == "torch" else onnx_backend
    plain = Synthesizer(tiny_bundle).synthesize(TEXT, voice, PARAMS)
    fast = Synthesizer(tiny_bundle, backend=backend)
    audio = fast.synthesize(TEXT, voice, PARAMS)
    assert audio.shape == plain.shape and np.abs(plain).max() > 1e-2
    np.testing.assert_allclose(audio, plain, atol=1e-4)
    streamed = np.concatenate([c.samples for c in fast.stream(TEXT, voice, PARAMS)])
    assert streamed.shape == plain.shape
    # Chunk joins are cross-faded re-decodes of the same tokens (ChunkedDecoder); the stated bound
    # is a relative L2 error below 0.5 on this random-attention tiny model.
    assert np.linalg.norm(streamed - plain) / np.linalg.norm(plain) < 0.5


class _Recording:
    """Wraps a decoder: logs each segment's token stream and counts the tokens handed out."""

    def __init__(self, inner, log: list[str]) -> None:
        self.inner, self.log, self.tokens = inner, log, 0

    def stream(self, *args, **kwargs):
        self.log.append("segment")
        for token in self.inner.stream(*args, **kwargs):
            self.tokens += 1
            yield token


def test_stream_speaks_after_the_first_clause_with_a_small_first_chunk(tiny_bundle, voice, onnx_backend):
    # Serial mode, so token counts are exact; read-ahead (default) lets the GPT run at most
    # `chunk_tokens` ahead (tests/gpt_sovits/test_pipeline.py states that bound).
    synth = Synthesizer(tiny_bundle, backend=onnx_backend, read_ahead=False)
    log: list[str] = []
    synth.decoder = recorder = _Recording(synth.decoder, log)
    chunks = synth.stream(TEXT, voice, PARAMS)
    first = next(chunks)
    assert log == ["segment"]  # audio before the second clause is even started
    # Token-level streaming: the first audio needs the first chunk plus the next (ChunkedDecoder
    # holds a few lookahead tokens back), not the whole first clause.
    first_two = PARAMS.first_chunk_tokens + 2 * PARAMS.first_chunk_tokens
    assert recorder.tokens <= first_two
    assert first.segment == 0 and 0 < first.samples.size <= first_two * 1280
    rest = list(chunks)
    first_segment_tokens = sum(c.samples.size for c in [first, *rest] if c.segment == 0 and not c.meta) / 1280
    assert first_segment_tokens > 2 * first_two
    assert len(log) == len({c.segment for c in [first, *rest]}) >= 3
    assert rest[-1].is_last
