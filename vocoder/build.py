"""`build_generator(cfg)`: the decoder a `VocoderConfig` names (HiFi-GAN or iSTFT)."""
from __future__ import annotations

from torch import nn

from vocoder.config import VocoderConfig
from vocoder.errors import VocoderConfigError
from vocoder.hifigan import Generator
from vocoder.istft import ISTFTGenerator

GENERATORS: dict[str, type[nn.Module]] = {"hifigan": Generator, "istft": ISTFTGenerator}


def build_generator(cfg: VocoderConfig) -> nn.Module:
    """A randomly initialised generator of the kind `cfg.generator` names."""
    try:
        kind = GENERATORS[cfg.generator]
    except KeyError:
        raise VocoderConfigError(
            f"generator={cfg.generator!r} is unknown; use one of {sorted(GENERATORS)}"
        ) from None
    return kind(cfg)
