"""`SynthesizerTrn`: the GPT-SoVITS v1/v2/v2Pro/v2ProPlus S2 model, with the official key layout.

Submodules (state_dict prefixes): `enc_p` TextEncoder (prior), `dec` generator (HiFi-GAN; iSTFT in our base),
`enc_q` PosteriorEncoder (training only; omitted with `with_posterior=False`), `flow`,
`ref_enc` MelStyleEncoder, `ssl_proj` + `quantizer` (HuBERT -> semantic tokens) and, for the Pro
variants (`cfg.use_sv`), `sv_emb` / `ge_to512` / `prelu`.

Which variant is built depends only on config fields (n_symbols, ref_enc_in, gin_channels,
use_sv, decoder sizes), never on the `version` string, so a checkpoint loader maps official files
onto a `SoVITSConfig` and this class stays version-agnostic.

Inference calls (all under no_grad):
* `extract_latent(ssl [B, ssl_dim, T50]) -> codes [B, 1, T50 // 2]`
* `style(refer_specs, sv_emb) -> ge [1, gin, 1]` (several references are averaged)
* `decode(codes [1, 1, T], text [1, N], ge) -> audio [1, 1, T * 1280]` at speed 1
Training: `forward(...) -> TrainOutput`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt_sovits.config import SoVITSConfig
from gpt_sovits.sovits.commons import rand_slice_segments, sequence_mask
from gpt_sovits.sovits.errors import SoVITSConfigError, SoVITSInputError
from gpt_sovits.sovits.flow import ResidualCouplingBlock
from gpt_sovits.sovits.posterior import PosteriorEncoder
from gpt_sovits.sovits.quantizer import ResidualVectorQuantizer
from gpt_sovits.sovits.ref_encoder import MelStyleEncoder
from gpt_sovits.sovits.text_encoder import TextEncoder
from vocoder.build import build_generator
from vocoder.weight_norm import fold_weight_norm

FLOW_KERNEL = 5
"""Kernel of the WaveNet convs in the flow and posterior encoder (fixed in the official code)."""
FRAMES_PER_TOKEN = 2
"""25 Hz tokens are repeated to the 50 Hz latent rate after codebook lookup."""


@dataclass
class TrainOutput:
    """What the S2 trainer needs from one generator pass."""

    y_hat: Tensor
    """Generated audio for the random slice [B, 1, segment_size * hop]."""
    ids_slice: Tensor
    """Start frame of each slice [B]; real audio is cut at ids_slice * hop."""
    y_mask: Tensor
    """Valid spectrogram frames [B, 1, T] (prior and posterior share the frame axis)."""
    z: Tensor
    z_p: Tensor
    m_p: Tensor
    logs_p: Tensor
    m_q: Tensor
    logs_q: Tensor
    commit_loss: Tensor
    """Quantizer commitment loss (0 while the quantizer is frozen)."""


def validate_config(cfg: SoVITSConfig) -> None:
    """Reject configs the model cannot be built from, with a hint on what to change."""
    if cfg.semantic_frame_rate != "25hz":
        raise SoVITSConfigError(
            f"semantic_frame_rate={cfg.semantic_frame_rate!r}: only '25hz' (every released "
            "v1/v2/Pro model) is implemented"
        )
    if not cfg.use_sv and cfg.gin_channels != cfg.mrte_hidden:
        raise SoVITSConfigError(
            f"gin_channels ({cfg.gin_channels}) must equal mrte_hidden ({cfg.mrte_hidden}) unless "
            "use_sv is set: without ge_to512 the style vector is added to the MRTE as is"
        )
    if cfg.ref_enc_in > cfg.spec_channels:
        raise SoVITSConfigError("ref_enc_in cannot exceed spec_channels")
    if cfg.inter_channels % 2:
        raise SoVITSConfigError("inter_channels must be even (the flow splits it in halves)")
    if cfg.hidden_channels % cfg.n_heads or cfg.mrte_hidden % cfg.mrte_heads:
        raise SoVITSConfigError("attention widths must be divisible by their head counts")


def _check_int_range(name: str, x: Tensor, upper: int) -> None:
    if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise SoVITSInputError(f"{name} must be an integer tensor, got {x.dtype}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= upper):
        raise SoVITSInputError(f"{name} ids must lie in [0, {upper}); got {int(x.min())}..{int(x.max())}")


class SynthesizerTrn(nn.Module):
    """The S2 model. `with_posterior=False` drops `enc_q` (training only), matching the key set of
    released inference files so they load with `strict=True`."""

    def __init__(self, cfg: SoVITSConfig, with_posterior: bool = True) -> None:
        super().__init__()
        validate_config(cfg)
        self.cfg = cfg
        inter, hidden, gin = cfg.inter_channels, cfg.hidden_channels, cfg.gin_channels
        self.enc_p = TextEncoder(cfg)
        self.dec = build_generator(cfg.vocoder_config())
        self.enc_q: PosteriorEncoder | None = None
        if with_posterior:
            self.enc_q = PosteriorEncoder(cfg.spec_channels, inter, hidden, FLOW_KERNEL, 1,
                                          cfg.posterior_layers, gin)
        self.flow = ResidualCouplingBlock(inter, hidden, FLOW_KERNEL, 1, cfg.flow_layers,
                                          cfg.n_flows, gin)
        self.ref_enc = MelStyleEncoder(cfg.ref_enc_in, out_dim=gin)
        self.ssl_proj = nn.Conv1d(cfg.ssl_dim, cfg.ssl_dim, 2, stride=2)
        self.quantizer = ResidualVectorQuantizer(cfg.ssl_dim, n_q=1, bins=cfg.codebook_size)
        if cfg.use_sv:
            self.sv_emb = nn.Linear(cfg.sv_dim, gin)
            self.ge_to512 = nn.Linear(gin, cfg.mrte_hidden)
            self.prelu = nn.PReLU(num_parameters=gin)
        if cfg.freeze_quantizer:
            self.ssl_proj.requires_grad_(False)
            self.quantizer.requires_grad_(False)

    # ----------------------------------------------------------------------------- semantic side
    @torch.no_grad()
    def extract_latent(self, ssl: Tensor) -> Tensor:
        """HuBERT features [B, ssl_dim, T50] -> semantic codes [B, 1, T50 // 2]."""
        if ssl.dim() != 3 or ssl.size(1) != self.cfg.ssl_dim or ssl.size(2) < 2:
            raise SoVITSInputError(
                f"ssl features must be [B, {self.cfg.ssl_dim}, T50] with T50 >= 2 "
                f"(HuBERT last_hidden_state transposed); got {tuple(ssl.shape)}"
            )
        codes = self.quantizer.encode(self.ssl_proj(ssl.to(self.ssl_proj.weight.dtype)))
        return codes.transpose(0, 1)

    # ----------------------------------------------------------------------------- style
    def _ge_from_spec(self, spec: Tensor, mask: Tensor | None, sv: Tensor | None) -> Tensor:
        """Style [B, gin, 1] from linear spectrograms [B, >=ref_enc_in, T] (+ SV embedding)."""
        spec = spec[:, : self.cfg.ref_enc_in]
        ge = self.ref_enc(spec * mask if mask is not None else spec, mask)
        if self.cfg.use_sv:
            assert sv is not None
            ge = self.prelu(ge + self.sv_emb(sv).unsqueeze(-1))
        return ge

    def _sv_per_reference(self, sv_emb: Tensor | Sequence[Tensor] | None, n: int) -> list[Tensor | None]:
        if not self.cfg.use_sv:
            return [None] * n  # non-Pro models have no SV path; an embedding is ignored
        if sv_emb is None:
            raise SoVITSInputError(
                f"this {self.cfg.version} model needs a {self.cfg.sv_dim}-d speaker-verification "
                "embedding (ERes2NetV2) per reference: pass sv_emb"
            )
        rows = list(sv_emb) if not isinstance(sv_emb, Tensor) else list(sv_emb.reshape(-1, sv_emb.size(-1)))
        if len(rows) == 1:
            rows = rows * n
        if len(rows) != n or any(r.numel() != self.cfg.sv_dim for r in rows):
            raise SoVITSInputError(
                f"sv_emb must hold 1 or {n} embeddings of {self.cfg.sv_dim} values; got "
                f"{len(rows)} of sizes {[r.numel() for r in rows]}"
            )
        return [r.reshape(1, -1).to(self.ssl_proj.weight.dtype) for r in rows]

    @torch.no_grad()
    def style(
        self, refer_specs: Sequence[Tensor] | Tensor, sv_emb: Tensor | Sequence[Tensor] | None = None
    ) -> Tensor:
        """Global style `ge` [1, gin, 1]: the mean over references of the per-reference style.

        Each spec is a linear magnitude spectrogram [1, spec_channels, T] (`linear_spectrogram`
        of 32 kHz audio). Pro models also take one SV embedding per reference (or one shared).
        """
        specs = [refer_specs] if isinstance(refer_specs, Tensor) else list(refer_specs)
        if not specs:
            raise SoVITSInputError("style() needs at least one reference spectrogram")
        svs = self._sv_per_reference(sv_emb, len(specs))
        ges = []
        for spec, sv in zip(specs, svs):
            if spec.dim() != 3 or spec.size(0) != 1 or spec.size(1) < self.cfg.ref_enc_in or spec.size(2) < 1:
                raise SoVITSInputError(
                    f"reference spectrogram must be [1, {self.cfg.spec_channels}, frames]; got "
                    f"{tuple(spec.shape)}"
                )
            ges.append(self._ge_from_spec(spec.to(self.ssl_proj.weight.dtype), None, sv))
        return torch.stack(ges).mean(0)

    def mrte_style(self, ge: Tensor) -> Tensor:
        """The style at MRTE width: Pro models project it with `ge_to512`, others use it as is."""
        if self.cfg.use_sv:
            return self.ge_to512(ge.transpose(1, 2)).transpose(1, 2)
        return ge

    # ----------------------------------------------------------------------------- synthesis
    def _check_decode_inputs(self, codes: Tensor, text: Tensor, ge: Tensor, speed: float) -> None:
        if codes.dim() != 3 or codes.shape[:2] != (1, 1) or codes.size(2) < 1:
            raise SoVITSInputError(f"codes must be [1, 1, T] with T >= 1; got {tuple(codes.shape)}")
        if text.dim() != 2 or text.size(0) != 1 or text.size(1) < 1:
            raise SoVITSInputError(
                f"text must be phone ids [1, N] with N >= 1 (target phones only); got {tuple(text.shape)}"
            )
        _check_int_range("semantic codes", codes, self.cfg.codebook_size)
        _check_int_range("phone", text, self.cfg.n_symbols)
        if ge.shape != (1, self.cfg.gin_channels, 1):
            raise SoVITSInputError(
                f"ge must be [1, {self.cfg.gin_channels}, 1] (from style()); got {tuple(ge.shape)}"
            )
        if not speed > 0:
            raise SoVITSInputError(f"speed must be positive; got {speed}")

    @torch.no_grad()
    def decode(
        self, codes: Tensor, text: Tensor, ge: Tensor, noise_scale: float = 0.5,
        speed: float = 1.0, generator: torch.Generator | None = None,
        text_encoded: tuple[Tensor, Tensor] | None = None, vocode_from: int = 0,
    ) -> Tensor:
        """Semantic codes [1, 1, T] + target phones [1, N] + style -> audio [1, 1, samples].

        samples = T * 1280 at speed 1, otherwise (int(2T / speed) + 1) * 640. `noise_scale`
        scales the prior sample; 0 makes the output deterministic. `text_encoded` is
        `encode_text(text)`, for callers that decode many windows of one segment.
        `vocode_from` (speed 1 only): run the generator (`dec`) from that token on, and return
        only the audio of tokens `vocode_from..T` (`(T - vocode_from) * 1280` samples); the text
        encoder and flow still see every token. Streaming uses it to give the generator, which
        has a short receptive field and ~90 % of the cost, less left context than the flow.
        """
        self._check_decode_inputs(codes, text, ge, speed)
        if vocode_from and (speed != 1 or not 0 <= vocode_from < codes.size(2)):
            raise SoVITSInputError(
                f"vocode_from must be in [0, {codes.size(2)}) at speed 1; got {vocode_from} at speed {speed}")
        ge = ge.to(self.ssl_proj.weight.dtype)
        quantized = self.quantizer.decode(codes.long())  # [1, 1, T] read as [n_q, B, T]
        quantized = quantized.repeat_interleave(FRAMES_PER_TOKEN, dim=-1)
        y_lengths = torch.tensor([quantized.size(-1)], device=codes.device)
        text_lengths = torch.tensor([text.size(-1)], device=text.device)
        _, m_p, logs_p, y_mask = self.enc_p(
            quantized, y_lengths, text.long(), text_lengths, self.mrte_style(ge), speed, text_encoded)
        z_p = m_p
        if noise_scale:
            noise = torch.randn(m_p.shape, generator=generator, device=m_p.device, dtype=m_p.dtype)
            z_p = m_p + noise * torch.exp(logs_p) * noise_scale
        z = self.flow(z_p, y_mask, g=ge, reverse=True) * y_mask
        return self.dec(z[..., FRAMES_PER_TOKEN * vocode_from:], g=ge)

    @torch.no_grad()
    def encode_text(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """The phone branch of `decode` for target phones [1, N] (see `TextEncoder.encode_text`)."""
        lengths = torch.tensor([text.size(-1)], device=text.device)
        return self.enc_p.encode_text(text.long(), lengths, self.ssl_proj.weight.dtype)

    # ----------------------------------------------------------------------------- training
    def _quantize_for_training(self, ssl: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(device_type=ssl.device.type, enabled=False):
            ssl = ssl.float()
            if self.cfg.freeze_quantizer:
                with torch.no_grad():
                    codes = self.quantizer.encode(self.ssl_proj(ssl))
                    return self.quantizer.decode(codes), ssl.new_zeros(())
            quantized, _, commit_loss = self.quantizer(self.ssl_proj(ssl))
            return quantized, commit_loss

    def _frame_codes(self, ssl: Tensor, spec: Tensor) -> tuple[Tensor, Tensor]:
        """Quantized SSL features at the spectrogram's frame rate and length (+ commitment loss)."""
        quantized, commit_loss = self._quantize_for_training(ssl)
        quantized = quantized.repeat_interleave(FRAMES_PER_TOKEN, dim=-1)
        # The data pipeline keeps 2 * (T50 // 2) ~= T; absorb an off-by-one either way.
        frames = spec.size(2)
        if quantized.size(2) < frames:
            quantized = F.pad(quantized, (0, frames - quantized.size(2)), mode="replicate")
        return quantized[:, :, :frames].to(spec.dtype), commit_loss

    def forward(
        self, ssl: Tensor, spec: Tensor, spec_lengths: Tensor, text: Tensor, text_lengths: Tensor,
        sv_emb: Tensor | None = None, generator: torch.Generator | None = None,
    ) -> TrainOutput:
        """One generator pass on a batch: ssl [B, ssl_dim, T50], spec [B, spec_channels, T]
        (T ~ T50), phones [B, N]; sv_emb [B, sv_dim] for Pro models.

        The style comes from the utterance's own spectrogram, the prior from its semantic codes and
        phones, the posterior from the spectrogram; a random `segment_size`-frame slice of z is
        decoded to audio.
        """
        if self.enc_q is None:
            raise SoVITSInputError("this model was built with with_posterior=False; it cannot train")
        if self.cfg.use_sv and sv_emb is None:
            raise SoVITSInputError(f"{self.cfg.version} training needs sv_emb [B, {self.cfg.sv_dim}]")
        y_mask = sequence_mask(spec_lengths, spec.size(2)).unsqueeze(1).to(spec.dtype)
        ge = self._ge_from_spec(spec, y_mask, sv_emb)
        quantized, commit_loss = self._frame_codes(ssl, spec)
        _, m_p, logs_p, _ = self.enc_p(quantized, spec_lengths, text, text_lengths, self.mrte_style(ge))
        z, m_q, logs_q, y_mask = self.enc_q(spec, spec_lengths, g=ge, generator=generator)
        z_p = self.flow(z, y_mask, g=ge)
        z_slice, ids_slice = rand_slice_segments(z, spec_lengths, self.cfg.segment_size, generator)
        y_hat = self.dec(z_slice, g=ge)
        return TrainOutput(y_hat, ids_slice, y_mask, z, z_p, m_p, logs_p, m_q, logs_q, commit_loss)

    def posterior_slice(
        self, spec: Tensor, spec_lengths: Tensor, sv_emb: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(z slice, slice starts, style): what `forward` feeds the decoder, without the prior and
        the flow. Training a decoder alone on a trained posterior needs only this."""
        if self.enc_q is None:
            raise SoVITSInputError("this model was built with with_posterior=False; it has no posterior")
        y_mask = sequence_mask(spec_lengths, spec.size(2)).unsqueeze(1).to(spec.dtype)
        ge = self._ge_from_spec(spec, y_mask, sv_emb)
        z, _, _, _ = self.enc_q(spec, spec_lengths, g=ge, generator=generator)
        z_slice, ids_slice = rand_slice_segments(z, spec_lengths, self.cfg.segment_size, generator)
        return z_slice, ids_slice, ge

    def prior_slice(
        self, ssl: Tensor, spec: Tensor, spec_lengths: Tensor, text: Tensor, text_lengths: Tensor,
        noise_scale: float = 0.5, sv_emb: Tensor | None = None, generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(z slice, slice starts, style) as synthesis makes z: flow^-1 of a prior sample from the
        utterance's own semantic codes and phones (`decode` with true tokens). The slice lines up
        with the recording, so a decoder can be trained on the latents it will see at inference."""
        y_mask = sequence_mask(spec_lengths, spec.size(2)).unsqueeze(1).to(spec.dtype)
        ge = self._ge_from_spec(spec, y_mask, sv_emb)
        quantized, _ = self._frame_codes(ssl, spec)
        _, m_p, logs_p, _ = self.enc_p(quantized, spec_lengths, text, text_lengths, self.mrte_style(ge))
        noise = torch.randn(m_p.shape, generator=generator, device=m_p.device, dtype=m_p.dtype)
        z = self.flow(m_p + noise * torch.exp(logs_p) * noise_scale, y_mask, g=ge, reverse=True) * y_mask
        z_slice, ids_slice = rand_slice_segments(z, spec_lengths, self.cfg.segment_size, generator)
        return z_slice, ids_slice, ge

    # ----------------------------------------------------------------------------- utilities
    def fold_weight_norm(self) -> int:
        """Bake every weight-norm (g, v) pair into a plain weight; call after loading weights.

        Outputs are unchanged (up to float rounding) and inference gets cheaper, but the
        state_dict no longer has the official `weight_g/weight_v` keys. Returns layers folded.
        """
        return fold_weight_norm(self)
