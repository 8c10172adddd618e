"""The one place where weight files become models (and models become weight files).

Two families are read:

* **native** (ours): `<stem>.safetensors` + `<stem>.json`. The JSON is
  `{"kind": "gpt"|"sovits", "format_version": 1, "config": {<dataclass>}, "info": {...}}`; keys in
  the safetensors file are exactly the model's `state_dict()` keys. No pickle anywhere. The same
  four entries are also embedded in the safetensors `__metadata__` (string values; `config` and
  `info` as JSON text), so the `.safetensors` alone is a complete checkpoint: one file to upload
  or copy. The sidecar wins when both exist (it is what people edit); files written before the
  embedding existed still load through their sidecar.
* **official** GPT-SoVITS `.ckpt` / `.pth` (v1, v2, v2Pro, v2ProPlus), decoded safely by
  `gpt_sovits.checkpoint_legacy`, which also maps their configs onto ours from the tensor shapes.

Every model is rebuilt from its config and loaded *strictly*; anything that does not fit raises a
`CheckpointError` naming the missing/unexpected/mis-shaped keys. v3/v4 SoVITS files raise
`UnsupportedCheckpointError`. Version differences live here and in the legacy reader only.
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gpt_sovits.checkpoint_legacy import (
    OfficialFile,
    check_sovits_supported,
    classify_weights,
    export_official_gpt,
    export_official_sovits,
    gpt_config_from_official,
    gpt_version,
    is_official_header,
    read_official,
    read_official_gpt,
    read_official_sovits,
    sniff_header,
    sovits_config_from_official,
)
from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.errors import CheckpointError, UnsupportedCheckpointError

if TYPE_CHECKING:  # the model modules are imported lazily: reading files must not need them
    from gpt_sovits.sovits.model import SynthesizerTrn
    from gpt_sovits.t2s import T2SModel

__all__ = [
    "CheckpointError", "CheckpointInfo", "UnsupportedCheckpointError", "detect", "export_official_gpt",
    "export_official_sovits", "load_checkpoint", "load_gpt", "load_sovits", "native_paths",
    "read_official_gpt", "read_official_sovits", "read_state", "save_gpt", "save_sovits",
]

FORMAT_VERSION = 1
Kind = Literal["gpt", "sovits"]
_SAVE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
M = TypeVar("M", bound=torch.nn.Module)


@dataclass(frozen=True)
class CheckpointInfo:
    """What a weight file is, as far as we can tell without building a model."""

    path: Path
    """The weights file (for native checkpoints the `.safetensors`)."""
    kind: Kind
    family: Literal["official", "native"]
    version: str
    """GPT: v1/v2 (phone table). SoVITS: v1, v2, v2Pro or v2ProPlus."""
    config: GPTConfig | SoVITSConfig
    has_posterior: bool = False
    """SoVITS only: whether `enc_q.*` (the training-only posterior encoder) is in the file."""
    header: str | None = None
    """Official files: `PK`, or the two-digit version code found in its place."""
    stored_dtype: str = ""
    info: Any = None
    """Free-form info stored with the weights (official: a string like '8epoch_96iteration')."""
    sidecar: Path | None = None
    """Native checkpoints: the JSON config file; None when the config came from the embedded metadata."""


@dataclass
class _State:
    """A decoded file: weights ready for `load_state_dict` plus what describes them."""

    info: CheckpointInfo
    weight: dict[str, torch.Tensor] = field(repr=False)


# ------------------------------------------------------------------------------------ public API


def detect(path: str | Path) -> CheckpointInfo:
    """Identify a checkpoint. Native files are cheap (JSON + safetensors header); official files
    carry no index, so they are decoded whole (weights-only)."""
    path = Path(path)
    weights, sidecar = native_paths(path)
    if sidecar is not None:
        return _native_info(weights, sidecar)
    return _read_official_state(path, keep_weights=False).info


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """fp32 (or stored-dtype, for native) state dict in our key layout plus its `CheckpointInfo`.

    For training code: SoVITS dicts keep `enc_q.*` when the file has it.
    """
    state = _read_any(Path(path))
    return state.weight, state.info


def load_gpt(path: str | Path, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32) -> tuple[T2SModel, GPTConfig]:
    """Build a `T2SModel` from any GPT checkpoint (native or official `.ckpt`), in eval mode."""
    return _gpt_from_state(_read_any(Path(path)), device, dtype)


def load_sovits(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                with_posterior: bool = False) -> tuple[SynthesizerTrn, SoVITSConfig]:
    """Build a `SynthesizerTrn` from any v1/v2/v2Pro/v2ProPlus SoVITS checkpoint, in eval mode.

    `with_posterior=False` (inference) drops `enc_q.*` if the file has it; `True` (training from a
    pretrained G file) requires it.
    """
    return _sovits_from_state(_read_any(Path(path)), device, dtype, with_posterior)


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[T2SModel | SynthesizerTrn, GPTConfig | SoVITSConfig]:
    """Load whatever model the file holds (a SoVITS without its posterior)."""
    state = _read_any(Path(path))
    if state.info.kind == "gpt":
        return _gpt_from_state(state, device, dtype)
    return _sovits_from_state(state, device, dtype, with_posterior=False)


def save_gpt(model: torch.nn.Module | Mapping[str, torch.Tensor], cfg: GPTConfig, path: str | Path,
             info: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Write `<stem>.safetensors` (config embedded) + `<stem>.json`; returns the `.safetensors` path."""
    return _save_native("gpt", model, cfg, path, info, dtype)


