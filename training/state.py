"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint is a folder `RUN/checkpoints/step_00000123/` holding

- `<module>.safetensors` for each model (full fp32 training weights, e.g. SoVITS with `enc_q`),
- `optim_<name>.safetensors` with every tensor of the optimizer state, keyed `<param id>.<key>`
  (Adam's `exp_avg`, `exp_avg_sq`, `step`), plus the RNG states,
- `state.json`: progress counters, optimizer param groups and non-tensor state, GradScaler
  state, and whatever the trainer adds (its config).

The folder is written under a temporary name and renamed, then `latest.json` is replaced, so a
crash at any point leaves the previous checkpoint usable.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim import Optimizer

from gpt_sovits.errors import GSVError
from training.dataset import atomic_write_text

LATEST = "latest.json"


class TrainingStateError(GSVError):
    """A checkpoint to resume from is missing, corrupt or belongs to a different model/optimizer."""

    code = "training_state_error"


@dataclass
class Progress:
    """Where a run is: counters are passed into the loops, never kept as globals."""

    step: int = 0
    """Optimizer steps done so far (over all epochs)."""
    epoch: int = 0
    """Epoch in progress (0-based)."""
    batch_in_epoch: int = 0
    """Batches of `epoch` already trained on (a resumed run skips them)."""


def _tensors_of(module: nn.Module) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied or viewed weights)
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def flatten_optimizer(optimizer: Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors, JSON-able rest)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(optimizer: Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of `flatten_optimizer`, loaded into `optimizer` (tuples restored from its groups)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    groups = meta["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise TrainingStateError(
            f"checkpoint has {len(groups)} optimizer param groups, this run builds {len(optimizer.param_groups)}; "
            "resume with the same model and settings."
        )
    for saved, current in zip(groups, optimizer.param_groups):
        for key, value in current.items():
            if isinstance(value, tuple) and isinstance(saved.get(key), list):
                saved[key] = tuple(saved[key])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise TrainingStateError(f"optimizer state does not fit this model: {exc}") from exc


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda{i}"] = st
    return out


def _restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_training_state(
    run_dir: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, Optimizer],
    scaler: torch.amp.GradScaler | None,
    progress: Progress,
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write a checkpoint folder for `progress.step`; returns it. Older ones beyond `keep` go."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{progress.step:08d}"
    tmp = root / f".tmp_{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, module in modules.items():
        save_file(_tensors_of(module), str(tmp / f"{name}.safetensors"))
    optim_meta: dict[str, Any] = {}
    for name, optimizer in optimizers.items():
        tensors, meta = flatten_optimizer(optimizer)
        save_file(tensors, str(tmp / f"optim_{name}.safetensors"))
        optim_meta[name] = meta
    save_file(_rng_tensors(), str(tmp / "rng.safetensors"))
    state = {
        "progress": asdict(progress),
        "optimizers": optim_meta,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "modules": sorted(modules),
        "extra": extra or {},
    }
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    atomic_write_text(root / LATEST, json.dumps({"checkpoint": final.name, "step": progress.step}) + "\n")
    _prune(root, keep, final.name)
    return final


def _prune(root: Path, keep: int, newest: str) -> None:
    folders = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in folders[: max(0, len(folders) - max(keep, 1))]:
        if old.name != newest:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint named by `latest.json`, or None for a fresh run."""
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = pointer.parent / json.loads(pointer.read_text())["checkpoint"]
    if not (folder / "state.json").is_file():
        raise TrainingStateError(f"'{pointer}' points at '{folder}', which is missing or incomplete.")
    return folder


def load_training_state(
    ckpt: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, Optimizer],
    scaler: torch.amp.GradScaler | None,
) -> tuple[Progress, dict[str, Any]]:
    """Load weights, optimizer/scaler/RNG state into the given objects; returns (progress, extra)."""
    state_path = Path(ckpt) / "state.json"
    if not state_path.is_file():
        raise TrainingStateError(f"'{ckpt}' is not a training checkpoint (no state.json).")
    state = json.loads(state_path.read_text())
    for name, module in modules.items():
        tensors = load_file(str(Path(ckpt) / f"{name}.safetensors"))
        try:
            module.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise TrainingStateError(f"checkpoint weights '{name}' do not fit this model: {exc}") from exc
    for name, optimizer in optimizers.items():
        tensors = load_file(str(Path(ckpt) / f"optim_{name}.safetensors"))
        unflatten_optimizer(optimizer, tensors, state["optimizers"][name])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng = Path(ckpt) / "rng.safetensors"
    if rng.is_file():
        _restore_rng(load_file(str(rng)))
    return Progress(**state["progress"]), state.get("extra", {})
