"""HiFi-GAN vocoder (the SoVITS decoder), with its discriminators and losses in sibling modules.

Public surface: `Config`, `Model`, `load(path) -> (model, config)`. Saving lives in
`vocoder.checkpoint.save`; discriminators in `vocoder.discriminators`; losses in `vocoder.losses`.
"""
from vocoder.checkpoint import load
from vocoder.config import VocoderConfig as Config
from vocoder.hifigan import Generator as Model

__all__ = ["Config", "Model", "load"]
