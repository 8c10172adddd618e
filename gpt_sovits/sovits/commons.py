"""Small tensor helpers shared by the SoVITS parts: masks and random training slices."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sequence_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Boolean [B, T] mask, True where the time index is below each sequence length."""
    if max_length is None:
        max_length = int(lengths.max())
    steps = torch.arange(max_length, dtype=lengths.dtype, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def slice_segments(x: Tensor, starts: Tensor, segment_size: int) -> Tensor:
    """Cut [B, C, segment_size] windows starting at `starts` [B]; zero-pads past the end."""
    if x.size(2) < int(starts.max()) + segment_size:
        x = F.pad(x, (0, int(starts.max()) + segment_size - x.size(2)))
    offsets = starts.view(-1, 1) + torch.arange(segment_size, device=x.device).view(1, -1)
    index = offsets.unsqueeze(1).expand(-1, x.size(1), -1)
    return torch.gather(x, 2, index)


def rand_slice_segments(
    x: Tensor, lengths: Tensor, segment_size: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Random `segment_size` window inside each sequence's valid part; returns (slices, starts).

    Sequences shorter than the window start at 0 (and are zero-padded) instead of reading
    negative offsets as the original helper would.
    """
    max_start = (lengths - segment_size + 1).clamp(min=1)
    rand = torch.rand(lengths.shape, generator=generator, device=lengths.device)
    starts = (rand * max_start).long()
    return slice_segments(x, starts, segment_size), starts
