"""The one settings object of the service.

Every knob of the server lives here, is typed, has a default and a one-line docstring (pydantic
turns the docstrings into field descriptions, so `--help` texts and docs come from one place).
Values come from, in order of precedence: explicit constructor arguments (the CLI passes its
flags this way), environment variables with the `GSV_` prefix (`GSV_DATA_DIR=/srv/gsv`), a `.env`
file in the working directory, then the defaults below. List fields accept JSON
(`GSV_API_KEYS='["a","b"]'`) or a comma-separated string (`GSV_API_KEYS=a,b`).

Model weights are never downloaded: point at one `models_dir` (the official GPT-SoVITS
`pretrained_models` folder or our layout, resolved by `gpt_sovits.models_dir` for `model_version`),
and/or at each file/directory (explicit paths override single pieces of `models_dir`), or run with
`random_weights` (tiny random models, for tests and demos). With none of these, the default base
model (`models/base/` of the repository, or `default_models_dir`) is used when it is complete.
`resolve_models()` gives the
`ModelBundle.from_paths` arguments; `describe_missing_models()` turns a bad configuration into one
message that says exactly what is missing and how to provide it.
"""
from __future__ import annotations

import os

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gpt_sovits.errors import GSVError


class ModelsMissingError(GSVError, FileNotFoundError):
    """The configured model weights are incomplete; the message lists each gap and its fix."""

    code = "model_not_found"


@dataclass(frozen=True)
class ModelSetting:
    """One model location setting: what it holds and how a user sets it."""

    name: str
    """Field name; also the `ModelBundle.from_paths` keyword."""
    what: str
    flag: str
    kind: Literal["file", "hf_dir", "hf_dir_tokenizer"]

    @property
    def env(self) -> str:
        return "GSV_" + self.name.upper()

    @property
    def how(self) -> str:
        return f"pass {self.flag} PATH or set {self.env}=PATH"


MODEL_SETTINGS: dict[str, ModelSetting] = {m.name: m for m in (
    ModelSetting("gpt", "GPT (text-to-semantic) weights", "--gpt", "file"),
    ModelSetting("sovits", "SoVITS weights", "--sovits", "file"),
    ModelSetting("hubert_dir", "HuBERT directory (chinese-hubert-base, or our content encoder)", "--hubert-dir",
                 "hf_dir"),
    ModelSetting("bert_dir", "BERT directory (chinese-roberta-wwm-ext-large)", "--bert-dir", "hf_dir_tokenizer"),
    ModelSetting("sv_path", "ERes2NetV2 speaker-verification weights", "--sv", "file"),
)}
"""Every model location, in `ModelBundle.from_paths` keyword order."""
_ALWAYS_NEEDED = ("gpt", "sovits", "hubert_dir")
_PRO_VERSIONS = ("v2Pro", "v2ProPlus")


@dataclass(frozen=True)
class MissingModel:
    """One weight that is not where the settings say it should be."""

    what: str
    """Human name, e.g. "GPT (text-to-semantic) weights"."""
    path: Path | None
    """Where we looked; None when no location was configured at all."""
    how: str
    """What is wrong and how to provide it: flag, environment variable, expected content."""
    setting: str
    """The setting that fixes it (`MODEL_SETTINGS` key, or "models_dir")."""


