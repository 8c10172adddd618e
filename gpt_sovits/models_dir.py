"""Find every weight file of one GPT-SoVITS version inside one directory.

Users who already run GPT-SoVITS have a `GPT_SoVITS/pretrained_models` folder; pointing at it
should be enough. Two layouts are recognised:

* **official** (`pretrained_models`, names from the upstream config, reference §3.1): per version
  a GPT `.ckpt` and a SoVITS `.pth` (table `OFFICIAL_FILES`), shared `chinese-hubert-base/` and
  `chinese-roberta-wwm-ext-large/` Hugging Face folders, and for v2Pro/v2ProPlus the ERes2NetV2
  weights `sv/pretrained_eres2netv2w24s4ep4.ckpt`.
* **ours**: `gpt.safetensors` + `gpt.json`, `sovits.safetensors` + `sovits.json`, `hubert/`,
  optional `bert/`, and `sv.safetensors` (+ optional `sv.json`) when the SoVITS is a Pro model.
  The version is whatever `sovits.json` says. `hubert/` is chinese-hubert-base or our own content
  encoder (`gpt_sovits.content_encoder`, the one `sovits.json` names in `content_encoder`).

The **default base model** is a folder in our layout shipped with the repository at
`models/base/` (`EMBEDDED_MODELS_DIR`, resolved from this file, not the working directory);
`$GSV_DEFAULT_MODELS_DIR` points elsewhere. Front ends use it only when no weights are configured
and it is complete (`resolve_default_models`).

Resolution only looks at names (plus the small `sovits.json` of our layout); nothing is loaded, so
a wrong directory fails at once with one `ModelNotFoundError` listing every missing path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gpt_sovits.errors import GSVError, ModelNotFoundError

VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")
DEFAULT_VERSION = "v2"


@dataclass(frozen=True)
class OfficialFiles:
    """Version-specific files of the official layout, relative to `pretrained_models`."""

    gpt: str
    sovits: str
    sv: str | None = None
    """ERes2NetV2 weights; only the Pro SoVITS models take a speaker-verification embedding."""


OFFICIAL_SV = "sv/pretrained_eres2netv2w24s4ep4.ckpt"
OFFICIAL_HUBERT = "chinese-hubert-base"
OFFICIAL_BERT = "chinese-roberta-wwm-ext-large"
OFFICIAL_FILES: dict[str, OfficialFiles] = {
    "v1": OfficialFiles("s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt", "s2G488k.pth"),
    "v2": OfficialFiles(
        "gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt",
        "gsv-v2final-pretrained/s2G2333k.pth",
    ),
    # Upstream pairs both Pro SoVITS models with the v3 GPT (same architecture as the v2 GPT).
    "v2Pro": OfficialFiles("s1v3.ckpt", "v2Pro/s2Gv2Pro.pth", OFFICIAL_SV),
    "v2ProPlus": OfficialFiles("s1v3.ckpt", "v2Pro/s2Gv2ProPlus.pth", OFFICIAL_SV),
}

NATIVE_GPT = ("gpt.safetensors", "gpt.json")
NATIVE_SOVITS = ("sovits.safetensors", "sovits.json")
NATIVE_HUBERT = "hubert"
NATIVE_BERT = "bert"
NATIVE_SV = "sv.safetensors"

# What `transformers` needs to load a folder offline (same rule as gpt_sovits.features).
HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HF_TOKENIZER = ("tokenizer.json", "vocab.txt")

EMBEDDED_MODELS_DIR = Path(__file__).resolve().parent.parent / "models" / "base"
"""The base model shipped with the repository (our layout; see docs/base_model.md)."""
DEFAULT_MODELS_ENV = "GSV_DEFAULT_MODELS_DIR"
"""Environment variable that moves the default base model elsewhere."""

# Where the layout usually sits when users point at the GPT-SoVITS checkout instead.
_NESTED_ROOTS = ("pretrained_models", "GPT_SoVITS/pretrained_models")


class ModelVersionError(GSVError, ValueError):
    """A model version we do not know or do not implement."""

    code = "invalid_model_version"


@dataclass(frozen=True)
class ModelPaths:
    """Resolved weight locations; the first five fields are `ModelBundle.from_paths` arguments."""

    gpt: Path
    sovits: Path
    hubert_dir: Path
    bert_dir: Path | None
    """None when the directory has no BERT: fine for English, Chinese then gets zero features."""
    sv_path: Path | None
    """ERes2NetV2 weights; set exactly when the SoVITS is a v2Pro/v2ProPlus model."""
    version: str
    layout: Literal["official", "native"]


@dataclass
class _Lookup:
    """Collects every path looked for and every one that is missing, relative to `root`."""

    root: Path
    looked: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def file(self, *names: str) -> Path:
        """The first of `names` that is a file; records all of them as one alternative."""
        label = " or ".join(names)
        self.looked.append(label)
        for name in names:
            if (self.root / name).is_file():
                return self.root / name
        self.missing.append(label)
        return self.root / names[0]

    def hf_dir(self, name: str, tokenizer: bool = False) -> Path:
        """A Hugging Face folder: config, weights and (for BERT) a tokenizer file."""
        self.file(f"{name}/{HF_CONFIG}")
        self.file(*(f"{name}/{w}" for w in HF_WEIGHTS))
        if tokenizer:
            self.file(*(f"{name}/{t}" for t in HF_TOKENIZER))
        return self.root / name


def check_version(version: str | None) -> str | None:
    """Normalise a version name (case-insensitive); None stays None (= the layout's default)."""
    if version is None:
        return None
    for known in VERSIONS:
        if version.lower() == known.lower():
            return known
    hint = " (v3/v4 use another SoVITS family, which is not implemented)" if version.lower() in ("v3", "v4") else ""
    raise ModelVersionError(f"unknown model version {version!r}{hint}: use one of {', '.join(VERSIONS)}")


def find_root(directory: str | Path) -> Path:
    """`directory`, or its `pretrained_models` folder when given the GPT-SoVITS checkout."""
    root = Path(directory)
    if _recognised(root):
        return root
    for nested in _NESTED_ROOTS:
        if _recognised(root / nested):
            return root / nested
    return root


def _recognised(root: Path) -> bool:
    if not root.is_dir():
        return False
    names = [*NATIVE_GPT, *NATIVE_SOVITS, OFFICIAL_HUBERT, OFFICIAL_SV]
    names += [f for files in OFFICIAL_FILES.values() for f in (files.gpt, files.sovits)]
    return any((root / name).exists() for name in names)


def is_native_layout(root: Path) -> bool:
    """Our layout is recognised by its GPT/SoVITS file names; anything else is read as official."""
    return any((root / name).exists() for name in (*NATIVE_GPT, *NATIVE_SOVITS))


def available_versions(directory: str | Path) -> list[str]:
    """Versions whose complete official set (GPT, SoVITS, HuBERT, SV if Pro) is in `directory`."""
    root = find_root(directory)
    found = []
    for version in VERSIONS:
        lookup = _Lookup(root)
        _official(lookup, version)
        if not lookup.missing:
            found.append(version)
    return found


def resolve_models_dir(directory: str | Path, version: str | None = None) -> ModelPaths:
    """The weights of `version` in `directory`; raises `ModelNotFoundError` naming every missing path.

    `version` picks the official set (default v2). For our layout it is checked against
    `sovits.json` instead (default: whatever is there).
    """
    version = check_version(version)
    root = find_root(directory)
    if not root.is_dir():
        what = _expected(None, version or DEFAULT_VERSION, [])
        raise ModelNotFoundError(root, what, missing=["the directory itself"])
    lookup = _Lookup(root)
    if is_native_layout(root):
        paths = _native(lookup, version)
    else:
        paths = _official(lookup, version or DEFAULT_VERSION)
    if lookup.missing:
        raise ModelNotFoundError(root, _expected(paths, paths.version, lookup.looked, root), missing=lookup.missing)
    return paths


def default_models_dir(override: str | Path | None = None) -> Path:
    """Where the default base model is looked for: `override`, else `$GSV_DEFAULT_MODELS_DIR`,
    else `EMBEDDED_MODELS_DIR` (read at call time, so tests and embedders can move it)."""
    if override is not None and str(override):
        return Path(override).expanduser()
    env = os.environ.get(DEFAULT_MODELS_ENV, "").strip()
    return Path(env).expanduser() if env else EMBEDDED_MODELS_DIR


def resolve_default_models(override: str | Path | None = None, version: str | None = None) -> ModelPaths:
    """The default base model, when its folder holds a complete model; else `ModelNotFoundError`
    naming what is missing and how to point elsewhere (nothing is loaded here)."""
    directory = default_models_dir(override)
    try:
        return resolve_models_dir(directory, version)
    except ModelNotFoundError as err:
        if not err.missing:  # complete, but another version than asked for: that message says what to do
            raise
        raise ModelNotFoundError(
            err.path,
            f"the default base model in our layout ({' + '.join(NATIVE_GPT)}, {' + '.join(NATIVE_SOVITS)}, "
            f"{NATIVE_HUBERT}/; see docs/base_model.md), used when no weights are configured; set "
            f"{DEFAULT_MODELS_ENV}=DIR to use another folder, or configure the weights explicitly",
            missing=err.missing,
        ) from err


def find_default_models(override: str | Path | None = None,
                        version: str | None = None) -> tuple[Path | None, str | None]:
    """(folder, None) when the default base model is complete, else (None, why not and how to fix),
    for front ends that fall back to it and must explain an absent one in their own error."""
    directory = default_models_dir(override)
    try:
        resolve_default_models(directory, version)
    except ModelNotFoundError as err:
        gaps = f"missing {', '.join(err.missing)}" if err.missing else str(err).rstrip(".")
        return None, (f"no default base model: '{directory}' holds no complete model ({gaps}); put one there "
                      f"(docs/base_model.md) or set {DEFAULT_MODELS_ENV}=DIR")
    return directory, None


def _official(lookup: _Lookup, version: str) -> ModelPaths:
    files = OFFICIAL_FILES[version]
    gpt = lookup.file(files.gpt)
    sovits = lookup.file(files.sovits)
    hubert = lookup.hf_dir(OFFICIAL_HUBERT)
    sv = lookup.file(files.sv) if files.sv else None
    bert = _optional_bert(lookup, OFFICIAL_BERT)
    return ModelPaths(gpt, sovits, hubert, bert, sv, version, "official")


def _native(lookup: _Lookup, version: str | None) -> ModelPaths:
    from gpt_sovits.checkpoint import detect
    from gpt_sovits.phone_align import is_aligner_dir

    gpt = lookup.file(NATIVE_GPT[0])
    lookup.file(NATIVE_GPT[1])
    sovits = lookup.file(NATIVE_SOVITS[0])
    lookup.file(NATIVE_SOVITS[1])
    if is_aligner_dir(lookup.root / NATIVE_HUBERT):
        # a phone aligner (gpt_sovits.phone_align) is config only: its acoustic model ships in pocketsphinx
        hubert = lookup.file(f"{NATIVE_HUBERT}/{HF_CONFIG}").parent
    else:
        hubert = lookup.hf_dir(NATIVE_HUBERT)
    bert = _optional_bert(lookup, NATIVE_BERT)
    found_version, use_sv = version or DEFAULT_VERSION, version in ("v2Pro", "v2ProPlus")
    if sovits.is_file() and (lookup.root / NATIVE_SOVITS[1]).is_file():
        config = detect(sovits).config
        found_version, use_sv = config.version, bool(config.use_sv)
        if version is not None and version != found_version:
            raise ModelNotFoundError(
                lookup.root,
                f"{version} models, but this directory holds our layout with a {found_version} SoVITS "
                f"({NATIVE_SOVITS[1]}): drop the version or pass {found_version}",
            )
    sv = lookup.file(NATIVE_SV) if use_sv else None
    return ModelPaths(gpt, sovits, hubert, bert, sv, found_version, "native")


def _optional_bert(lookup: _Lookup, name: str) -> Path | None:
    """BERT only feeds Chinese prosody: absent is fine, present but incomplete is an error."""
    if not (lookup.root / name).exists():
        return None
    return lookup.hf_dir(name, tokenizer=True)


def _expected(paths: ModelPaths | None, version: str, looked: list[str], root: Path | None = None) -> str:
    """The `what` of the error: the files looked for, the other layout, and versions that are there."""
    if paths is not None and paths.layout == "native":
        return (f"our layout for a {version} SoVITS ({'; '.join(looked)}; {NATIVE_HUBERT}/ is chinese-hubert-base "
                f"or our content encoder; optional {NATIVE_BERT}/)")
    files = OFFICIAL_FILES[version]
    wanted = looked or [files.gpt, files.sovits, f"{OFFICIAL_HUBERT}/", *([files.sv] if files.sv else [])]
    text = (
        f"the GPT-SoVITS {version} models in the official GPT_SoVITS/pretrained_models layout "
        f"({'; '.join(wanted)}; optional {OFFICIAL_BERT}/ for Chinese), or our layout "
        f"({' + '.join(NATIVE_GPT)}, {' + '.join(NATIVE_SOVITS)}, {NATIVE_HUBERT}/, "
        f"{NATIVE_SV} for Pro models)"
    )
    others = [v for v in available_versions(root) if v != version] if root is not None and root.is_dir() else []
    if others:
        text += f". Complete sets found here: {', '.join(others)}; pass that version (--version)"
    return text
