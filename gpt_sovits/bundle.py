"""The set of loaded models one synthesis needs: GPT, SoVITS, SSL (HuBERT), BERT and the frontend.

A `ModelBundle` is built once and never mutated per request, so one instance is shared by every
request thread. Per-voice fine-tunes swap only the GPT and/or SoVITS (`with_weights`) and share
the expensive feature extractors.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.errors import GSVError, ModelNotFoundError
from gpt_sovits.features import BertFeatureExtractor, SSLFeatureExtractor
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.t2s import T2SModel
from gpt_sovits.text.frontend import TextFrontend

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


class ModelConfigError(GSVError, ValueError):
    """The models of a bundle do not fit together (e.g. BERT width vs GPT bert_dim)."""

    code = "model_mismatch"


@dataclass(frozen=True)
class ModelBundle:
    """Loaded, eval-mode models plus the text frontend that matches their phone table."""

    gpt: T2SModel
    gpt_config: GPTConfig
    sovits: SynthesizerTrn
    sovits_config: SoVITSConfig
    ssl: SSLFeatureExtractor
    bert: BertFeatureExtractor | None
    frontend: TextFrontend
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    name: str = "bundle"
    """Identifies the (GPT, SoVITS) weights, so caches of model-dependent tensors can key on it."""
    speaker_verifier: object | None = None
    """ERes2NetV2 model for v2Pro/v2ProPlus SoVITS (`speaker_encoder.eres2net`), else None."""

    def __post_init__(self) -> None:
        if self.bert is not None and self.bert.hidden_size != self.gpt_config.bert_dim:
            raise ModelConfigError(
                f"BERT width {self.bert.hidden_size} does not match the GPT's bert_dim "
                f"{self.gpt_config.bert_dim}: use the BERT model the GPT was trained with."
            )
        if self.ssl.hidden_size != self.sovits_config.ssl_dim:
            raise ModelConfigError(
                f"SSL width {self.ssl.hidden_size} does not match SoVITS ssl_dim "
                f"{self.sovits_config.ssl_dim}: the SoVITS was trained on another content encoder "
                f"({self.sovits_config.content_encoder})."
            )

    @property
    def sample_rate(self) -> int:
        return self.sovits_config.sampling_rate

    @property
    def samples_per_token(self) -> int:
        return self.sovits_config.samples_per_token

    @property
    def symbol_version(self) -> str:
        """Phone table of the GPT: v1 checkpoints embed only the first 512 rows (322 used)."""
        return "v1" if self.sovits_config.n_symbols == 322 else "v2"

    @classmethod
    def random_tiny(cls, seed: int = 0, device: str = "cpu") -> "ModelBundle":
        """Tiny random models (configs/*_tiny.json): the whole stack runs anywhere, audio is noise."""
        gpt_cfg = GPTConfig.load(CONFIGS_DIR / "gpt_tiny.json")
        sovits_cfg = SoVITSConfig.load(CONFIGS_DIR / "sovits_tiny.json")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gpt = T2SModel(gpt_cfg)
            sovits = SynthesizerTrn(sovits_cfg, with_posterior=False)
            _init_random_codebook(sovits)
        ssl = SSLFeatureExtractor.random_tiny(hidden=sovits_cfg.ssl_dim, seed=seed)
        bert = BertFeatureExtractor.random_tiny(hidden=gpt_cfg.bert_dim, seed=seed)
        return cls._assemble(gpt, gpt_cfg, sovits, sovits_cfg, ssl, bert, device, f"random-tiny-{seed}")

    @classmethod
    def from_paths(
        cls,
        gpt: str | Path,
        sovits: str | Path,
        hubert_dir: str | Path,
        bert_dir: str | Path | None = None,
        device: str = "cpu",
        sv_path: str | Path | None = None,
    ) -> "ModelBundle":
        """Load official (.ckpt/.pth) or native (.safetensors + .json) weights from local paths.

        `sv_path` is the ERes2NetV2 checkpoint that v2Pro/v2ProPlus SoVITS models need.
        """
        from gpt_sovits.checkpoint import load_gpt, load_sovits

        for path, what in ((gpt, "GPT weights (.ckpt or .safetensors)"), (sovits, "SoVITS weights (.pth or .safetensors)")):
            if not Path(path).is_file():
                raise ModelNotFoundError(path, what)
        gpt_model, gpt_cfg = load_gpt(gpt)
        sovits_model, sovits_cfg = load_sovits(sovits)
        ssl = SSLFeatureExtractor.from_pretrained(hubert_dir)
        bert = BertFeatureExtractor.from_pretrained(bert_dir) if bert_dir else None
        bundle = cls._assemble(
            gpt_model, gpt_cfg, sovits_model, sovits_cfg, ssl, bert, device, _weights_name(gpt, sovits)
        )
        if sv_path is not None:
            from speaker_encoder.eres2net import load_eres2net

            verifier, _ = load_eres2net(sv_path)
            bundle = replace(bundle, speaker_verifier=verifier.to(bundle.device).eval())
        return bundle

    @classmethod
    def _assemble(cls, gpt, gpt_cfg, sovits, sovits_cfg, ssl, bert, device, name) -> "ModelBundle":
        dev = torch.device(device)
        gpt = gpt.to(dev).eval()
        sovits = sovits.to(dev).eval()
        ssl.to(dev)
        if bert is not None:
            bert.to(dev)
        version = "v1" if sovits_cfg.n_symbols == 322 else "v2"
        frontend = TextFrontend(version=version, bert=bert, bert_dim=gpt_cfg.bert_dim)
        return cls(gpt, gpt_cfg, sovits, sovits_cfg, ssl, bert, frontend, dev, name)

    def with_weights(self, gpt: str | Path | None = None, sovits: str | Path | None = None) -> "ModelBundle":
        """A bundle with a fine-tuned GPT and/or SoVITS that shares this one's SSL/BERT/frontend."""
        from gpt_sovits.checkpoint import load_gpt, load_sovits

        changes: dict[str, object] = {}
        if gpt is not None:
            model, cfg = load_gpt(gpt)
            changes.update(gpt=model.to(self.device).eval(), gpt_config=cfg)
        if sovits is not None:
            model, cfg = load_sovits(sovits)
            changes.update(sovits=model.to(self.device).eval(), sovits_config=cfg)
        if not changes:
            return self
        changes["name"] = f"{self.name}+{_weights_name(gpt or '', sovits or '')}"
        return replace(self, **changes)


def _weights_name(*paths: str | Path) -> str:
    """A short stable id for a set of weight files (path + size + mtime, not a full hash)."""
    h = hashlib.sha1()
    for p in paths:
        path = Path(p)
        h.update(str(path.resolve()).encode())
        if path.is_file():
            st = path.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _init_random_codebook(sovits: SynthesizerTrn) -> None:
    """A fresh quantizer is 'not initialised' (official k-means on first use); mark it ready."""
    codebook = sovits.quantizer.vq.layers[0]._codebook
    codebook.inited.fill_(1)
