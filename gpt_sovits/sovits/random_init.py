"""Make a randomly initialised SoVITS produce input-dependent audio (tests and `--random-weights`).

At plain random init the flow couplings are the identity (their `post` conv starts at zero, as in
VITS, so training starts from a stable flow) and the HiFi-GAN convs (N(0, 0.01)) shrink the signal
until the output is a fixed bias pattern. Any comparison of two decodes is then trivially exact,
which hides bugs. Unit weight-norm gains, zero decoder biases and random coupling outputs give an
output that changes with the tokens, the text and the style, as a trained model's does.
"""
from __future__ import annotations

import torch

from gpt_sovits.sovits.model import SynthesizerTrn
from vocoder.weight_norm import WeightNormMixin


@torch.no_grad()
def make_audible(model: SynthesizerTrn) -> SynthesizerTrn:
    """Rescale a random model in place so its audio depends on its inputs; returns the model."""
    for module in model.modules():
        if isinstance(module, WeightNormMixin):
            module.weight_g.fill_(1.0)
    for name, param in model.dec.named_parameters():
        if name.endswith("bias"):
            param.zero_()
    for coupling in model.flow.flows[::2]:
        torch.nn.init.normal_(coupling.post.weight, 0.0, 0.1)
    return model
