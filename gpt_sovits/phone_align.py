"""Phonetic semantic tokens from forced alignment: a content encoder that needs no training.

Why: GPT-SoVITS' semantic tokens come from chinese-hubert-base, which cannot be downloaded here,
and the self-supervised encoders we trained on ~2 hours of mostly synthetic speech tokenised
unseen voices unlike the training voices (docs/base_model_snapshot.md): the GPT saw out-of-
distribution prompts and the prior had to decode speaker-dependent codes. This encoder makes the
tokens speaker-independent by construction. It aligns the waveform to its transcript with the
speaker-independent en-us acoustic model that the `pocketsphinx` wheel ships (trained on many
real voices), and each 25 Hz token is the (phone, HMM state) at the token's centre. The GPT then
learns what is left to learn, durations and order, and SoVITS decodes phonetic codes plus style.

Token table: 40 phones (SIL + the 39 ARPAbet phones of CMUdict; pocketsphinx's noise fillers
count as SIL) x 3 HMM states = 120 codes. The features handed to SoVITS are one-hot rows over
those codes at 50 Hz, both frames of a token pair carrying the token's label, so a SoVITS whose
`ssl_proj` averages the pair and whose codebook is the identity (`phone_token_sovits`) quantizes
them to exactly the aligned codes.

The price: English only, and the transcript is required. Tokens exist only where text is known,
which is where GPT-SoVITS needs them anyway: training items have transcripts, and a voice prompt
has tokens only with its prompt text (`VoicePrompt.from_audio`); without one it is
reference-free.

Folder format: `config.json` with `"format": "gsv-phone-aligner"` and the `PhoneAlignConfig`
fields. There are no weights of ours; the acoustic model comes from the installed pocketsphinx.
"""
from __future__ import annotations

import dataclasses
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gpt_sovits.config import JsonConfig, SoVITSConfig
from gpt_sovits.errors import GSVError, ModelNotFoundError
from gpt_sovits.features import SSL_SAMPLE_RATE, ssl_frame_count

ALIGNER_FORMAT = "gsv-phone-aligner"
"""The `format` value in config.json that marks a folder as a phone aligner."""
PHONES = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
    "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
    "UH", "UW", "V", "W", "Y", "Z", "ZH",
)
FRAME_SAMPLES = 160
"""pocketsphinx frames are 10 ms at 16 kHz."""
FRAMES_PER_TOKEN = 4
"""One 25 Hz token spans four 10 ms alignment frames."""
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")


class PhoneAlignError(GSVError, ValueError):
    """The audio could not be aligned to its transcript, or no transcript was given."""

    code = "alignment_failed"


@dataclass
class PhoneAlignConfig(JsonConfig):
    """What the aligner produces (saved as config.json)."""

    name: str = "gsv-phone-align-v1"
    """What `SoVITSConfig.content_encoder` records for a SoVITS trained on these tokens."""
    phones: list[str] = field(default_factory=lambda: list(PHONES))
    n_states: int = 3
    """HMM states per phone in pocketsphinx's en-us model."""
    language: str = "en"

    @property
    def n_tokens(self) -> int:
        return len(self.phones) * self.n_states


def _pocketsphinx():
    try:
        import pocketsphinx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelNotFoundError(
            "pocketsphinx", "the pocketsphinx package (its en-us acoustic model aligns phones)",
            missing=["pip install pocketsphinx"],
        ) from exc
    return pocketsphinx


