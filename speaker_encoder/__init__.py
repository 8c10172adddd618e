"""Speaker embeddings: voice similarity, duplicate detection, "does the clone sound like the voice".

Public surface: `Config`, `Model`, `load(path=None) -> (model, config)` and `cosine(a, b)`.
The default model is the GE2E encoder with resemblyzer's pretrained weights
(`model.embed(wav, sr) -> unit vector [256]`; same voice ~0.95, different voices ~0.5-0.7).
`speaker_encoder.eres2net` holds ERes2NetV2, the network GPT-SoVITS v2Pro uses to make its
20480-d `sv_emb` conditioning vector (user-supplied weights).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from speaker_encoder.ge2e import GE2EConfig as Config
from speaker_encoder.ge2e import GE2EEncoder as Model
from speaker_encoder.ge2e import load_ge2e


def load(path: str | Path | None = None) -> tuple[Model, Config]:
    """The GE2E encoder in eval mode; `path=None` uses the weights inside the resemblyzer package."""
    return load_ge2e(path)


def cosine(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Cosine similarity of two embeddings of equal size (0.0 if either is all zeros)."""
    x = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64).ravel()
    y = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"cosine: embeddings differ in size ({x.size} vs {y.size})")
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / norm) if norm > 0.0 else 0.0


__all__ = ["Config", "Model", "load", "cosine"]
