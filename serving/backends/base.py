"""The `Backend` interface: the few model calls that a runtime (PyTorch, ONNX Runtime, TensorRT)
must provide, and the adapters that plug any backend into the synthesis pipeline.

Calls
- `t2s_prefill(request, capacity) -> (logits [1, vocab], state)` and `t2s_step(state, token)`
  (= `state.step(token)`) -> logits: the GPT, batch 1, with the KV cache inside `state`.
- `decode_chunk(codes [1, 1, T], phones [1, N], ge [1, gin, 1], noise_scale, speed, generator)`
  -> audio `[1, 1, samples]`: SoVITS for one chunk (left context included by the caller,
  `ChunkedDecoder`). Same signature as `SynthesizerTrn.decode`; the prior noise is drawn on the
  host exactly as PyTorch draws it, so all backends agree sample for sample on the same seed.
- the reference path: `reference_style(spec) -> ge` and `prompt_codes(ssl) -> codes`.

Sampling and stop rules are not part of a backend: `gpt_sovits.fast.decode_tokens` runs them
for every backend on the logits it returns, so tokens cannot differ by backend beyond the
logits' numerical differences.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.engine import DecodeRequest
from gpt_sovits.errors import GSVError
from gpt_sovits.fast import FastDecoder, T2SState, stream_window_lengths, warm_up_windows
from gpt_sovits.sampling import SamplingParams


class BackendError(GSVError, RuntimeError):
    """A backend failed to load or run."""

    code = "backend_error"


class BackendUnavailableError(BackendError):
    """The runtime a backend needs is not installed here (e.g. TensorRT without a GPU)."""

    code = "backend_unavailable"


class BackendInputError(GSVError, ValueError):
    """Inputs a backend cannot take (shape, range, or a mode it does not support)."""

    code = "invalid_backend_input"


class Backend(ABC):
    """One runtime for the GPT step and the SoVITS chunk decode (see the module docstring)."""

    name: ClassVar[str] = "abstract"
    partial_vocode: ClassVar[bool] = False
    """Whether `decode_chunk` takes `vocode_from` (see `SynthesizerTrn.decode`); others decode
    the whole window and `ChunkVocoder` cuts the audio, which costs the full window."""

    def __init__(self, gpt_config: GPTConfig, sovits_config: SoVITSConfig, precision: str,
                 device: torch.device) -> None:
        self.gpt_config = gpt_config
        self.sovits_config = sovits_config
        self.precision = precision
        self.device = device
        self.eos = gpt_config.eos
        self.vocab_size = gpt_config.vocab_size
        self.sample_rate = sovits_config.sampling_rate
        self.samples_per_token = sovits_config.samples_per_token
        self.sync_every = 4 if device.type == "cuda" else 1
        """Decode steps between host reads of the sampled tokens (see `fast.decode_tokens`)."""

    # ------------------------------------------------------------------ the calls
    @abstractmethod
    def t2s_prefill(self, request: DecodeRequest, capacity: int) -> tuple[Tensor, T2SState]:
        """Run prompt phones + BERT + prompt tokens; `capacity` new slots must fit the state."""

    def t2s_step(self, state: T2SState, token: Tensor) -> Tensor:
        """Feed the sampled token `[1]`; returns the next logits `[1, vocab]`."""
        return state.step(token)

    @abstractmethod
    def decode_chunk(self, codes: Tensor, phones: Tensor, ge: Tensor, noise_scale: float = 0.5,
                     speed: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Semantic codes + target phones + style -> audio `[1, 1, samples]` (float32)."""

    @abstractmethod
    def reference_style(self, spec: Tensor) -> Tensor:
        """Reference linear spectrogram `[1, spec_channels, frames]` -> `ge [1, gin, 1]`."""

    @abstractmethod
    def prompt_codes(self, ssl: Tensor) -> Tensor:
        """HuBERT features `[1, ssl_dim, T50]` -> prompt codes `[1, 1, T50 // 2]`."""

    # ------------------------------------------------------------------ adapters
    def decoder(self) -> FastDecoder:
        """`engine.Decoder`-compatible object (`generate` / `stream`) running on this backend."""
        return FastDecoder(self, sync_every=self.sync_every, config=self.gpt_config)

    def vocoder(self) -> "ChunkVocoder":
        """`SynthesizerTrn`-compatible object (`cfg`, `decode`) for the pipeline/ChunkedDecoder."""
        return ChunkVocoder(self)

    def warmup(self, stream_params: Any | None = None) -> None:
        """One tiny decode and one chunk decode, so lazy initialisation happens before requests,
        then every streaming window length of `stream_params` (a `SynthesisParams`; default:
        its defaults)."""
        cfg = self.gpt_config
        req = DecodeRequest(torch.zeros(8, dtype=torch.long), torch.zeros(cfg.bert_dim, 8),
                            torch.zeros(8, dtype=torch.long))
        params = SamplingParams(top_k=1, seed=0, max_new_tokens=4, min_new_tokens=4)
        codes = list(self.decoder().stream(req, params))
        ge = torch.zeros(1, self.sovits_config.gin_channels, 1, device=self.device)
        phones = torch.zeros(1, 4, dtype=torch.long, device=self.device)
        self.decode_chunk(torch.tensor(codes, device=self.device).view(1, 1, -1), phones, ge, 0.0)
        self.warm_stream_windows(ge, phones, stream_params)

    def warm_stream_windows(self, ge: Tensor, phones: Tensor,
                            stream_params: Any | None = None) -> list[tuple[int, int]]:
        """Decode once at every window shape the default streaming schedule uses (see
        `stream_window_lengths`): on CPU the first decode at a new length builds its convolution
        kernels, which would otherwise land on a listener's chunk. Returns the lengths."""
        from gpt_sovits.pipeline import SynthesisParams

        defaults = stream_params or SynthesisParams()
        lengths = stream_window_lengths(self.sovits_config, defaults.first_chunk_tokens, defaults.chunk_tokens,
                                        first_lookahead=defaults.first_lookahead_tokens)
        if not self.partial_vocode:  # the whole window is decoded anyway: one per length
            lengths = sorted({(n, 0) for n, _ in lengths})
        lengths = warm_up_windows(lengths)
        vocoder = self.vocoder()
        for n, vocode_from in lengths:
            vocoder.decode(torch.zeros(1, 1, n, dtype=torch.long, device=self.device), phones, ge, 0.0,
                           vocode_from=vocode_from)
        return lengths