@dataclass(frozen=True)
class ResolvedModels:
    """Where each model comes from after explicit settings override `models_dir`."""

    fields: dict[str, Path | None]
    """`ModelBundle.from_paths` keyword arguments: gpt, sovits, hubert_dir, bert_dir, sv_path."""
    version: str | None
    """The GPT-SoVITS version the paths are for, when known (models_dir or `model_version`)."""
    missing: list[MissingModel]
    """Everything that stops loading; empty when the fields are complete."""
    origin: Literal["random", "default", "models_dir", "paths"] = "paths"
    """Where the weights come from: random weights, the default base model, `models_dir`, or explicit paths only."""
    directory: Path | None = None
    """The models directory used (`models_dir` or the default base model), if any."""
    default_problem: str | None = None
    """Why the default base model was not used when nothing else was configured (shown with the error)."""

    @property
    def label(self) -> str:
        """Where the weights come from, without paths (public server info)."""
        return {"random": "tiny random weights (noise)", "default": "default base model",
                "models_dir": "models directory", "paths": "configured weight files"}[self.origin]

    @property
    def source(self) -> str:
        """For logs: `label` plus the directory, if any."""
        return f"{self.label} '{self.directory}'" if self.directory is not None else self.label


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
    """A folder in the official `pretrained_models` layout (or ours); fills every model path not set below."""
    model_version: str | None = None
    """Model set to take from `models_dir`: v1, v2, v2Pro or v2ProPlus (default: v2, or what our layout holds)."""
    gpt: Path | None = None
    """GPT (text-to-semantic) weights: official `.ckpt` or our `.safetensors`; overrides `models_dir`."""
    sovits: Path | None = None
    """SoVITS (semantic-to-audio) weights: official `.pth` or our `.safetensors`; overrides `models_dir`."""
    hubert_dir: Path | None = None
    """chinese-hubert-base (Hugging Face folder) or our content encoder folder; overrides `models_dir`."""
    bert_dir: Path | None = None
    """Hugging Face directory of chinese-roberta-wwm-ext-large; optional, used for Chinese text."""
    random_weights: bool = False
    """Use tiny random models instead of real weights (tests, demos); output is noise."""
    default_models_dir: Path | None = None
    """Default base model used when no weights are configured (default: models/base of the repository)."""
    device: str = "cpu"
    """Torch device for the models: "cpu", "cuda", "cuda:1", ..."""
    backend: Literal["torch", "onnx", "tensorrt"] = "torch"
    """Runtime for the GPT step and SoVITS decode."""
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    """GPT/SoVITS precision of the backend: auto = fp16 on CUDA, fp32 on CPU; int8 = dynamic INT8
    GPT on CPU (fastest there, see README's benchmark)."""
    vocoder_precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """HiFi-GAN generator precision (torch backend): auto = bf16 on CPUs with native BF16
    instructions, otherwise the SoVITS precision."""

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
    max_concurrent_streams: int | None = Field(default=None, ge=1)
    """Streams open at the same time; one more gets 503 too_many_streams with Retry-After. Unset:
    4 on a GPU, one per two CPU cores on a CPU (a 2-core CPU keeps one stream real time, while
    four streams ran at RTF 2.3 with multi-second stalls: README "Speed"). See `stream_limit`."""
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
    reference_max_seconds: float = Field(default=9.9, gt=3.1, le=9.9)
    """Longest reference clip cut from an upload (3.1-9.9 s). Every stream prefills the
    reference's prompt, so shorter is faster to first audio (v2, 2-core CPU: ~280 ms with a 6 s
    reference, ~250 ms with 3 s; README "Speed") and carries less of the voice. 4-5 suits
    low-latency voices."""
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
    batch_max_requests: int = Field(default=4, ge=1, le=64)
    """Queued whole-file requests for the same model decoded as one GPT batch (1 = one by one)."""
    batch_wait_ms: int = Field(default=0, ge=0, le=10)
    """How long a worker waits for more whole-file requests to fill a batch; adds that much latency."""
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
    """ERes2NetV2 weights that v2Pro/v2ProPlus SoVITS models need (official `sv/*.ckpt`); overrides `models_dir`."""

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

    @field_validator("model_version")
    @classmethod
    def _known_version(cls, value: str | None) -> str | None:
        from gpt_sovits.models_dir import check_version

        return check_version(value)

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
    def stream_limit(self) -> int:
        """`max_concurrent_streams`, or its device-dependent default when unset."""
        if self.max_concurrent_streams is not None:
            return self.max_concurrent_streams
        if self.device.startswith("cuda"):
            return 4
        return max(1, (os.cpu_count() or 1) // 2)

    @property
    def auth_enabled(self) -> bool:
        """True when at least one API key is configured."""
        return bool(self.api_keys)

    @property
    def voices_dir(self) -> Path:
        """Where per-voice files live (data_dir/voices)."""
        return self.data_dir / "voices"

    def resolve_models(self) -> ResolvedModels:
        """Explicit paths first, then `models_dir` (via `gpt_sovits.models_dir`); never raises.

        An incomplete `models_dir` is fine when explicit settings replace exactly what it lacks.
        With `random_weights` nothing is needed and nothing is resolved.
        """
        if self.random_weights:
            return ResolvedModels({}, None, [], "random")
        explicit = {n: getattr(self, n) for n in MODEL_SETTINGS if getattr(self, n) is not None}
        fields: dict[str, Path | None] = dict.fromkeys(MODEL_SETTINGS)
        version, missing = self.model_version, []
        directory, origin, default_problem = self.models_dir, "models_dir", None
        if directory is None and not explicit.keys() & set(_ALWAYS_NEEDED):
            from gpt_sovits.models_dir import find_default_models

            directory, default_problem = find_default_models(self.default_models_dir, self.model_version)
            origin = "default"
        if directory is not None:
            from_dir, version, missing = _from_models_dir(directory, self.model_version, set(explicit))
            fields.update(from_dir)
        else:
            origin = "paths"
        fields.update(explicit)
        for name, path in explicit.items():
            problem = _path_problem(path, MODEL_SETTINGS[name].kind)
            if problem is not None:
                missing.append(_missing(name, path, problem))
        reported = {m.setting for m in missing}
        for name in _ALWAYS_NEEDED:
            if fields[name] is None and name not in reported and "models_dir" not in reported:
                missing.append(_missing(name, None, "not configured"))
        sv_missing = fields["sv_path"] is None and not reported & {"sv_path", "models_dir"}
        if sv_missing and _needs_sv(fields["sovits"], version):
            missing.append(_missing("sv_path", None, "the SoVITS is a v2Pro/v2ProPlus model, which needs it"))
        return ResolvedModels(fields, version, missing, origin, directory, default_problem)

    def complete_models(self) -> ResolvedModels:
        """`resolve_models()`, or `ModelsMissingError` (one message, every gap) when incomplete."""
        resolved = self.resolve_models()
        if resolved.missing:
            raise ModelsMissingError(_describe(resolved))
        return resolved

    def bundle_paths(self) -> dict[str, Path | None]:
        """`ModelBundle.from_paths(**paths)` arguments; `ModelsMissingError` when incomplete."""
        return self.complete_models().fields

    def missing_models(self) -> list[MissingModel]:
        """Every weight that is configured but unusable, or needed but not configured."""
        return self.resolve_models().missing

    def describe_missing_models(self) -> str | None:
        """One message naming every missing weight and how to provide it, or None when complete."""
        resolved = self.resolve_models()
        return _describe(resolved) if resolved.missing else None


# ------------------------------------------------------------------ model path resolution


def _describe(resolved: ResolvedModels) -> str:
    lines = ["Model weights are missing (nothing is downloaded at run time):"]
    for item in resolved.missing:
        where = f" at '{item.path}'" if item.path is not None else ""
        lines.append(f"  - {item.what}{where}: {item.how}.")
    if resolved.default_problem:
        lines.append(f"Also {resolved.default_problem}.")
    lines.append(_layout_help(resolved.version))
    return "\n".join(lines)



# ------------------------------------------------------------------ model path resolution


def _missing(name: str, path: Path | None, problem: str) -> MissingModel:
    setting = MODEL_SETTINGS[name]
    how = f"{problem}; {setting.how}"
    if setting.kind != "file":
        from gpt_sovits.models_dir import HF_CONFIG, HF_TOKENIZER, HF_WEIGHTS

        how += f" (a Hugging Face folder with {HF_CONFIG} and {' or '.join(HF_WEIGHTS)}"
        how += f" and {' or '.join(HF_TOKENIZER)})" if setting.kind == "hf_dir_tokenizer" else ")"
    return MissingModel(setting.what, path, how, name)


def _from_models_dir(directory: Path, version: str | None,
                     explicit: set[str]) -> tuple[dict[str, Path | None], str | None, list[MissingModel]]:
    """What `resolve_models_dir` finds, or, when it reports gaps, the part explicit settings cannot fill."""
    from gpt_sovits.errors import ModelNotFoundError
    from gpt_sovits.models_dir import DEFAULT_VERSION, find_root, resolve_models_dir

    try:
        paths = resolve_models_dir(directory, version)
    except ModelNotFoundError as err:
        root = find_root(directory)
        version = version or DEFAULT_VERSION
        if not err.missing or not root.is_dir():  # no directory, or our layout holds another version
            problem = str(err).rstrip(".") if root.is_dir() else "directory not found"
            how = f"{problem}; fix --models-dir / GSV_MODELS_DIR or --model-version / GSV_MODEL_VERSION"
            return {}, version, [MissingModel("models directory", root, how, "models_dir")]
        names = _layout_names(root, version)
        gaps: dict[str, list[str]] = {}
        for label in err.missing:
            gaps.setdefault(_setting_of(label, names), []).append(label)
        missing = [
            MissingModel(MODEL_SETTINGS[n].what if n in MODEL_SETTINGS else "models directory content",
                         root / labels[0].split(" or ")[0],
                         f"missing from the models directory ({', '.join(labels)}); put it there"
                         + (f", or {MODEL_SETTINGS[n].how}" if n in MODEL_SETTINGS else ""), n)
            for n, labels in gaps.items() if n not in explicit
        ]
        found = {n: root / rel for n, rel in names.items() if n not in gaps and (root / rel).exists()}
        return found, version, missing
    found = {"gpt": paths.gpt, "sovits": paths.sovits, "hubert_dir": paths.hubert_dir,
             "bert_dir": paths.bert_dir, "sv_path": paths.sv_path}
    return found, paths.version, []


def _layout_names(root: Path, version: str) -> dict[str, str]:
    """Setting -> the name `gpt_sovits.models_dir` looks for in `root` (its constants, its layouts)."""
    from gpt_sovits.models_dir import (
        NATIVE_BERT, NATIVE_GPT, NATIVE_HUBERT, NATIVE_SOVITS, NATIVE_SV, OFFICIAL_BERT, OFFICIAL_FILES,
        OFFICIAL_HUBERT, is_native_layout,
    )

    if is_native_layout(root):
        return {"gpt": NATIVE_GPT[0], "sovits": NATIVE_SOVITS[0], "hubert_dir": NATIVE_HUBERT,
                "bert_dir": NATIVE_BERT, "sv_path": NATIVE_SV}
    files = OFFICIAL_FILES[version]
    names = {"gpt": files.gpt, "sovits": files.sovits, "hubert_dir": OFFICIAL_HUBERT, "bert_dir": OFFICIAL_BERT}
    return names | ({"sv_path": files.sv} if files.sv else {})


def _setting_of(label: str, names: dict[str, str]) -> str:
    """Which setting replaces a missing `label` (a relative path, or "a or b" alternatives)."""
    first = label.split(" or ")[0]
    for name, rel in names.items():
        if first == rel or first.startswith(rel + "/") or Path(first).with_suffix("") == Path(rel).with_suffix(""):
            return name
    return "models_dir"


def _needs_sv(sovits: Path | None, version: str | None) -> bool:
    """A Pro SoVITS needs ERes2NetV2. Known from the version, or cheaply from our own weights' config;
    an official `.pth` would have to be decoded whole, so that case is left to the loader."""
    if version in _PRO_VERSIONS:
        return True
    if sovits is None or sovits.suffix != ".safetensors" or not sovits.is_file():
        return False
    from gpt_sovits.checkpoint import detect
    from gpt_sovits.errors import CheckpointError

    try:
        config = detect(sovits).config
    except CheckpointError:  # loading reports it with the full reason
        return False
    return bool(getattr(config, "use_sv", False))


def _layout_help(version: str | None) -> str:
    from gpt_sovits.models_dir import (
        DEFAULT_VERSION, NATIVE_BERT, NATIVE_GPT, NATIVE_HUBERT, NATIVE_SOVITS, NATIVE_SV, OFFICIAL_BERT,
        OFFICIAL_FILES, OFFICIAL_HUBERT, VERSIONS,
    )

    files = OFFICIAL_FILES[version or DEFAULT_VERSION]
    official = [files.gpt, files.sovits, f"{OFFICIAL_HUBERT}/", *([files.sv] if files.sv else [])]
    return (
        "Either pass --models-dir DIR (GSV_MODELS_DIR) with the official GPT_SoVITS/pretrained_models "
        f"layout ({version or DEFAULT_VERSION}: {', '.join(official)}; optional {OFFICIAL_BERT}/ for Chinese; "
        f"--model-version / GSV_MODEL_VERSION picks one of {', '.join(VERSIONS)}) or ours "
        f"({' + '.join(NATIVE_GPT)}, {' + '.join(NATIVE_SOVITS)}, {NATIVE_HUBERT}/, optional {NATIVE_BERT}/, "
        f"{NATIVE_SV} for Pro models); or give each path with --gpt, --sovits, --hubert-dir, --bert-dir, --sv "
        "(these also override single files of --models-dir). With none of them, the default base model "
        "(models/base of the repository, or GSV_DEFAULT_MODELS_DIR) is used when complete. To try the "
        "service without weights, pass "
        "--random-weights (GSV_RANDOM_WEIGHTS=1): tiny random models that produce noise."
    )


def _path_problem(path: Path, kind: str) -> str | None:
    """Why `path` cannot be used, or None when it looks usable."""
    from gpt_sovits.models_dir import HF_CONFIG, HF_TOKENIZER, HF_WEIGHTS

    if kind == "file":
        return None if path.is_file() else "file not found"
    if not path.is_dir():
        return "directory not found"
    if not (path / HF_CONFIG).is_file():
        return f"{HF_CONFIG} not found in the directory"
    if not any((path / name).is_file() for name in HF_WEIGHTS):
        return "no weight file in the directory"
    if kind == "hf_dir_tokenizer" and not any((path / name).is_file() for name in HF_TOKENIZER):
        return "no tokenizer file in the directory"
    return None
