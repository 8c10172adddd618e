"""The models `gsv prepare` runs on every utterance, behind four small calls.

`FeatureModels` owns HuBERT, the base SoVITS (only `ssl_proj` + quantizer are used, through
`extract_latent`), the text frontend and, for Chinese, BERT. Semantic tokens must come from the
same SoVITS the S2 fine-tune starts from: its frozen codebook defines what the tokens mean.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from gpt_sovits.config import SoVITSConfig
from gpt_sovits.content_encoder import content_features
from gpt_sovits.errors import GSVError
from gpt_sovits.features import BertFeatureExtractor, SSLFeatureExtractor
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.sovits.spectrogram import linear_spectrogram
from gpt_sovits.text.frontend import TextFrontend

if TYPE_CHECKING:
    from training.content_encoder import ContentFeatureExtractor


@dataclass
class TextFeatures:
    """Phones of one utterance (ids in the model's table) and what came with them."""

    phones: list[int]
    word2ph: list[int] | None
    norm_text: str
    lang: str
    bert: Tensor | None
    """[bert_dim, n_phones] for utterances with Chinese text, None otherwise (zeros at training)."""


def _file_id(path: Path) -> str:
    """Cheap identity of a weight file: name, size and a hash of its last MiB (tensor data in a
    safetensors file; the header is skipped because its key order is not stable across saves)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    return f"{path.name}:{size}:{hashlib.sha1(tail).hexdigest()[:12]}"


class FeatureModels:
    """HuBERT (or our content encoder) + base SoVITS quantizer + frontend (+ BERT), eval mode."""

    def __init__(self, ssl: SSLFeatureExtractor | ContentFeatureExtractor, sovits: SynthesizerTrn, sovits_config: SoVITSConfig,
                 frontend: TextFrontend, bert: BertFeatureExtractor | None, device: torch.device,
                 identity: dict[str, str]) -> None:
        if ssl.hidden_size != sovits_config.ssl_dim:
            raise GSVError(
                f"HuBERT width {ssl.hidden_size} does not match the SoVITS ssl_dim {sovits_config.ssl_dim}: "
                f"use the content encoder the SoVITS was trained with ({sovits_config.content_encoder}).",
                code="model_mismatch",
            )
        self.ssl = ssl
        self.sovits = sovits.to(device).eval()
        self.sovits_config = sovits_config
        self.frontend = frontend
        self.bert = bert
        self.device = device
        self.identity = identity

    @classmethod
    def from_paths(cls, sovits: Path, hubert_dir: Path, bert_dir: Path | None, device: torch.device) -> "FeatureModels":
        """Load from local files; each loader raises a clear error when its files are missing."""
        from gpt_sovits.checkpoint import load_sovits
        from gpt_sovits.errors import ModelNotFoundError
        from training.content_encoder import open_content_encoder

        if not Path(sovits).is_file():
            raise ModelNotFoundError(sovits, "the base SoVITS weights (s2G*.pth or our .safetensors)")
        model, cfg = load_sovits(sovits)
        ssl = open_content_encoder(hubert_dir)
        name = getattr(ssl, "name", "chinese-hubert-base")
        if name != cfg.content_encoder:
            raise ModelNotFoundError(
                hubert_dir, f"the content encoder the SoVITS was trained on ('{cfg.content_encoder}'); "
                f"this folder holds '{name}'")
        bert = BertFeatureExtractor.from_pretrained(bert_dir) if bert_dir else None
        ssl.to(device)
        if bert is not None:
            bert.to(device)
        frontend = TextFrontend(version="v1" if cfg.n_symbols == 322 else "v2", bert=bert,
                                bert_dim=bert.hidden_size if bert else 1024)
        identity = {"sovits": _file_id(Path(sovits)), "hubert": Path(hubert_dir).name,
                    "bert": Path(bert_dir).name if bert_dir else ""}
        return cls(ssl, model, cfg, frontend, bert, device, identity)

    @classmethod
    def random_tiny(cls, seed: int = 0, sovits: Path | None = None) -> "FeatureModels":
        """The feature side of `ModelBundle.random_tiny(seed)` (same SSL/BERT/quantizer weights),
        or a given tiny SoVITS file for the quantizer."""
        from gpt_sovits.bundle import ModelBundle

        bundle = ModelBundle.random_tiny(seed)
        model, cfg, sovits_id = bundle.sovits, bundle.sovits_config, f"random-tiny-{seed}"
        if sovits is not None:
            from gpt_sovits.checkpoint import load_sovits

            model, cfg = load_sovits(sovits)
            sovits_id = _file_id(Path(sovits))
        identity = {"sovits": sovits_id, "hubert": f"random-tiny-{seed}", "bert": f"random-tiny-{seed}"}
        return cls(bundle.ssl, model, cfg, bundle.frontend, bundle.bert, torch.device("cpu"), identity)

    # ------------------------------------------------------------------------------ features
    @torch.no_grad()
    def ssl_features(self, wav16k: np.ndarray, text: str | None = None) -> Tensor:
        """HuBERT features [C, T50] (CPU, float32) of a 16 kHz waveform. `text` (the transcript)
        is used by content encoders that align to it (`gpt_sovits.phone_align`), ignored by others."""
        wav = torch.from_numpy(np.ascontiguousarray(wav16k, dtype=np.float32)).to(self.device)
        return content_features(self.ssl, wav.unsqueeze(0), [text] if text is not None else None)[0].float().cpu()

    @torch.no_grad()
    def semantic_tokens(self, ssl: Tensor) -> Tensor:
        """25 Hz semantic codes [T50 // 2] from HuBERT features [C, T50]."""
        codes = self.sovits.extract_latent(ssl.unsqueeze(0).to(self.device))
        return codes[0, 0].cpu()

    def spectrogram(self, wav32k: np.ndarray) -> Tensor:
        """Linear magnitude spectrogram [n_fft/2+1, frames] of a 32 kHz waveform (CPU)."""
        c = self.sovits_config
        wav = torch.from_numpy(np.ascontiguousarray(wav32k, dtype=np.float32))
        return linear_spectrogram(wav.unsqueeze(0), c.filter_length, c.hop_length, c.win_length)[0]

    def text_features(self, text: str, lang: str) -> TextFeatures:
        """Phones (+ word2ph, normalised text, BERT for zh) of one utterance's transcript.

        The transcript is phonemised as one sentence, uncut, as the official `1-get-text` does.
        Raises the frontend's `FrontendError` when nothing speakable is left.
        """
        segment = self.frontend.sentence(text, lang)
        has_zh = self.bert is not None and any(r.lang == "zh" for r in segment.runs)
        bert = self.frontend.bert_features(segment).float().cpu() if has_zh else None
        return TextFeatures(segment.phone_ids, segment.word2ph, segment.norm_text, segment.lang, bert)