class ChunkVocoder:
    """Presents a backend's `decode_chunk` as `SynthesizerTrn.decode` (with `.cfg`)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.cfg = backend.sovits_config

    def decode(self, codes: Tensor, text: Tensor, ge: Tensor, noise_scale: float = 0.5,
               speed: float = 1.0, generator: torch.Generator | None = None,
               text_encoded: Any | None = None, vocode_from: int = 0) -> Tensor:
        extra: dict[str, Any] = {} if text_encoded is None else {"text_encoded": text_encoded}
        if vocode_from and self.backend.partial_vocode:
            extra["vocode_from"] = vocode_from
        audio = self.backend.decode_chunk(codes, text, ge, noise_scale, speed, generator, **extra)
        if vocode_from and not self.backend.partial_vocode:
            audio = audio[..., vocode_from * self.cfg.samples_per_token:]
        return audio

    def encode_text(self, phones: Tensor) -> Any | None:
        """The backend's cached phone encoding for `decode(..., text_encoded=...)`, or None when
        it cannot keep it apart (exported graphs take the phones whole)."""
        encode = getattr(self.backend, "encode_text", None)
        return encode(phones) if callable(encode) else None


def check_chunk_inputs(cfg: SoVITSConfig, codes: Tensor, phones: Tensor, ge: Tensor, speed: float) -> None:
    """The shape/range checks of `SynthesizerTrn.decode`, for backends without the model."""
    if codes.dim() != 3 or codes.shape[:2] != (1, 1) or codes.size(2) < 1:
        raise BackendInputError(f"codes must be [1, 1, T] with T >= 1; got {tuple(codes.shape)}")
    if phones.dim() != 2 or phones.size(0) != 1 or phones.size(1) < 1:
        raise BackendInputError(f"phones must be [1, N] with N >= 1; got {tuple(phones.shape)}")
    if int(codes.min()) < 0 or int(codes.max()) >= cfg.codebook_size:
        raise BackendInputError(f"semantic codes must lie in [0, {cfg.codebook_size})")
    if int(phones.min()) < 0 or int(phones.max()) >= cfg.n_symbols:
        raise BackendInputError(f"phone ids must lie in [0, {cfg.n_symbols})")
    if ge.shape != (1, cfg.gin_channels, 1):
        raise BackendInputError(f"ge must be [1, {cfg.gin_channels}, 1]; got {tuple(ge.shape)}")
    if not speed > 0:
        raise BackendInputError(f"speed must be positive; got {speed}")


def prior_noise(shape: tuple[int, ...], noise_scale: float, generator: torch.Generator | None) -> Tensor:
    """The prior noise `SynthesizerTrn.decode` draws (same generator calls), as float32 on CPU.

    Nothing is drawn when `noise_scale` is 0, exactly as in the model, so a generator shared
    across chunks stays in step with the PyTorch path.
    """
    if not noise_scale:
        return torch.zeros(shape)
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=device).float().cpu()
