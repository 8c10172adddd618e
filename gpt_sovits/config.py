"""Typed model configs, saved as JSON beside every checkpoint we write.

A model is rebuilt from its config file alone. Official GPT-SoVITS checkpoints carry their own
(differently shaped) configs; `gpt_sovits.checkpoint` maps those onto these classes so that no
version check ever leaks into model code.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="JsonConfig")


class JsonConfig:
    """Mixin: dataclass <-> JSON with unknown keys rejected and missing keys defaulted."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class GPTConfig(JsonConfig):
    """Text->semantic GPT (the official `Text2SemanticDecoder`, s1longer-v2.yaml sizes)."""

    vocab_size: int = 1025
    """Semantic vocabulary including EOS (1024 codes + EOS)."""
    phoneme_vocab_size: int = 732
    """Rows of the phone embedding: 732 for v2 symbols, 512 for v1 checkpoints."""
    embedding_dim: int = 512
    """Width of token embeddings (equals hidden_dim in every official model)."""
    hidden_dim: int = 512
    """Transformer width."""
    n_head: int = 16
    """Attention heads."""
    n_layer: int = 24
    """Post-LN transformer blocks."""
    ffn_dim: int = 2048
    """Feed-forward width (the official code hard-codes 4*hidden_dim)."""
    dropout: float = 0.0
    """Dropout inside blocks during training (official pretrained used 0 in config, 0.1 in code)."""
    eos: int = 1024
    """End-of-speech token id; also the training pad value."""
    bert_dim: int = 1024
    """Width of the BERT features projected into the text stream."""
    max_positions: int = 4000
    """Length of the precomputed sinusoidal table for each position counter."""
    max_sec: int = 54
    """Longest training utterance in seconds (semantic length limit = 25*max_sec)."""
    layer_norm_eps: float = 1e-5
    decode_top_k: int | None = None
    """Top-k a request gets when it names none (None: the official 15)."""
    decode_repetition_penalty: float | None = None
    """Repetition penalty a request gets when it names none (None: the official 1.35). Models on
    phone-aligned tokens want 1.0: each phone state repeats 1-3 times, and the penalty cuts phones short."""
    decode_grammar: str | None = None
    """"phones": decode as a monotonic walk through each segment's phones (`gpt_sovits.grammar`;
    only for tokens from the phone aligner); None: the GPT picks among all tokens."""


@dataclass
class SoVITSConfig(JsonConfig):
    """SoVITS `SynthesizerTrn` (s2.json sizes). The HiFi-GAN decoder is `vocoder.VocoderConfig`."""

    version: str = "v2"
    """One of v1, v2, v2Pro, v2ProPlus (informational; shapes below decide the model)."""
    spec_channels: int = 1025
    """Linear spectrogram bins (n_fft//2+1)."""
    segment_size: int = 32
    """Latent frames decoded per training slice (20480 samples / hop 640)."""
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    p_dropout: float = 0.1
    gin_channels: int = 512
    """Width of the style vector `ge` (1024 for the Pro variants)."""
    n_symbols: int = 732
    """Rows of the SoVITS phone embedding (322 for v1)."""
    ref_enc_in: int = 704
    """Spectrogram bins seen by the style encoder (1025 for v1)."""
    ssl_dim: int = 768
    """HuBERT feature width."""
    codebook_size: int = 1024
    """Semantic codebook entries."""
    semantic_frame_rate: str = "25hz"
    freeze_quantizer: bool = True
    use_sv: bool = False
    """v2Pro/v2ProPlus: add `sv_emb`/`prelu`/`ge_to512` fed by a speaker-verification embedding."""
    sv_dim: int = 20480
    """Width of the ERes2NetV2 embedding consumed by `sv_emb`."""
    mrte_hidden: int = 512
    """MRTE cross-attention width (also the width of `ge` it adds)."""
    mrte_heads: int = 4
    posterior_layers: int = 16
    """WaveNet layers in the posterior encoder `enc_q` (training only)."""
    flow_layers: int = 4
    """WaveNet layers inside each flow coupling."""
    n_flows: int = 4
    # Decoder (HiFi-GAN generator) sizes, kept here so one JSON rebuilds the whole SoVITS.
    resblock: str = "1"
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    )
    upsample_rates: list[int] = field(default_factory=lambda: [10, 8, 2, 2, 2])
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 8, 2, 2])
    generator: str = "hifigan"
    """Decoder kind: "hifigan" (all official weights) or "istft" (`vocoder.istft`, our base)."""
    istft_channels: int = 256
    istft_layers: int = 8
    istft_subframes: int = 4
    """iSTFT generator sizes (used only when generator == "istft"); see `vocoder.VocoderConfig`."""
    # Audio front end of the model.
    sampling_rate: int = 32000
    filter_length: int = 2048
    hop_length: int = 640
    win_length: int = 2048
    n_mel_channels: int = 128
    content_encoder: str = "chinese-hubert-base"
    """Which SSL model produced the semantic tokens this SoVITS was trained on."""

    @property
    def samples_per_token(self) -> int:
        """One 25 Hz semantic token = 2 latent frames = 2 * prod(upsample_rates) samples."""
        total = 1
        for r in self.upsample_rates:
            total *= r
        return 2 * total

    def vocoder_config(self) -> Any:
        """The `vocoder.VocoderConfig` of this model's decoder (`dec.*`).

        Pro variants (use_sv) also train with the extra 17/23 period discriminators.
        """
        from vocoder.config import VocoderConfig  # local: vocoder.config imports this module

        return VocoderConfig(
            in_channels=self.inter_channels,
            gin_channels=self.gin_channels,
            resblock=self.resblock,
            resblock_kernel_sizes=list(self.resblock_kernel_sizes),
            resblock_dilation_sizes=[list(d) for d in self.resblock_dilation_sizes],
            upsample_rates=list(self.upsample_rates),
            upsample_initial_channel=self.upsample_initial_channel,
            upsample_kernel_sizes=list(self.upsample_kernel_sizes),
            conv_post_bias=False,
            sampling_rate=self.sampling_rate,
            discriminator_periods=[2, 3, 5, 7, 11, 17, 23] if self.use_sv else [2, 3, 5, 7, 11],
            generator=self.generator,
            istft_channels=self.istft_channels,
            istft_layers=self.istft_layers,
            istft_subframes=self.istft_subframes,
        )


@dataclass
class ModelBundleInfo(JsonConfig):
    """What a weight directory of ours contains (written as `bundle.json`)."""

    name: str = ""
    gpt: str = "gpt.safetensors"
    sovits: str = "sovits.safetensors"
    notes: str = ""
