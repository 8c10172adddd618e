"""Our vocoder checkpoint format: `<name>.safetensors` (weights) + `<name>.json` (VocoderConfig)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from gpt_sovits.errors import CheckpointError, ModelNotFoundError
from vocoder.build import build_generator
from vocoder.config import VocoderConfig


def _stem(path: str | Path) -> Path:
    """Accept `dir/name`, `dir/name.json` or `dir/name.safetensors` for the same checkpoint."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".json", ".safetensors") else p


def save(model: nn.Module, path: str | Path) -> tuple[Path, Path]:
    """Write weights and config side by side; returns (weights path, config path).

    Weights must be unfolded (weight_g/weight_v), so the file matches the official key layout.
    """
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights, config = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(weights))
    model.cfg.save(config)
    return weights, config


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, VocoderConfig]:
    """Build the generator from `<name>.json`, load `<name>.safetensors` strictly, eval mode."""
    stem = _stem(path)
    weights, config = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    missing = [p.name for p in (weights, config) if not p.is_file()]
    if missing:
        raise ModelNotFoundError(stem.parent, f"vocoder files {stem.name}.safetensors + "
                                 f"{stem.name}.json", missing=missing)
    try:
        cfg = VocoderConfig.load(config)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{config}: not a valid VocoderConfig ({exc})") from exc
    model = build_generator(cfg)
    try:
        state = load_file(str(weights))
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (RuntimeError, OSError) as exc:
        raise CheckpointError(f"{weights}: weights do not fit the config in {config} ({exc})") from exc
    return model.to(device).eval(), cfg
