"""Fixtures for the SoVITS tests: tiny random models built from configs/sovits_tiny.json."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_sovits.config import SoVITSConfig
from gpt_sovits.sovits.model import SynthesizerTrn
from vocoder.weight_norm import WeightNormMixin

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def load_config(name: str, **overrides: object) -> SoVITSConfig:
    data = SoVITSConfig.load(CONFIGS / f"sovits_{name}.json").to_dict()
    data.update(overrides)
    return SoVITSConfig.from_dict(data)


def activate(model: SynthesizerTrn) -> SynthesizerTrn:
    """Make a random model's audio depend on its input.

    At plain random init the flow couplings are the identity (zero-initialised `post`) and the
    HiFi-GAN convs (N(0, 0.01)) shrink the signal until the output is a fixed bias pattern, so any
    comparison of two decodes is trivially exact. Unit weight-norm gains, zero decoder biases and
    random coupling outputs give an output that changes with the tokens, like a trained model's.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, WeightNormMixin):
                module.weight_g.fill_(1.0)
        for name, param in model.dec.named_parameters():
            if name.endswith("bias"):
                param.zero_()
        for coupling in model.flow.flows[::2]:
            torch.nn.init.normal_(coupling.post.weight, 0.0, 0.1)
    return model


@pytest.fixture
def tiny_cfg() -> SoVITSConfig:
    return load_config("tiny")


@pytest.fixture
def tiny_model(tiny_cfg: SoVITSConfig) -> SynthesizerTrn:
    torch.manual_seed(0)
    return SynthesizerTrn(tiny_cfg).eval()


@pytest.fixture
def tiny_pro_cfg() -> SoVITSConfig:
    """A tiny v2Pro-shaped config: SV path on, style wider than the MRTE (like 1024 vs 512)."""
    return load_config("tiny", version="v2Pro", use_sv=True, gin_channels=64, sv_dim=48)