def save_sovits(model: torch.nn.Module | Mapping[str, torch.Tensor], cfg: SoVITSConfig, path: str | Path,
                info: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Write `<stem>.safetensors` (config embedded) + `<stem>.json` (with `enc_q.*` if the model has it)."""
    return _save_native("sovits", model, cfg, path, info, dtype)


def native_paths(path: str | Path) -> tuple[Path, Path | None]:
    """(weights, sidecar) for a native checkpoint named by its stem, `.safetensors` or `.json`;
    (path, None) when `path` is not one of ours. The sidecar may not exist: a single `.safetensors`
    carries its config in the metadata."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        stem = path.with_suffix("")
    elif not path.exists() and path.with_name(path.name + ".safetensors").exists():
        stem = path
    elif path.is_file() and _looks_like_safetensors(path):
        return path, path.with_name(path.name + ".json")
    else:
        return path, None
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


# ------------------------------------------------------------------------------------- native I/O


def _looks_like_safetensors(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < n <= path.stat().st_size - 8


def _stem_of(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def _save_native(kind: Kind, model: torch.nn.Module | Mapping[str, torch.Tensor],
                 cfg: GPTConfig | SoVITSConfig, path: str | Path, info: Mapping[str, Any] | None,
                 dtype: torch.dtype) -> Path:
    if dtype not in _SAVE_DTYPES:
        raise ValueError(f"save dtype must be one of {_SAVE_DTYPES}, got {dtype}")
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {k: _to_saved(v, dtype) for k, v in state.items()}
    sidecar = {"kind": kind, "format_version": FORMAT_VERSION, "config": cfg.to_dict(),
               "info": dict(info or {})}
    try:
        text = json.dumps(sidecar, indent=2, sort_keys=True) + "\n"
    except TypeError as exc:
        raise ValueError(f"checkpoint info must be JSON-serialisable: {exc}") from exc
    metadata = {"kind": kind, "format_version": str(FORMAT_VERSION),
                "config": json.dumps(sidecar["config"], sort_keys=True),
                "info": json.dumps(sidecar["info"], sort_keys=True)}
    stem = _stem_of(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights, json_path = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")
    tmp_w, tmp_j = weights.with_name(weights.name + ".tmp"), json_path.with_name(json_path.name + ".tmp")
    save_file(tensors, str(tmp_w), metadata=metadata)
    tmp_j.write_text(text)
    os.replace(tmp_w, weights)  # weights first: a sidecar never points at a half-written file
    os.replace(tmp_j, json_path)
    return weights


def _to_saved(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """CPU, contiguous, owning copy (safetensors refuses shared storage); floats cast to `dtype`."""
    tensor = tensor.detach().to("cpu", dtype) if tensor.is_floating_point() else tensor.detach().cpu()
    return tensor.contiguous().clone()


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{sidecar}' is not valid JSON ({exc}); the checkpoint config is corrupt") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"'{sidecar}' is not a checkpoint sidecar (needs 'kind' gpt|sovits and 'config')")
    return meta


def _embedded_meta(weights: Path, metadata: Mapping[str, str] | None) -> dict[str, Any]:
    """The sidecar's content from the safetensors `__metadata__` (all values are strings there)."""
    if not metadata or "config" not in metadata:
        raise CheckpointError(
            f"'{weights}' has no embedded config and its config file '{_sidecar_of(weights)}' is missing: "
            "our .safetensors weights need their .json beside them (files saved by this version embed it)"
        )
    try:
        version = metadata.get("format_version")
        return {"kind": metadata.get("kind"), "format_version": int(version) if version is not None else None,
                "config": json.loads(metadata["config"]), "info": json.loads(metadata.get("info", "null"))}
    except (TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"'{weights}': the embedded checkpoint config is corrupt ({exc})") from exc


def _sidecar_of(weights: Path) -> Path:
    return weights.with_name((weights.stem if weights.suffix == ".safetensors" else weights.name) + ".json")


def _parse_meta(meta: dict[str, Any], source: str) -> tuple[Kind, GPTConfig | SoVITSConfig, Any]:
    """Validate sidecar-shaped metadata (from the JSON file or the embedded copy)."""
    if meta.get("kind") not in ("gpt", "sovits") or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{source} is not checkpoint metadata (needs 'kind' gpt|sovits and 'config')")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: format_version {version!r} is not readable by this version (max {FORMAT_VERSION})"
        )
    cls = GPTConfig if meta["kind"] == "gpt" else SoVITSConfig
    try:
        cfg = cls.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: config does not fit {cls.__name__}: {exc}") from exc
    return meta["kind"], cfg, meta.get("info")


def _native_info(weights: Path, sidecar: Path) -> CheckpointInfo:
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights not found: '{weights}'", code="checkpoint_not_found")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            keys = list(fh.keys())
            dtypes = {str(fh.get_slice(k).get_dtype()) for k in keys}
            metadata = fh.metadata()
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"'{weights}' is not a readable safetensors file ({exc})") from exc
    if sidecar.is_file():
        kind, cfg, info = _parse_meta(_read_sidecar(sidecar), f"'{sidecar}'")
        used_sidecar: Path | None = sidecar
    else:
        kind, cfg, info = _parse_meta(_embedded_meta(weights, metadata), f"'{weights}' (embedded metadata)")
        used_sidecar = None
    version = gpt_version(cfg) if isinstance(cfg, GPTConfig) else cfg.version
    return CheckpointInfo(path=weights, kind=kind, family="native", version=version, config=cfg,
                          has_posterior=any(k.startswith("enc_q.") for k in keys),
                          stored_dtype=",".join(sorted(dtypes)), info=info, sidecar=used_sidecar)


def _read_native(weights: Path, sidecar: Path) -> _State:
    info = _native_info(weights, sidecar)
    try:
        tensors = load_file(str(weights), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"'{weights}' is corrupt or truncated ({exc}); re-save or re-download it") from exc
    return _State(info=info, weight=tensors)


# ----------------------------------------------------------------------------------- official I/O


def _read_official_state(path: Path, keep_weights: bool = True) -> _State:
    file = read_official(path)
    kind = classify_weights(file.weight)
    if kind == "gpt":
        weight = {k.removeprefix("model."): v for k, v in file.weight.items()}
        cfg: GPTConfig | SoVITSConfig = gpt_config_from_official(weight, file.config)
        return _official_state(path, file, "gpt", gpt_version(cfg), cfg, weight, keep_weights)
    if kind in ("sovits", "sovits_v3v4"):
        check_sovits_supported(file.weight, file.extra, f"'{path}'")
        cfg = sovits_config_from_official(file.weight, file.config)
        return _official_state(path, file, "sovits", cfg.version, cfg, file.weight, keep_weights)
    if kind == "discriminator":
        raise CheckpointError(f"'{path}' is a SoVITS discriminator (s2D) file; load a generator or a fine-tune")
    raise CheckpointError(f"'{path}' holds weights of no GPT-SoVITS model we know (keys: {list(file.weight)[:3]})")


def _official_state(path: Path, file: OfficialFile, kind: Kind, version: str, cfg: GPTConfig | SoVITSConfig,
                    weight: dict[str, torch.Tensor], keep_weights: bool) -> _State:
    info = CheckpointInfo(path=path, kind=kind, family="official", version=version, config=cfg,
                          has_posterior=any(k.startswith("enc_q.") for k in weight), header=file.header,
                          stored_dtype=file.stored_dtype, info=file.info)
    return _State(info=info, weight=weight if keep_weights else {})


def _read_any(path: Path) -> _State:
    weights, sidecar = native_paths(path)
    if sidecar is not None:
        return _read_native(weights, sidecar)
    head = sniff_header(path)
    if not is_official_header(head):
        raise CheckpointError(
            f"'{path}' is not a checkpoint we can read: expected an official GPT-SoVITS .ckpt/.pth "
            "(PyTorch zip) or our <stem>.safetensors + <stem>.json pair"
        )
    return _read_official_state(path)


# ------------------------------------------------------------------------------- model building


def _expect_kind(info: CheckpointInfo, kind: Kind) -> None:
    if info.kind != kind:
        loader = "load_gpt" if info.kind == "gpt" else "load_sovits"
        raise CheckpointError(f"'{info.path}' is a {info.kind} checkpoint, not {kind}; use {loader}()")


def _gpt_from_state(state: _State, device: str | torch.device,
                    dtype: torch.dtype) -> tuple[T2SModel, GPTConfig]:
    from gpt_sovits.t2s import T2SModel

    _expect_kind(state.info, "gpt")
    cfg = state.info.config
    assert isinstance(cfg, GPTConfig)
    model = _build(lambda: T2SModel(cfg), state.weight, device, dtype, f"GPT '{state.info.path}'")
    return model, cfg


def _sovits_from_state(state: _State, device: str | torch.device, dtype: torch.dtype,
                       with_posterior: bool) -> tuple[SynthesizerTrn, SoVITSConfig]:
    from gpt_sovits.sovits.model import SynthesizerTrn

    _expect_kind(state.info, "sovits")
    cfg = state.info.config
    assert isinstance(cfg, SoVITSConfig)
    weight = state.weight
    if with_posterior and not state.info.has_posterior:
        raise CheckpointError(
            f"'{state.info.path}' has no posterior encoder (enc_q.*): fine-tuned SoVITS files drop it. "
            "Load it with with_posterior=False, or train from a pretrained s2G file that has it."
        )
    if not with_posterior:
        weight = {k: v for k, v in weight.items() if not k.startswith("enc_q.")}
    model = _build(lambda: SynthesizerTrn(cfg, with_posterior=with_posterior), weight, device, dtype,
                   f"SoVITS '{state.info.path}'")
    return model, cfg


_WN_ALIASES = ((".weight_g", ".parametrizations.weight.original0"),
               (".weight_v", ".parametrizations.weight.original1"))


def _adapt_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Accept either weight-norm spelling (old `weight_g/_v`, new parametrizations) for the model's."""
    out = {}
    for key, value in state.items():
        if key not in expected:
            for old, new in _WN_ALIASES:
                if key.endswith(old) and key[: -len(old)] + new in expected:
                    key = key[: -len(old)] + new
                elif key.endswith(new) and key[: -len(new)] + old in expected:
                    key = key[: -len(new)] + old
        out[key] = value
    return out


def _build(factory: Callable[[], M], state: Mapping[str, torch.Tensor],
           device: str | torch.device, dtype: torch.dtype, what: str) -> M:
    try:
        with torch.device(device):
            model = factory()
    except ValueError as exc:  # the model validates its config; a file's config can be inconsistent
        raise CheckpointError(f"{what}: its config cannot build the model: {exc}") from exc
    expected = model.state_dict()
    state = _adapt_keys(state, expected)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{what} does not fit the model built from its config: "
            f"missing {len(missing)} {missing[:5]}, unexpected {len(unexpected)} {unexpected[:5]}, "
            f"mis-shaped {len(shapes)} {shapes[:3]}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(device=device, dtype=dtype).eval()
