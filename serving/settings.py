"""The one settings object of the service.

Every knob of the server lives here, is typed, has a default and a one-line docstring (pydantic
turns the docstrings into field descriptions, so `--help` texts and docs come from one place).
Values come from, in order of precedence: explicit constructor arguments (the CLI passes its
flags this way), environment variables with the `GSV_` prefix (`GSV_DATA_DIR=/srv/gsv`), a `.env`
file in the working directory, then the defaults below. List fields accept JSON
(`GSV_API_KEYS='["a","b"]'`) or a comma-separated string (`GSV_API_KEYS=a,b`).

Model weights are never downloaded: either point at each file/directory, or at one `models_dir`
laid out like the official GPT-SoVITS `pretrained_models` folder, or run with `random_weights`
(tiny random models, for tests and demos). `describe_missing_models()` turns a bad configuration
into one message that says exactly what is missing and how to provide it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Official `GPT_SoVITS/pretrained_models` layout for the v2 models (names from the upstream config).
OFFICIAL_GPT_V2 = "gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt"
OFFICIAL_SOVITS_V2 = "gsv-v2final-pretrained/s2G2333k.pth"
OFFICIAL_HUBERT = "chinese-hubert-base"
OFFICIAL_BERT = "chinese-roberta-wwm-ext-large"

# Files a Hugging Face model directory must hold for `from_pretrained` to work offline.
_HF_CONFIG = "config.json"
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class ModelPaths:
    """Resolved weight locations; field names match `ModelBundle.from_paths` keywords."""

    gpt: Path | None
    sovits: Path | None
    hubert_dir: Path | None
    bert_dir: Path | None


@dataclass(frozen=True)
class MissingModel:
    """One weight that is not where the settings say it should be."""

    what: str
    """Human name, e.g. "GPT (text-to-semantic) checkpoint"."""
    path: Path | None
    """Where we looked; None when no location was configured at all."""
    how: str
    """How to provide it: flag, environment variable and expected content."""
    required: bool
    """False for weights the server can run without (BERT: Chinese prosody features)."""


class Settings(BaseSettings):
    """Server configuration (environment prefix `GSV_`, `.env` supported)."""

    model_config = SettingsConfigDict(
        env_prefix="GSV_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    # ----------------------------------------------------------------------------- storage
    data_dir: Path = Path("data")
    """Root of the voice registry: SQLite database plus voices/<id>/ files. Back this up."""

    # ------------------------------------------------------------------------------ models
    models_dir: Path | None = None
    """A folder in the official `pretrained_models` layout; fills any model path not set below."""
    gpt: Path | None = None
    """GPT (text-to-semantic) checkpoint, e.g. the official v2 `.ckpt`."""
    sovits: Path | None = None
    """SoVITS (semantic-to-audio) checkpoint, e.g. the official v2 `s2G2333k.pth`."""
    hubert_dir: Path | None = None
    """Hugging Face directory of chinese-hubert-base (config.json + weights)."""
    bert_dir: Path | None = None
    """Hugging Face directory of chinese-roberta-wwm-ext-large; optional, used for Chinese text."""
    random_weights: bool = False
    """Use tiny random models instead of real weights (tests, demos); output is noise."""
    device: str = "cpu"
    """Torch device for the models: "cpu", "cuda", "cuda:1", ..."""
    backend: Literal["torch", "onnx", "tensorrt"] = "torch"
    """Runtime for the GPT step and SoVITS decode."""

    # -------------------------------------------------------------------------------- HTTP
    host: str = "127.0.0.1"
    """Interface to listen on; use 0.0.0.0 to accept remote clients."""
    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port to listen on."""
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Accepted bearer keys; empty disables authentication (every caller is one owner)."""

    # ----------------------------------------------------------------------------- limits
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    """Largest accepted upload in bytes, checked before any decoding."""
    min_upload_seconds: float = Field(default=3.0, gt=0)
    """Least detected speech an upload must contain, in seconds."""
    max_upload_seconds: float = Field(default=300.0, gt=0)
    """Longest accepted upload, in seconds of audio (speech or not)."""
    max_upload_channels: int = Field(default=2, ge=1)
    """Most audio channels accepted (mono or stereo); downmix multichannel recordings first."""
    max_text_chars: int = Field(default=2000, gt=0)
    """Longest synthesis text and transcript, in characters."""
    max_concurrent_streams: int = Field(default=4, ge=1)
    """Synthesis requests served at the same time; more wait in the queue."""
    queue_size: int = Field(default=32, ge=1)
    """Requests allowed to wait for a synthesis slot; beyond that the server answers 503."""
    rate_limit_per_minute: int = Field(default=60, ge=0)
    """Requests per minute per API key; 0 disables rate limiting."""
    request_timeout_s: float = Field(default=120.0, gt=0)
    """Longest a synthesis request may run before it is cancelled."""
    decode_timeout_s: float = Field(default=30.0, gt=0)
    """Longest the decoding of one upload may take (it runs in a separate process)."""
    decode_memory_mb: int = Field(default=1024, ge=64)
    """Extra address space the decoding process may use before it is stopped."""
    max_concurrent_decodes: int = Field(default=2, ge=1)
    """Uploads decoded at the same time (each in its own process)."""

    # -------------------------------------------------------------------------- voices
    voice_cache_entries: int = Field(default=64, ge=1)
    """Voice prompts kept in memory (LRU); the rest are read from disk on use."""
    finetune_pool_size: int = Field(default=2, ge=0)
    """Fine-tuned model pairs kept loaded at once (LRU); 0 disables fine-tuned voices."""
    max_aux_refs: int = Field(default=4, ge=0)
    """Extra reference segments stored per voice besides the main reference."""
    duplicate_threshold: float = Field(default=0.85, ge=-1.0, le=1.0)
    """Speaker-embedding cosine above which a new voice is flagged as a near duplicate."""
    max_voice_name_chars: int = Field(default=100, gt=0)
    """Longest voice name, in characters."""
    max_weights_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)
    """Largest accepted fine-tuned weight file (GPT .ckpt or SoVITS .pth) uploaded with a voice."""

    # ------------------------------------------------------- engine and HTTP (serving.app)
    workers: int = Field(default=1, ge=1, le=64)
    """Synthesis worker threads sharing the loaded models (one per device stream is plenty)."""
    max_request_bytes: int = Field(default=1024 * 1024, gt=0)
    """Largest body of a JSON request (voice uploads use the upload/weights limits instead)."""
    rate_limit_burst: int | None = Field(default=None, ge=1)
    """Requests a key may send back to back before the per-minute rate applies (default: that rate)."""
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """On SIGTERM: how long in-flight requests may still run before the server exits anyway."""
    warmup: bool = True
    """Run one tiny synthesis at start-up; /readyz turns ready only after it passed."""
    speaker_embeddings: bool = True
    """Compute GE2E speaker embeddings for new voices (similar-voice search, duplicate warnings)."""
    sv_path: Path | None = None
    """ERes2NetV2 checkpoint that v2Pro/v2ProPlus SoVITS weights need (official `sv/*.ckpt`)."""

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        """Accept "a,b" and '["a","b"]' from the environment as well as real lists."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> "Settings":
        if self.min_upload_seconds >= self.max_upload_seconds:
            raise ValueError(
                f"min_upload_seconds ({self.min_upload_seconds}) must be below "
                f"max_upload_seconds ({self.max_upload_seconds})"
            )
        if any(not key for key in self.api_keys):
            raise ValueError("api_keys must not contain empty keys")
        return self

    # --------------------------------------------------------------------------- helpers
    @property
    def auth_enabled(self) -> bool:
        """True when at least one API key is configured."""
        return bool(self.api_keys)

    @property
    def voices_dir(self) -> Path:
        """Where per-voice files live (data_dir/voices)."""
        return self.data_dir / "voices"

    def model_paths(self) -> ModelPaths:
        """Explicit paths first, then the official layout under `models_dir`."""
        root = self.models_dir

        def pick(explicit: Path | None, official: str) -> Path | None:
            if explicit is not None:
                return explicit
            return root / official if root is not None else None

        return ModelPaths(
            gpt=pick(self.gpt, OFFICIAL_GPT_V2),
            sovits=pick(self.sovits, OFFICIAL_SOVITS_V2),
            hubert_dir=pick(self.hubert_dir, OFFICIAL_HUBERT),
            bert_dir=pick(self.bert_dir, OFFICIAL_BERT),
        )

    def missing_models(self) -> list[MissingModel]:
        """Every configured-but-absent or unconfigured weight; empty with `random_weights`."""
        if self.random_weights:
            return []
        paths = self.model_paths()
        found: list[MissingModel] = []
        checks = (
            ("GPT (text-to-semantic) checkpoint", paths.gpt, "gpt", OFFICIAL_GPT_V2, False, True),
            ("SoVITS checkpoint", paths.sovits, "sovits", OFFICIAL_SOVITS_V2, False, True),
            ("HuBERT directory (chinese-hubert-base)", paths.hubert_dir, "hubert_dir", OFFICIAL_HUBERT, True, True),
            ("BERT directory (chinese-roberta-wwm-ext-large)", paths.bert_dir, "bert_dir", OFFICIAL_BERT, True, False),
        )
        for what, path, field, official, is_dir, required in checks:
            problem = _path_problem(path, is_dir)
            if problem is None:
                continue
            flag = "--" + field.replace("_", "-")
            env = "GSV_" + field.upper()
            how = (
                f"{problem}; pass {flag} PATH or set {env}=PATH, or put it at "
                f"<models_dir>/{official} and pass --models-dir / GSV_MODELS_DIR"
            )
            if is_dir:
                how += f" (a Hugging Face folder with {_HF_CONFIG} and {' or '.join(_HF_WEIGHTS)})"
            found.append(MissingModel(what=what, path=path, how=how, required=required))
        return found

    def describe_missing_models(self) -> str | None:
        """One message naming every missing required weight and how to provide it, or None.

        Optional weights (BERT) are mentioned only when something required is missing too, so
        a server without BERT starts quietly; it then uses zero BERT features for Chinese.
        """
        missing = self.missing_models()
        if not any(m.required for m in missing):
            return None
        lines = ["Model weights are missing (nothing is downloaded at run time):"]
        for item in missing:
            tag = "" if item.required else " [optional: only Chinese prosody uses it]"
            where = f" at '{item.path}'" if item.path is not None else ""
            lines.append(f"  - {item.what}{where}{tag}: {item.how}.")
        lines.append(
            "The official layout is GPT_SoVITS/pretrained_models/ with "
            f"{OFFICIAL_GPT_V2}, {OFFICIAL_SOVITS_V2}, {OFFICIAL_HUBERT}/ and {OFFICIAL_BERT}/. "
            "To try the service without weights, pass --random-weights (GSV_RANDOM_WEIGHTS=1): "
            "tiny random models that produce noise."
        )
        return "\n".join(lines)


def _path_problem(path: Path | None, is_dir: bool) -> str | None:
    """Why `path` cannot be used, or None when it looks usable."""
    if path is None:
        return "not configured"
    if is_dir:
        if not path.is_dir():
            return "directory not found"
        if not (path / _HF_CONFIG).is_file():
            return f"{_HF_CONFIG} not found in the directory"
        if not any((path / name).is_file() for name in _HF_WEIGHTS):
            return "no weight file in the directory"
        return None
    if not path.is_file():
        return "file not found"
    return None
