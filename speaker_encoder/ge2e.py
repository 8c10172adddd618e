"""GE2E speaker encoder compatible with resemblyzer's pretrained weights.

The network (Wan et al., "Generalized End-to-End Loss for Speaker Verification") is a 3-layer
LSTM over 40-band power mel frames; the last layer's final hidden state goes through
Linear(256, 256) + ReLU and is L2-normalised. An utterance is cut into 1.6 s partials (160
frames) spaced 1/1.3 s apart (about 52% overlap); the partial embeddings are averaged and the
mean is normalised again.

The weights are the `pretrained.pt` shipped inside the `resemblyzer` PyPI package. We only read
that file (torch.load, weights_only=True); resemblyzer's own code is never imported, because it
pulls in librosa and webrtcvad at import time.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gpt_sovits.audio import resample
from gpt_sovits.config import JsonConfig
from gpt_sovits.errors import ModelNotFoundError
from speaker_encoder.frontend import ge2e_mel
from speaker_encoder.vad import normalize_volume, trim_long_silences

_WEIGHTS_WHAT = (
    "the GE2E weights file 'pretrained.pt' from the resemblyzer package "
    "(pip install --no-deps resemblyzer) or a state dict with lstm.* and linear.* keys"
)


@dataclass
class GE2EConfig(JsonConfig):
    """GE2E encoder sizes and the preprocessing its weights were trained with."""

    sample_rate: int = 16000
    """Rate the mel front end runs at; input audio is resampled to it."""
    n_mels: int = 40
    """Mel bands (power, Slaney scale, not log)."""
    window_ms: int = 25
    """STFT window and FFT length in milliseconds."""
    hop_ms: int = 10
    """STFT hop in milliseconds (100 frames per second)."""
    partial_frames: int = 160
    """Frames per partial utterance (1.6 s)."""
    partials_per_second: float = 1.3
    """Partial start rate; 1.3/s gives a 77-frame step, about 52% overlap."""
    min_coverage: float = 0.75
    """A zero-padded last partial is kept only if at least this fraction of it is real audio."""
    hidden_size: int = 256
    """LSTM width."""
    num_layers: int = 3
    """Stacked LSTM layers."""
    embedding_size: int = 256
    """Output embedding width."""
    target_dbfs: float = -30.0
    """Quiet input is raised to this RMS level before embedding (never lowered)."""
    trim_silence: bool = True
    """Shorten long pauses with WebRTC VAD as in training (needs webrtcvad)."""


class GE2EEncoder(nn.Module):
    """LSTM speaker encoder: mel partials [B, frames, n_mels] -> unit embeddings [B, E]."""

    def __init__(self, config: GE2EConfig | None = None) -> None:
        super().__init__()
        self.config = config or GE2EConfig()
        c = self.config
        self.lstm = nn.LSTM(c.n_mels, c.hidden_size, c.num_layers, batch_first=True)
        self.linear = nn.Linear(c.hidden_size, c.embedding_size)

    def forward(self, mels: Tensor) -> Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def preprocess(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Resample to 16 kHz, raise quiet audio to the target level, trim long silences."""
        c = self.config
        x = np.asarray(wav, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"GE2E embed expects mono 1-D audio, got shape {x.shape}")
        x = resample(x, sr, c.sample_rate)
        x = normalize_volume(x, c.target_dbfs, increase_only=True)
        if c.trim_silence:
            x = trim_long_silences(x, c.sample_rate)
        return x

    def partial_starts(self, n_samples: int) -> list[int]:
        """Start frames of the partial utterances covering `n_samples` (always at least one)."""
        c = self.config
        hop = c.sample_rate * c.hop_ms // 1000
        n_frames = -(-(n_samples + 1) // hop)
        step = int(np.round(c.sample_rate / c.partials_per_second / hop))
        starts = list(range(0, max(1, n_frames - c.partial_frames + step + 1), step))
        last_coverage = (n_samples - starts[-1] * hop) / (c.partial_frames * hop)
        if last_coverage < c.min_coverage and len(starts) > 1:
            starts.pop()
        return starts

    @torch.no_grad()
    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Unit-norm float32 embedding [E] of one utterance of any rate. Raises ValueError when
        nothing usable is left (empty input, or silence only)."""
        x = self.preprocess(wav, sr)
        if x.size == 0 or not np.any(x):
            raise ValueError("No speech found in the audio; GE2E needs at least some voiced audio.")
        c = self.config
        hop = c.sample_rate * c.hop_ms // 1000
        starts = self.partial_starts(len(x))
        needed = (starts[-1] + c.partial_frames) * hop
        if needed > len(x):
            x = np.pad(x, (0, needed - len(x)))
        mel = ge2e_mel(x, c.sample_rate, c.n_mels, c.window_ms, c.hop_ms)
        batch = np.stack([mel[s : s + c.partial_frames] for s in starts])
        param = next(self.parameters())
        partials = self(torch.from_numpy(batch).to(device=param.device, dtype=param.dtype))
        mean = partials.float().mean(dim=0)
        return (mean / mean.norm().clamp_min(1e-12)).cpu().numpy().astype(np.float32)


def resemblyzer_weights_path() -> Path:
    """Path of resemblyzer's bundled `pretrained.pt`, found without importing the package."""
    spec = importlib.util.find_spec("resemblyzer")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "pretrained.pt"
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError("resemblyzer/pretrained.pt", _WEIGHTS_WHAT, missing=["the resemblyzer package"])


def _state_dict_from(obj: object) -> dict[str, Tensor]:
    """Accept resemblyzer checkpoints ({'model_state': ...}) and plain state dicts."""
    if isinstance(obj, dict) and "model_state" in obj:
        obj = obj["model_state"]
    if not isinstance(obj, dict):
        raise ValueError("GE2E weights must be a state dict or a resemblyzer checkpoint dict")
    # similarity_weight/bias are the GE2E loss's learned scale and offset: not part of inference.
    return {k: v for k, v in obj.items() if not k.startswith("similarity_")}


def load_ge2e(path: str | Path | None = None, config: GE2EConfig | None = None) -> tuple[GE2EEncoder, GE2EConfig]:
    """Build the encoder and load weights strictly (default: resemblyzer's `pretrained.pt`).

    `.safetensors` files are accepted too; a `config.json` next to them is used when present.
    """
    weights = Path(path) if path is not None else resemblyzer_weights_path()
    if not weights.is_file():
        raise ModelNotFoundError(weights, _WEIGHTS_WHAT)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
        sidecar = weights.with_name("config.json")
        if config is None and sidecar.is_file():
            config = GE2EConfig.load(sidecar)
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    config = config or GE2EConfig()
    model = GE2EEncoder(config)
    model.load_state_dict(_state_dict_from(state), strict=True)
    return model.eval(), config
