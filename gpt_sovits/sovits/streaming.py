"""Chunked SoVITS decoding for streaming: semantic tokens in as the GPT makes them, audio out.

Each `push` decodes only the new tokens plus a few tokens of left context (and optionally keeps
the last `lookahead` tokens back, so they are decoded again next time with right context). The
context's audio is dropped, and each join is cross-faded over `fade_ms` with a raised-cosine
window between the previous chunk's last samples and the new decode of the same samples. The
target phones are passed whole with every chunk, because MRTE cross-attends over all of them.
Nothing before the context window is ever decoded again, so the cost per push is
O(left_context + new + lookahead) tokens.

How close is it to one `decode` of all tokens? Two effects, measured with noise_scale=0:
1. Convolutions (flow WaveNets, about +-2 * flow_layers * n_flows latent frames; the generator)
   see no right context at a chunk's end. `lookahead` fixes that: those tokens are held back and
   decoded again, with right context, in the next window.
2. Self-attention in the text encoder (`encoder_ssl`, `encoder2`) is global over the frames it is
   given, so every frame of a window differs from the one-shot result however much context is
   added. This part is model dependent and cannot be removed without re-encoding the prefix.

Relative L2 error ||stream - oneshot|| / ||oneshot|| for 120 tokens pushed as 8, then 16 at a
time. Random weights, with the decoder and flow made non-trivial (weight_g = 1, decoder biases 0,
flow `post` ~ N(0, 0.1); at plain random init the audio does not depend on the tokens at all and
any streaming scheme looks exact; `activate` in tests/gpt_sovits/sovits/conftest.py does this, and
`stream_decode` + `relative_l2` below reproduce the numbers). "local" = n_layers 1, i.e. no frame self-attention, which
isolates effect 1; "A vs B" = error between two unrelated token sequences, for scale. Columns
are left_context / lookahead in tokens:

| model                                     | A vs B | 0/0   | 12/0  | 4/4    | 12/4   | 24/4   | 12/8    |
|-------------------------------------------|--------|-------|-------|--------|--------|--------|---------|
| tiny, local                               | 0.77   | 0.300 | 0.179 | 0.0004 | 0.0002 | 0.0002 | <0.0001 |
| tiny, random attention                    | 0.86   | 0.346 | 0.240 | 0.197  | 0.173  | 0.160  | 0.151   |
| v2 size, local                            | 0.55   | 0.260 | 0.158 | 0.016  | 0.008  | 0.008  | <0.0001 |
| v2 size, random attention                 | 0.67   | 0.406 | 0.325 | 0.321  | 0.277  | 0.252  | 0.261   |

So the chunking machinery itself (trim, alignment, cross-fade) is exact once context and
lookahead cover the convolutional receptive field (about 8 tokens for v2 flows), and all the
remaining error comes from windowed self-attention. Random attention is near-uniform over all
frames, the worst case. Trained weights attend far more locally: our own base SoVITS
(docs/base_model_snapshot.md), real speech tokens (264 tokens of en_slt), default schedule and
context: 0.019 relative L2 over the whole stream, 0.044-0.054 over its first 0.5 s whether the
first window has 0, 1, 2 or 4 tokens of lookahead. So 0.15-0.3 is a worst-case bound.
Lengths always equal the one-shot decode. (The official streaming mode instead re-encodes the
whole prefix on every chunk, which removes the missing-past part of effect 2 at O(prefix) cost.)

The left context is for the text encoder and the flow. The HiFi-GAN generator, ~90 % of a
window's time, only needs `vocoder_context` (4) tokens of it: its left receptive field ends
within 3 tokens (trained base SoVITS, v2 layout: cutting its input 3 tokens early changes the
audio after the cut by 1e-5 relative L2, 4 tokens by < 1e-6), so `decode(..., vocode_from=...)`
runs it from there and the stream's audio is unchanged (< 1e-4 relative L2 against the full
context). v2 size on one CPU core, default schedule: a 70-token stream decodes in 1.29 s
instead of 1.60 s, a 325-token one in 4.87 s instead of 5.55 s. The iSTFT generator of our own base (`vocoder.istft`) reaches even less far:
cutting its input 3 tokens early changes the audio after the cut by 3e-6 relative L2, 4 tokens by
2e-8 (S2 with 2,000 decoder steps, a held-out utterance).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gpt_sovits.sovits.errors import SoVITSInputError
from gpt_sovits.sovits.model import FRAMES_PER_TOKEN, SynthesizerTrn
from gpt_sovits.sovits.text_encoder import speed_frames

DEFAULT_LEFT_CONTEXT = 12
"""Tokens (40 ms each) re-decoded before every chunk; see the table in the module docstring."""
DEFAULT_LOOKAHEAD = 4
"""Trailing tokens held back until the next push (decoded then with right context)."""
DEFAULT_VOCODER_CONTEXT = 4
"""Tokens of left context the HiFi-GAN generator decodes again (of the `left_context` the text
encoder and flow see); see `ChunkedDecoder`."""
DEFAULT_FADE_MS = 20.0
"""Cross-fade length at each join."""
DEFAULT_WINDOW_BUCKET = 8
"""Decoded windows after the first are widened to the left (more context) to a multiple of this
many tokens. CPU convolutions build a kernel per input length the first time they see it (v2
HiFi-GAN, one thread: +50-150 ms on the decode that meets a new length), so a stream that met a
new length at every flush paid that at random; with buckets the lengths form a small set that
`warm-up` can visit once."""


_EMPTY = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class Window:
    """One planned SoVITS decode: `codes` are the tokens from token `start` on (left context
    included); its audio is final up to token `until` (to the end when `final`)."""

    index: int
    start: int
    until: int
    final: bool
    codes: tuple[int, ...]
    generator: torch.Generator | None
    vocode_from: int = 0
    """First token the generator decodes (>= start; the audio starts there)."""


class ChunkedDecoder:
    """Incremental decoder for one utterance: `push(tokens)` any number of times, then `flush()`.

    The concatenation of everything returned has exactly the length of
    `model.decode(all_tokens, phones, ge, speed=speed)`.
    """

    def __init__(
        self, model: SynthesizerTrn, ge: Tensor, phones: Tensor, noise_scale: float = 0.5,
        speed: float = 1.0, generator: torch.Generator | None = None, *,
        left_context: int = DEFAULT_LEFT_CONTEXT, lookahead: int = DEFAULT_LOOKAHEAD,
        fade_ms: float = DEFAULT_FADE_MS, window_bucket: int = DEFAULT_WINDOW_BUCKET,
        first_lookahead: int | None = None, vocoder_context: int | None = DEFAULT_VOCODER_CONTEXT,
    ) -> None:
        """`first_lookahead`: the lookahead of the first window only (None: `lookahead`); a
        smaller one lets the first audio out sooner, at a less exact first join.
        `vocoder_context`: how much of the left context the HiFi-GAN generator decodes again
        (None: all of it), for models whose `decode` takes `vocode_from`. The text encoder and
        flow need the full context (attention, long WaveNet stacks) but cost ~10 % of a window;
        the generator costs the rest, and its left receptive field ends within 3 tokens in
        practice (about 5 on paper)."""
        if left_context < 0 or lookahead < 0 or fade_ms < 0 or window_bucket < 1:
            raise SoVITSInputError("left_context, lookahead and fade_ms must be >= 0, window_bucket >= 1")
        if vocoder_context is not None and vocoder_context < 1:
            raise SoVITSInputError(f"vocoder_context must be >= 1 (or None); got {vocoder_context}")
        if not speed > 0:
            raise SoVITSInputError(f"speed must be positive; got {speed}")
        self.model = model
        self.ge = ge
        self.phones = phones
        self.noise_scale = noise_scale
        self.speed = speed
        self.generator = generator
        self.left_context = left_context
        self.lookahead = lookahead
        self.first_lookahead = lookahead if first_lookahead is None else max(0, first_lookahead)
        self.window_bucket = window_bucket
        # Only at speed 1 do tokens map to whole latent frames the generator can start at.
        partial = vocoder_context is not None and vocoder_context < left_context and speed == 1
        self.vocoder_context = vocoder_context if partial else None
        self.samples_per_token = model.cfg.samples_per_token / speed
        fade = int(round(model.cfg.sampling_rate * fade_ms / 1000.0))
        # The fade re-uses decoded context audio, so it cannot be longer than the context.
        context = self.vocoder_context if self.vocoder_context is not None else left_context
        self.fade = max(0, min(fade, int(context * self.samples_per_token) - 1))
        self._tokens: list[int] = []
        self._boundary = 0  # tokens whose audio is final (except the held-back tail)
        self._emitted = 0  # samples returned so far
        self._tail = _EMPTY.copy()  # decoded, held back for the next cross-fade
        self._closed = False
        self._text: tuple[Tensor, Tensor] | None = None  # the phone branch, shared by all windows
        self._planned = 0  # windows planned so far
        self._joined = 0  # windows joined so far

    # ------------------------------------------------------------------ public
    @property
    def tokens(self) -> list[int]:
        return list(self._tokens)

    def prepare(self) -> None:
        """Encode the phones now (once per utterance) if the model can keep them apart
        (`encode_text`); call it while the CPU is otherwise idle, e.g. before the first tokens
        arrive. Every window then skips the phone encoder. Safe to call more than once."""
        encode = getattr(self.model, "encode_text", None)
        if self._text is None and callable(encode):
            self._text = encode(self.phones)

    def push(self, tokens: Sequence[int] | Tensor | np.ndarray) -> np.ndarray:
        """Add semantic tokens; returns the audio (float32) that became final, possibly empty."""
        window = self.push_window(tokens)
        return self.join(window, self.decode(window)) if window is not None else _EMPTY.copy()

    def flush(self, tokens: Sequence[int] | Tensor | np.ndarray = ()) -> np.ndarray:
        """Add the last `tokens` (if any), decode whatever is pending and return the last audio,
        including the held-back tail.

        `flush(rest)` equals `push(rest)` then `flush()` in length, with one decode instead of
        two (the push's window would be decoded again, with its lookahead, by the flush).
        """
        window = self.flush_window(tokens)
        return self.join(window, self.decode(window)) if window is not None else _EMPTY.copy()

    # ------------------------------------------------------------------ split protocol
    # push/flush = plan a window (here, in order) + decode it (anywhere, any thread, windows
    # may overlap in time) + join its audio (here, in plan order). A streaming server uses the
    # split form to decode the last window beside one still in flight.
    def push_window(self, tokens: Sequence[int] | Tensor | np.ndarray) -> Window | None:
        """`push` up to the decode: the window to decode now, or None if nothing became final."""
        if self._closed:
            raise SoVITSInputError("push() after flush(): start a new ChunkedDecoder per utterance")
        self._tokens.extend(_as_ints(tokens))
        ready = len(self._tokens) - (self.first_lookahead if self._boundary == 0 else self.lookahead)
        if ready <= self._boundary:
            return None
        return self._plan(ready, final=False)

    def flush_window(self, tokens: Sequence[int] | Tensor | np.ndarray = ()) -> Window | None:
        """`flush` up to the decode (None: nothing at all to return)."""
        if self._closed:
            return None
        self._closed = True
        self._tokens.extend(_as_ints(tokens))
        if not self._tokens:
            return None
        if self._boundary < len(self._tokens):
            return self._plan(len(self._tokens), final=True)
        return Window(self._planned, len(self._tokens), len(self._tokens), True, (), None)  # the tail only

    def decode(self, window: Window) -> np.ndarray:
        """The audio of a planned window (touches no decoder state, so windows can overlap)."""
        if not window.codes:
            return _EMPTY.copy()
        codes = torch.tensor(window.codes, dtype=torch.long).view(1, 1, -1)
        extra: dict[str, object] = {} if self._text is None else {"text_encoded": self._text}
        if window.vocode_from > window.start:
            extra["vocode_from"] = window.vocode_from - window.start
        audio = self.model.decode(codes.to(self.phones.device), self.phones, self.ge,
                                  self.noise_scale, self.speed, window.generator, **extra)
        return audio[0, 0].float().cpu().numpy()

    def join(self, window: Window, audio: np.ndarray) -> np.ndarray:
        """Cut, cross-fade and emit a decoded window; windows must be joined in plan order."""
        if window.index != self._joined:
            raise SoVITSInputError(f"window {window.index} joined out of order (expected {self._joined})")
        self._joined += 1
        if not window.codes:  # flush with nothing left to decode: the held tail
            out = self._fit_total(self._tail)
            self._tail = _EMPTY.copy()
            return out
        base = self._position(window.vocode_from)
        end = self._total_samples() if window.final else self._position(window.until)
        segment = audio[self._emitted - base: end - base]
        if len(segment) < end - self._emitted:  # speed != 1 rounding: at most a few samples
            segment = np.pad(segment, (0, end - self._emitted - len(segment)))
        segment = segment.astype(np.float32, copy=True)
        self._crossfade_into(segment)
        if window.final:
            self._tail = _EMPTY.copy()
            out = segment
        else:
            hold = min(self.fade, len(segment))
            self._tail = segment[len(segment) - hold:].copy()
            out = segment[: len(segment) - hold]
        self._emitted += len(out)
        return out

    # ------------------------------------------------------------------ internals
    def _position(self, token_index: int) -> int:
        """Global sample index where a token's audio starts."""
        return int(round(token_index * self.samples_per_token))

    def _total_samples(self) -> int:
        """Length of the one-shot decode of every token pushed so far."""
        frames = speed_frames(FRAMES_PER_TOKEN * len(self._tokens), self.speed)
        return frames * (self.model.cfg.samples_per_token // FRAMES_PER_TOKEN)

    def _window_start(self) -> int:
        """First token of the next decoded window: `left_context` before the boundary, widened
        to the left until the window length is a multiple of `window_bucket` (if there is room)."""
        return self._widened(max(0, self._boundary - self.left_context), 0)

    def _vocode_start(self, start: int) -> int:
        """First token the generator decodes: `vocoder_context` before the boundary, widened the
        same way (not past the window's `start`), so generator lengths fall in buckets too."""
        if self.vocoder_context is None:
            return start
        return self._widened(max(start, self._boundary - self.vocoder_context), start)

    def _widened(self, first: int, floor: int) -> int:
        """`first` moved left, not below `floor`, until `first..last token` is a whole number of
        buckets; `floor` itself when there is no room for that."""
        if first <= floor:
            return floor
        return max(floor, first - (first - len(self._tokens)) % self.window_bucket)

    def _plan(self, until: int, final: bool) -> Window:
        self.prepare()
        start = self._window_start()
        vocode_from = self._vocode_start(start)
        generator = None
        if self.generator is not None:
            # One generator per window, drawn in plan order: the noise does not depend on
            # which windows are decoded at the same time.
            dev = self.generator.device
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator, device=dev))
            generator = torch.Generator(device=dev).manual_seed(seed)
        window = Window(self._planned, start, until, final, tuple(self._tokens[start:]), generator, vocode_from)
        self._planned += 1
        self._boundary = until
        return window

    def _crossfade_into(self, segment: np.ndarray) -> None:
        """Blend the held tail (old decode) into the head of `segment` (new decode), in place."""
        n = min(len(self._tail), len(segment))
        if n == 0:
            return
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n, dtype=np.float32) + 0.5) / n)
        segment[:n] = self._tail[:n] * (1.0 - ramp) + segment[:n] * ramp

    def _fit_total(self, tail: np.ndarray) -> np.ndarray:
        missing = self._total_samples() - self._emitted - len(tail)
        return np.pad(tail, (0, max(missing, 0)))[: len(tail) + missing].astype(np.float32)


def _as_ints(tokens: Sequence[int] | Tensor | np.ndarray) -> list[int]:
    return [int(t) for t in (tokens.reshape(-1).tolist() if hasattr(tokens, "reshape") else tokens)]


def stream_decode(
    decoder: ChunkedDecoder, tokens: Sequence[int], chunk_sizes: Sequence[int]
) -> np.ndarray:
    """Push `tokens` in chunks (sizes cycle through `chunk_sizes`, the last one repeating),
    flush, and return the joined audio. A convenience for tests and benchmarks."""
    pieces, i, k = [], 0, 0
    while i < len(tokens):
        size = chunk_sizes[min(k, len(chunk_sizes) - 1)]
        pieces.append(decoder.push(tokens[i:i + size]))
        i += size
        k += 1
    pieces.append(decoder.flush())
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def relative_l2(estimate: np.ndarray, reference: np.ndarray) -> float:
    """||estimate - reference|| / ||reference|| (inf when the reference is silent)."""
    denom = float(np.linalg.norm(reference))
    return float(np.linalg.norm(estimate - reference)) / denom if denom else math.inf
