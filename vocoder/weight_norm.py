"""Weight-normalised convolutions that keep the official `weight_g` / `weight_v` state_dict keys.

GPT-SoVITS checkpoints were written with the old `torch.nn.utils.weight_norm` (dim 0), which stores
a magnitude `weight_g` (shape [dim0, 1, ...]) and a direction `weight_v` per layer. That helper is
deprecated, and its replacement (`parametrizations.weight_norm`) renames the keys to
`parametrizations.weight.original0/1`, which would break strict loading of the public files. So we
keep the decomposition ourselves: effective weight = g * v / ||v||, the norm taken over every dim
except dim 0. For ConvTranspose1d, dim 0 is in_channels (its weight is [in, out, k]), as in torch.

After loading, `fold_weight_norm(module)` replaces every (g, v) pair by the plain `weight` it
stands for, so inference stops recomputing norms. Folding changes the state_dict keys (`weight`
instead of `weight_g/weight_v`), so fold only after the checkpoint is in.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _norm_except_dim0(v: Tensor) -> Tensor:
    """L2 norm over all dims but the first, shaped [dim0, 1, 1, ...] to broadcast against v."""
    return torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True)


class WeightNormMixin:
    """Swaps a conv's `weight` parameter for `weight_g` / `weight_v` and back (`fold`).

    Subclasses call `_split_weight()` at the end of `__init__` and use `current_weight()` in
    `forward`. Registration order (bias, then weight_g, weight_v) matches the official files.
    """

    _parameters: dict[str, nn.Parameter | None]
    folded: bool

    def _split_weight(self, init_std: float | None) -> None:
        weight = self._parameters.pop("weight")
        assert weight is not None
        if init_std is not None:
            # HiFi-GAN/VITS initialise these layers with N(0, 0.01) *before* weight norm.
            with torch.no_grad():
                weight.normal_(0.0, init_std)
        data = weight.detach()
        self.weight_g = nn.Parameter(_norm_except_dim0(data).clone())
        self.weight_v = nn.Parameter(data.clone())
        self.folded = False

    def current_weight(self) -> Tensor:
        if self.folded:
            return self._parameters["weight"]  # type: ignore[return-value]
        return self.weight_v * (self.weight_g / _norm_except_dim0(self.weight_v))

    @torch.no_grad()
    def fold(self) -> None:
        """Replace (g, v) by the effective weight; a no-op when already folded."""
        if self.folded:
            return
        weight = self.current_weight().detach().clone()
        del self._parameters["weight_g"]
        del self._parameters["weight_v"]
        self._parameters["weight"] = nn.Parameter(weight)
        self.folded = True


class WNConv1d(WeightNormMixin, nn.Conv1d):
    """nn.Conv1d with old-style weight norm (keys `weight_g`, `weight_v`, `bias`)."""

    def __init__(self, *args: object, init_std: float | None = None, **kwargs: object) -> None:
        nn.Conv1d.__init__(self, *args, **kwargs)  # type: ignore[arg-type]
        self._split_weight(init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.current_weight(), self.bias)


class WNConv2d(WeightNormMixin, nn.Conv2d):
    """nn.Conv2d with old-style weight norm (used by the period discriminators)."""

    def __init__(self, *args: object, init_std: float | None = None, **kwargs: object) -> None:
        nn.Conv2d.__init__(self, *args, **kwargs)  # type: ignore[arg-type]
        self._split_weight(init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.current_weight(), self.bias)


class WNConvTranspose1d(WeightNormMixin, nn.ConvTranspose1d):
    """nn.ConvTranspose1d with old-style weight norm; g has shape [in_channels, 1, 1]."""

    def __init__(self, *args: object, init_std: float | None = None, **kwargs: object) -> None:
        nn.ConvTranspose1d.__init__(self, *args, **kwargs)  # type: ignore[arg-type]
        self._split_weight(init_std)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.conv_transpose1d(
            x,
            self.current_weight(),
            self.bias,
            self.stride,
            self.padding,  # type: ignore[arg-type]
            self.output_padding,
            self.groups,
            self.dilation,
        )


def fold_weight_norm(module: nn.Module) -> int:
    """Fold every weight-normed layer inside `module`; returns how many were folded."""
    count = 0
    for sub in module.modules():
        if isinstance(sub, WeightNormMixin) and not sub.folded:
            sub.fold()
            count += 1
    return count
