"""The set of loaded models one synthesis needs: GPT, SoVITS, SSL (HuBERT), BERT and the frontend.

The SSL slot holds chinese-hubert-base for official weights, or our own content encoder
(`gpt_sovits.content_encoder`) for a base model trained on it; `from_paths` opens whichever the
folder holds, and a SoVITS is only paired with the encoder its config names.

A `ModelBundle` is built once and never mutated per request, so one instance is shared by every
request thread. Per-voice fine-tunes swap only the GPT and/or SoVITS (`with_weights`) and share
the expensive feature extractors.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.content_encoder import ContentFeatureExtractor, open_content_encoder
from gpt_sovits.errors import CheckpointError, GSVError, ModelNotFoundError
from gpt_sovits.features import BertFeatureExtractor, SSLFeatureExtractor
from gpt_sovits.grammar import PhoneGrammar, TokenGrammar
from gpt_sovits.phone_align import PhoneAlignFeatureExtractor
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.sovits.random_init import make_audible
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
    ssl: SSLFeatureExtractor | ContentFeatureExtractor
    """chinese-hubert-base, or our content encoder when the SoVITS was trained on it."""
    bert: BertFeatureExtractor | None
    """None: BERT features are zeros (fine for English; a base trained without BERT never needs one)."""
    frontend: TextFrontend
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    name: str = "bundle"
    """Identifies the (GPT, SoVITS) weights, so caches of model-dependent tensors can key on it."""
    speaker_verifier: object | None = None
    """ERes2NetV2 model for v2Pro/v2ProPlus SoVITS (`speaker_encoder.eres2net`), else None."""

    def __post_init__(self) -> None:
        _check_speaker_verifier(self.speaker_verifier, self.sovits_config)
        if self.bert is not None and self.bert.hidden_size != self.gpt_config.bert_dim:
            raise ModelConfigError(
                f"BERT width {self.bert.hidden_size} does not match the GPT's bert_dim "
                f"{self.gpt_config.bert_dim}: use the BERT model the GPT was trained with."
            )
        _check_content_encoder(self.ssl, self.sovits_config)
        if self.ssl.hidden_size != self.sovits_config.ssl_dim:
            raise ModelConfigError(
                f"SSL width {self.ssl.hidden_size} does not match SoVITS ssl_dim "
                f"{self.sovits_config.ssl_dim}: the SoVITS was trained on another content encoder "
                f"({self.sovits_config.content_encoder})."
            )

    @property
    def content_encoder(self) -> str:
        """Name of the loaded content encoder: ours record theirs, HuBERT is taken as the SoVITS's."""
        if isinstance(self.ssl, ContentFeatureExtractor):
            return self.ssl.name
        return self.sovits_config.content_encoder

    def describe(self) -> str:
        """One line for logs and server info: what is loaded (no paths)."""
        cfg = self.sovits_config
        bert = f"BERT {self.bert.hidden_size}-d" if self.bert is not None else "no BERT (zero text features)"
        return (f"SoVITS {cfg.version} ({cfg.sampling_rate} Hz), content encoder {self.content_encoder} "
                f"({self.ssl.hidden_size}-d), {bert}, weights id {self.name}")

    def token_grammar(self, phones: Sequence[str]) -> TokenGrammar | None:
        """The grammar a segment with these phone symbols decodes under, when the GPT's config
        names one (`GPTConfig.decode_grammar`), else None."""
        kind = self.gpt_config.decode_grammar
        if kind is None:
            return None
        if kind != "phones" or not isinstance(self.ssl, PhoneAlignFeatureExtractor):
            raise ModelConfigError(
                f"decode_grammar {kind!r} needs tokens from the phone aligner ('phones'); this bundle's "
                f"content encoder is {self.content_encoder}: set decode_grammar to null in gpt.json")
        cfg = self.ssl.cfg
        return PhoneGrammar.for_symbols(phones, cfg.phones, cfg.n_states, self.gpt_config.eos)

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
    def random_tiny(cls, seed: int = 0, device: str = "cpu", pro: bool = False) -> "ModelBundle":
        """Tiny random models (configs/*_tiny.json): the whole stack runs anywhere, audio is noise.

        `pro=True` builds a v2Pro-style SoVITS (configs/sovits_tiny_pro.json) plus a tiny random
        ERes2NetV2 (configs/eres2netv2_tiny.json) as `speaker_verifier`.
        """
        gpt_cfg = GPTConfig.load(CONFIGS_DIR / "gpt_tiny.json")
        sovits_cfg = SoVITSConfig.load(CONFIGS_DIR / ("sovits_tiny_pro.json" if pro else "sovits_tiny.json"))
        verifier = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gpt = T2SModel(gpt_cfg)
            sovits = make_audible(SynthesizerTrn(sovits_cfg, with_posterior=False))
            _init_random_codebook(sovits)
            if pro:  # built last, so the non-pro models get the same weights for the same seed
                from speaker_encoder.eres2net import ERes2NetV2, ERes2NetV2Config

                verifier = ERes2NetV2(ERes2NetV2Config.load(CONFIGS_DIR / "eres2netv2_tiny.json"))
        ssl = SSLFeatureExtractor.random_tiny(hidden=sovits_cfg.ssl_dim, seed=seed)
        bert = BertFeatureExtractor.random_tiny(hidden=gpt_cfg.bert_dim, seed=seed)
        name = f"random-tiny-pro-{seed}" if pro else f"random-tiny-{seed}"
        return cls._assemble(gpt, gpt_cfg, sovits, sovits_cfg, ssl, bert, device, name, verifier)

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

        `hubert_dir` is chinese-hubert-base (Hugging Face folder) or our content encoder (a folder
        whose config.json says `"format": "gsv-content-encoder"`); the SoVITS config's
        `content_encoder` must name the latter, else `ModelConfigError` (code model_mismatch).
        `bert_dir` is optional: without it BERT features are zeros.

        `sv_path` is the ERes2NetV2 checkpoint that v2Pro/v2ProPlus SoVITS models need (official
        `.ckpt` or a `.safetensors`; non-default sizes need an `ERes2NetV2Config` JSON beside it
        with the same stem). A Pro SoVITS loaded without it can still use stored voices, but new
        voice prompts raise `model_not_found`.
        """
        from gpt_sovits.checkpoint import load_gpt, load_sovits

        for path, what in ((gpt, "GPT weights (.ckpt or .safetensors)"), (sovits, "SoVITS weights (.pth or .safetensors)")):
            if not Path(path).is_file():
                raise ModelNotFoundError(path, what)
        gpt_model, gpt_cfg = load_gpt(gpt)
        sovits_model, sovits_cfg = load_sovits(sovits)
        ssl = open_content_encoder(hubert_dir)
        bert = BertFeatureExtractor.from_pretrained(bert_dir) if bert_dir else None
        verifier = _load_speaker_verifier(sv_path) if sv_path is not None else None
        return cls._assemble(
            gpt_model, gpt_cfg, sovits_model, sovits_cfg, ssl, bert, device, _weights_name(gpt, sovits), verifier
        )

    @classmethod
    def from_models_dir(
        cls, directory: str | Path, version: str | None = None, device: str = "cpu"
    ) -> "ModelBundle":
        """Load one version from a folder in the official `pretrained_models` layout (or ours).

        `version` is v1, v2 (the default for the official layout), v2Pro or v2ProPlus; see
        `gpt_sovits.models_dir` for the file names. Missing files raise one `ModelNotFoundError`
        naming each of them.
        """
        from gpt_sovits.models_dir import resolve_models_dir

        paths = resolve_models_dir(directory, version)
        return cls.from_paths(
            paths.gpt, paths.sovits, paths.hubert_dir, paths.bert_dir, device=device, sv_path=paths.sv_path
        )

    @classmethod
    def _assemble(cls, gpt, gpt_cfg, sovits, sovits_cfg, ssl, bert, device, name, verifier=None) -> "ModelBundle":
        dev = torch.device(device)
        gpt = gpt.to(dev).eval()
        sovits = sovits.to(dev).eval()
        ssl.to(dev)
        if bert is not None:
            bert.to(dev)
        if verifier is not None:
            verifier = verifier.to(dev).eval()
        version = "v1" if sovits_cfg.n_symbols == 322 else "v2"
        frontend = TextFrontend(version=version, bert=bert, bert_dim=gpt_cfg.bert_dim)
        return cls(gpt, gpt_cfg, sovits, sovits_cfg, ssl, bert, frontend, dev, name, verifier)

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


def _load_speaker_verifier(path: str | Path) -> torch.nn.Module:
    """ERes2NetV2 weights (sizes from a same-stem `ERes2NetV2Config` JSON when present)."""
    from speaker_encoder.eres2net import load_eres2net

    try:
        verifier, _ = load_eres2net(path)
    except RuntimeError as exc:  # load_state_dict(strict=True): keys or shapes do not fit the config
        sidecar = Path(path).with_suffix(".json")
        raise CheckpointError(
            f"'{path}' does not fit its ERes2NetV2 config ('{sidecar}', or the default w24 s4 e4 sizes "
            f"without one): use the official pretrained_eres2netv2w24s4ep4.ckpt, or put the model's "
            f"config at '{sidecar}' ({exc})"
        ) from exc
    return verifier


def _check_speaker_verifier(verifier: object | None, sovits_cfg: SoVITSConfig) -> None:
    """A Pro SoVITS's `sv_emb` Linear takes exactly the verifier's embedding width."""
    if verifier is None or not sovits_cfg.use_sv:
        return
    sv_dim = getattr(getattr(verifier, "config", None), "sv_dim", None)
    if sv_dim is not None and sv_dim != sovits_cfg.sv_dim:
        raise ModelConfigError(
            f"speaker verifier gives {sv_dim}-d embeddings but the SoVITS sv_emb takes {sovits_cfg.sv_dim}: "
            "use the ERes2NetV2 weights the SoVITS was trained with (pretrained_eres2netv2w24s4ep4.ckpt)"
        )


def _check_content_encoder(ssl: object, sovits_cfg: SoVITSConfig) -> None:
    """The SoVITS quantizer reads the features of one encoder: ours must be the one it names.

    A Hugging Face HuBERT folder carries no name, so for it only the width check applies.
    """
    if isinstance(ssl, ContentFeatureExtractor) and ssl.name != sovits_cfg.content_encoder:
        raise ModelConfigError(
            f"the SoVITS was trained on content encoder '{sovits_cfg.content_encoder}' but the content "
            f"encoder folder (hubert/, --hubert-dir) holds '{ssl.name}' ({ssl.hidden_size}-d): use the "
            "encoder the SoVITS was trained with; its semantic codebook cannot read other features"
        )


def _init_random_codebook(sovits: SynthesizerTrn) -> None:
    """A fresh quantizer is 'not initialised' (official k-means on first use); mark it ready."""
    codebook = sovits.quantizer.vq.layers[0]._codebook
    codebook.inited.fill_(1)