class PhoneAligner:
    """Forced alignment of 16 kHz speech to English text -> a (phone, state) label per 10 ms frame.

    One pocketsphinx decoder is not thread-safe, so `align` holds a lock (call `words` alone only
    from one thread); an alignment takes ~3 % of the audio's duration on one core.
    """

    def __init__(self, cfg: PhoneAlignConfig | None = None) -> None:
        from gpt_sovits.text.en_g2p import EnglishG2P

        self.cfg = cfg or PhoneAlignConfig()
        self._phone_index = {p: i for i, p in enumerate(self.cfg.phones)}
        self._g2p = EnglishG2P()
        self._decoder = _pocketsphinx().Decoder(lm=None, bestpath=False, loglevel="FATAL")
        self._lock = threading.Lock()

    def words(self, text: str) -> list[str]:
        """The transcript as dictionary words (normalised: digits, symbols and case spelled out);
        words the acoustic model's dictionary lacks are added with our G2P's pronunciation."""
        norm = self._g2p.normalize(text).lower()
        words = _WORD_RE.findall(norm)
        for word in words:
            if self._decoder.lookup_word(word) is None:
                phones = [re.sub(r"\d", "", p) for p in self._g2p.word_phones(word)]
                phones = [p for p in phones if p in self._phone_index and p != "SIL"]
                if phones:
                    self._decoder.add_word(word, " ".join(phones), True)
        return [w for w in words if self._decoder.lookup_word(w) is not None]

    def align(self, wav16k: np.ndarray, text: str) -> np.ndarray:
        """Label ids [frames] (frames = samples // 160; id = phone * n_states + state)."""
        pcm = (np.clip(np.asarray(wav16k, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        n_frames = len(wav16k) // FRAME_SAMPLES
        labels = np.zeros(n_frames, dtype=np.int64)  # SIL state 0 wherever nothing is aligned
        with self._lock:  # words() adds to the decoder's dictionary: it shares the lock
            words = self.words(text)
            if not words:
                raise PhoneAlignError(f"nothing to align in the transcript {text!r}: it has no English words")
            segments = self._run(pcm, " ".join(words))
        if not segments:
            raise PhoneAlignError(
                f"could not align {len(wav16k) / SSL_SAMPLE_RATE:.1f} s of audio to {text!r}: "
                "check that the transcript matches the speech")
        for phone, state, start, duration in segments:
            token = self._phone_index[phone] * self.cfg.n_states + min(state, self.cfg.n_states - 1)
            labels[start : min(start + duration, n_frames)] = token
        return labels

    def _run(self, pcm: bytes, text: str) -> list[tuple[str, int, int, int]]:
        d = self._decoder
        out: list[tuple[str, int, int, int]] = []
        try:
            # pass 1 aligns words; pass 2 (set_alignment) refines them into phones and HMM states
            d.set_align_text(text)
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            d.set_alignment()
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            alignment = d.get_alignment()
        except RuntimeError:  # no path through the audio (pocketsphinx: "Failed to set up sub-word alignment")
            return out
        if alignment is None:
            return out
        for word in alignment:
            for phone in word:
                name = phone.name if phone.name in self._phone_index else "SIL"
                for state, seg in enumerate(phone):
                    out.append((name, state, seg.start, seg.duration))
        return out


def tokens_from_labels(labels: np.ndarray, samples: int) -> np.ndarray:
    """25 Hz tokens [T50 // 2] from 10 ms labels: each token takes the label at its centre."""
    t50 = ssl_frame_count(samples)
    n = t50 // 2
    centres = np.arange(n) * FRAMES_PER_TOKEN + FRAMES_PER_TOKEN // 2
    centres = np.minimum(centres, max(len(labels) - 1, 0))
    return labels[centres] if len(labels) else np.zeros(n, dtype=np.int64)


class PhoneAlignFeatureExtractor:
    """A content encoder with `SSLFeatureExtractor`'s shape contract that also takes the
    transcript: [B, samples] @ 16 kHz + B texts -> one-hot [B, n_tokens, T50]."""

    needs_transcript = True
    pads_prompt = False
    """Voice prompts are aligned as they are: no HuBERT-style silence padding (`gpt_sovits.voice`)."""

    def __init__(self, cfg: PhoneAlignConfig | None = None) -> None:
        self.cfg = cfg or PhoneAlignConfig()
        self._aligner: PhoneAligner | None = None

    @property
    def hidden_size(self) -> int:
        return self.cfg.n_tokens

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def aligner(self) -> PhoneAligner:
        if self._aligner is None:  # built on first use: loading the acoustic model takes ~0.5 s
            self._aligner = PhoneAligner(self.cfg)
        return self._aligner

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "PhoneAlignFeatureExtractor":
        return self  # nothing to move: alignment runs on the CPU

    def tokens(self, wav16k: np.ndarray, text: str) -> np.ndarray:
        """Aligned 25 Hz tokens of one utterance."""
        return tokens_from_labels(self.aligner.align(wav16k, text), len(wav16k))

    def __call__(self, wav16k: Tensor, texts: list[str] | str | None = None) -> Tensor:
        if wav16k.dim() == 1:
            wav16k = wav16k.unsqueeze(0)
        if texts is None:
            raise PhoneAlignError(
                f"the content encoder '{self.name}' aligns speech to its transcript: pass the text "
                "(a voice without a transcript is reference-free)", code="transcript_required")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if len(texts) != wav16k.size(0):
            raise PhoneAlignError(f"{wav16k.size(0)} waveforms but {len(texts)} transcripts")
        t50 = ssl_frame_count(wav16k.size(-1))
        out = torch.zeros(wav16k.size(0), self.hidden_size, t50)
        for row, (wav, text) in enumerate(zip(wav16k.float().cpu().numpy(), texts)):
            frames = torch.from_numpy(self.tokens(wav, text)).repeat_interleave(2)
            if frames.numel() < t50:  # an odd T50 (or no token at all) pads with the last label / SIL
                last = frames[-1:] if frames.numel() else torch.zeros(1, dtype=torch.long)
                frames = torch.cat([frames, last.expand(t50 - frames.numel())])
            out[row, frames[:t50], torch.arange(t50)] = 1.0
        return out.to(wav16k.device)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "PhoneAlignFeatureExtractor":
        return cls(read_aligner_config(directory))

    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"format": ALIGNER_FORMAT, **self.cfg.to_dict()}, indent=1) + "\n")
        return out


def is_aligner_dir(directory: str | Path) -> bool:
    path = Path(directory) / "config.json"
    try:
        return path.is_file() and json.loads(path.read_text()).get("format") == ALIGNER_FORMAT
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return False


def read_aligner_config(directory: str | Path) -> PhoneAlignConfig:
    if not is_aligner_dir(directory):
        raise ModelNotFoundError(directory, "a phone aligner folder", missing=[f"config.json with format '{ALIGNER_FORMAT}'"])
    data = json.loads((Path(directory) / "config.json").read_text())
    data.pop("format")
    return PhoneAlignConfig.from_dict(data)


def phone_token_sovits_config(cfg: PhoneAlignConfig, base: SoVITSConfig | None = None) -> SoVITSConfig:
    """The SoVITS config of a base trained on aligned tokens: names the aligner, one code per
    (phone, state), a frozen quantizer."""
    return dataclasses.replace(base or SoVITSConfig(), ssl_dim=cfg.n_tokens, codebook_size=cfg.n_tokens,
                               content_encoder=cfg.name, freeze_quantizer=True)
