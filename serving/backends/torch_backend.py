"""PyTorch backend: the prepared fast models of `gpt_sovits.fast` (folded weight norm, FP16/BF16 on
GPU, optional dynamic INT8 GPT on CPU, CUDA-graph decode step)."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from gpt_sovits.engine import DecodeRequest, Decoder
from gpt_sovits.fast import (
    FastDecoder, T2SState, TorchT2S, prepare_sovits, prepare_t2s, resolve_precision, resolve_vocoder_precision,
)
from gpt_sovits.sampling import SamplingParams
from serving.backends.base import Backend


class TorchBackend(Backend):
    """Runs the bundle's models in PyTorch (on `device`, default the bundle's)."""

    name = "torch"
    partial_vocode = True

    def __init__(self, bundle: Any, *, device: str | torch.device | None = None,
                 precision: str = "auto", cuda_graph: bool = True, vocoder_precision: str = "auto") -> None:
        """`vocoder_precision`: the HiFi-GAN generator's own precision ("auto": BF16 on CPUs
        with native BF16, else that of SoVITS; see `gpt_sovits.fast.resolve_vocoder_precision`)."""
        dev = torch.device(device) if device is not None else bundle.device
        prec = resolve_precision(precision, dev)
        super().__init__(bundle.gpt_config, bundle.sovits_config, prec, dev)
        self.vocoder_precision = resolve_vocoder_precision(vocoder_precision, prec, dev)
        self.gpt = prepare_t2s(bundle.gpt, prec, dev)
        self.sovits = prepare_sovits(bundle.sovits, prec, dev, self.vocoder_precision)
        self.t2s = TorchT2S(self.gpt, cuda_graph=cuda_graph)

    def t2s_prefill(self, request: DecodeRequest, capacity: int) -> tuple[Tensor, T2SState]:
        return self.t2s.t2s_prefill(request, capacity)

    @torch.inference_mode()
    def decode_chunk(self, codes: Tensor, phones: Tensor, ge: Tensor, noise_scale: float = 0.5,
                     speed: float = 1.0, generator: torch.Generator | None = None,
                     text_encoded: tuple[Tensor, Tensor] | None = None, vocode_from: int = 0) -> Tensor:
        audio = self.sovits.decode(codes.to(self.device), phones.to(self.device), ge.to(self.device),
                                   noise_scale, speed, generator, text_encoded, vocode_from)
        return audio.float()

    @torch.inference_mode()
    def encode_text(self, phones: Tensor) -> tuple[Tensor, Tensor]:
        return self.sovits.encode_text(phones.to(self.device))

    @torch.inference_mode()
    def reference_style(self, spec: Tensor) -> Tensor:
        return self.sovits.style(spec.to(self.device)).float()

    @torch.inference_mode()
    def prompt_codes(self, ssl: Tensor) -> Tensor:
        return self.sovits.extract_latent(ssl.to(self.device))

    def decoder(self) -> "_TorchDecoder":
        return _TorchDecoder(self)

    def warmup(self, stream_params: Any | None = None) -> None:
        self.t2s.warmup()  # also captures the CUDA graph
        super().warmup(stream_params)


class _TorchDecoder:
    """Streams through the fast single-row loop; batches `generate` through `engine.Decoder`
    (same per-row RNGs, so the tokens are those the fast loop would give one by one)."""

    def __init__(self, backend: TorchBackend) -> None:
        self._fast = FastDecoder(backend, sync_every=backend.sync_every, config=backend.gpt_config)
        self._batched = Decoder(backend.gpt)

    def stream(self, request: DecodeRequest, params: SamplingParams = SamplingParams(),
               should_stop: Callable[[], bool] | None = None) -> Iterator[int]:
        return self._fast.stream(request, params, should_stop)

    def generate(self, requests: Sequence[DecodeRequest],
                 params: SamplingParams | Sequence[SamplingParams] = SamplingParams(),
                 should_stop: Callable[[], bool] | None = None,
                 row_stops: Sequence[Callable[[], bool] | None] | None = None) -> list[Tensor]:
        if len(requests) == 1:
            return self._fast.generate(requests, params, should_stop, row_stops)
        return self._batched.generate(requests, params, should_stop, row_stops)
