"""`VoicePrompt`: everything that depends only on the voice, computed once and stored without pickle.

A voice prompt holds the reference's semantic tokens (GPT prompt), the phones and BERT features
of its transcript, and the linear spectrograms of the reference and auxiliary clips. The style
vector `ge` depends on the SoVITS weights too, so it is cached per model name.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from gpt_sovits.audio import resample
from gpt_sovits.content_encoder import content_features
from gpt_sovits.errors import GSVError
from gpt_sovits.sovits.spectrogram import linear_spectrogram

if TYPE_CHECKING:
    from gpt_sovits.bundle import ModelBundle

SSL_RATE = 16000
MIN_REF_SECONDS = 3.0
MAX_REF_SECONDS = 10.0
# The official prompt appends 0.3 * 32000 zero samples to the *16 kHz* waveform (0.6 s): it gives
# the GPT a clean end-of-prompt boundary; kept for weight compatibility.
PROMPT_PAD_SAMPLES = 9600
FORMAT_VERSION = 1


class ReferenceAudioError(GSVError, ValueError):
    """The reference clip is unusable (too short, too long, silent or not finite)."""

    code = "invalid_reference"


@dataclass
class VoicePrompt:
    """Voice-only tensors. `prompt_tokens` is None in reference-free mode (no transcript)."""

    prompt_tokens: Tensor | None
    prompt_phones: Tensor | None
    prompt_bert: Tensor | None
    refer_specs: list[Tensor]
    prompt_text: str | None = None
    prompt_lang: str = "auto"
    sv_emb: Tensor | None = None
    meta: dict = field(default_factory=dict)
    _ge_cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    @property
    def ref_free(self) -> bool:
        return self.prompt_tokens is None

    @property
    def content_hash(self) -> str:
        """Hash of the tensors (not of metadata): equal voices share caches."""
        h = hashlib.sha256()
        for t in self._tensors().values():
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        h.update((self.prompt_text or "").encode())
        return h.hexdigest()[:16]

    @classmethod
    def from_audio(
        cls,
        bundle: "ModelBundle",
        reference: np.ndarray,
        sr: int,
        prompt_text: str | None = None,
        prompt_lang: str = "auto",
        aux: Sequence[tuple[np.ndarray, int]] = (),
    ) -> "VoicePrompt":
        """Compute the prompt from a 3-10 s reference clip (plus optional auxiliary clips)."""
        ref = _check_reference(reference, sr)
        wav16 = resample(ref, sr, SSL_RATE)
        tokens = phones = bert = None
        if prompt_text is not None and prompt_text.strip():
            tokens = _prompt_tokens(bundle, wav16, prompt_text)
            phones, bert = _prompt_text_features(bundle, prompt_text, prompt_lang)
        specs = [_reference_spec(bundle, ref, sr)]
        for clip, clip_sr in aux:
            specs.append(_reference_spec(bundle, _as_mono(clip), clip_sr))
        sv = _speaker_verification(bundle, wav16)
        meta = {"reference_seconds": round(len(ref) / sr, 3), "n_aux": len(aux), "model": bundle.name}
        voice = cls(tokens, phones, bert, specs, prompt_text, prompt_lang, sv, meta)
        voice.style(bundle)  # warm the style cache for the bundle that made the prompt
        return voice

    def style(self, bundle: "ModelBundle") -> Tensor:
        """`ge` [1, gin, 1] for this bundle's SoVITS, computed once per model."""
        ge = self._ge_cache.get(bundle.name)
        if ge is None:
            specs = [s.to(bundle.device) for s in self.refer_specs]
            sv = self.sv_emb.to(bundle.device) if self.sv_emb is not None else None
            with torch.inference_mode():
                ge = bundle.sovits.style(specs, sv_emb=sv)
            self._ge_cache[bundle.name] = ge
        return ge

    def _tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name in ("prompt_tokens", "prompt_phones", "prompt_bert", "sv_emb"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        for i, spec in enumerate(self.refer_specs):
            out[f"refer_spec.{i}"] = spec
        return out

    def save(self, directory: str | Path) -> None:
        """Write `voice.safetensors` + `voice.json` (no pickle). Caller handles atomicity."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._tensors().items()}
        save_file(tensors, str(directory / "voice.safetensors"))
        info = {
            "format_version": FORMAT_VERSION,
            "prompt_text": self.prompt_text,
            "prompt_lang": self.prompt_lang,
            "n_refer_specs": len(self.refer_specs),
            "meta": self.meta,
        }
        (directory / "voice.json").write_text(json.dumps(info, ensure_ascii=False, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "VoicePrompt":
        directory = Path(directory)
        try:
            info = json.loads((directory / "voice.json").read_text())
            tensors = load_file(str(directory / "voice.safetensors"))
        except (OSError, ValueError) as exc:
            raise GSVError(f"voice files in {directory} are missing or corrupt: {exc}", code="voice_corrupt") from exc
        specs = [tensors[f"refer_spec.{i}"] for i in range(int(info["n_refer_specs"]))]
        return cls(
            tensors.get("prompt_tokens"),
            tensors.get("prompt_phones"),
            tensors.get("prompt_bert"),
            specs,
            info.get("prompt_text"),
            info.get("prompt_lang", "auto"),
            tensors.get("sv_emb"),
            info.get("meta", {}),
        )


def _as_mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1) if x.ndim == 2 else x


def _check_reference(reference: np.ndarray, sr: int) -> np.ndarray:
    ref = _as_mono(reference)
    if sr <= 0:
        raise ReferenceAudioError(f"invalid sample rate {sr}", code="invalid_sample_rate")
    if not np.all(np.isfinite(ref)):
        raise ReferenceAudioError("reference audio contains NaN or infinite samples", code="non_finite_audio")
    seconds = len(ref) / sr
    if seconds < MIN_REF_SECONDS:
        raise ReferenceAudioError(
            f"reference is {seconds:.2f} s; it must be {MIN_REF_SECONDS:g}-{MAX_REF_SECONDS:g} s: "
            "pick a longer clip of clean speech",
            code="reference_too_short",
        )
    if seconds > MAX_REF_SECONDS:
        raise ReferenceAudioError(
            f"reference is {seconds:.2f} s; it must be {MIN_REF_SECONDS:g}-{MAX_REF_SECONDS:g} s: "
            "cut a 3-10 s clip (the service does this for uploads)",
            code="reference_too_long",
        )
    if float(np.max(np.abs(ref))) < 1e-4:
        raise ReferenceAudioError("reference audio is silent", code="silent_reference")
    return ref


def _prompt_tokens(bundle: "ModelBundle", wav16: np.ndarray, text: str) -> Tensor:
    # The official recipe pads HuBERT's input so its last frames have context. An aligner needs
    # none, and padding would only append silence codes that its training prompts never had.
    pad = PROMPT_PAD_SAMPLES if getattr(bundle.ssl, "pads_prompt", True) else 0
    padded = np.concatenate([wav16, np.zeros(pad, dtype=np.float32)])
    wav = torch.from_numpy(padded).to(bundle.device)[None]
    with torch.inference_mode():
        ssl = content_features(bundle.ssl, wav, [text])
        codes = bundle.sovits.extract_latent(ssl)
    return codes[0, 0].cpu()


def _prompt_text_features(bundle: "ModelBundle", text: str, lang: str) -> tuple[Tensor, Tensor]:
    segment = bundle.frontend.prompt_text(text, lang)
    bert = bundle.frontend.bert_features(segment)
    return torch.tensor(segment.phone_ids, dtype=torch.long), bert.float().cpu()


def _reference_spec(bundle: "ModelBundle", audio: np.ndarray, sr: int) -> Tensor:
    wav = resample(audio, sr, bundle.sample_rate)
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak > 1.0:
        wav = wav / min(2.0, peak)
    cfg = bundle.sovits_config
    spec = linear_spectrogram(
        torch.from_numpy(np.ascontiguousarray(wav))[None],
        n_fft=cfg.filter_length,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
    )
    return spec.cpu()


def _speaker_verification(bundle: "ModelBundle", wav16: np.ndarray) -> Tensor | None:
    if not bundle.sovits_config.use_sv:
        return None
    if bundle.speaker_verifier is None:
        raise GSVError(
            "this SoVITS is a v2Pro/v2ProPlus model and needs the ERes2NetV2 speaker-verification "
            "weights (pretrained_models/sv/pretrained_eres2netv2w24s4ep4.ckpt): pass them with --sv / sv_path",
            code="model_not_found",
        )
    with torch.inference_mode():
        return bundle.speaker_verifier.embed_wav(torch.from_numpy(wav16)[None]).cpu()
