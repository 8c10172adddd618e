"""`ResidualCouplingBlock` (the SoVITS `flow`): [coupling, Flip] x n_flows, invertible.

Training maps posterior z to the prior space (z_p = flow(z)); inference runs it backwards on
samples of the prior (z = flow(z_p, reverse=True)). Couplings sit at even indices 0, 2, 4, 6.
"""
from __future__ import annotations

from torch import Tensor, nn

from gpt_sovits.sovits.modules import Flip, ResidualCouplingLayer


class ResidualCouplingBlock(nn.Module):
    def __init__(
        self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int,
        n_layers: int, n_flows: int = 4, gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(ResidualCouplingLayer(
                channels, hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels))
            self.flows.append(Flip())

    def forward(
        self, x: Tensor, x_mask: Tensor, g: Tensor | None = None, reverse: bool = False
    ) -> Tensor:
        flows = reversed(self.flows) if reverse else self.flows
        for flow in flows:
            x = flow(x, x_mask, g=g, reverse=reverse)
        return x
