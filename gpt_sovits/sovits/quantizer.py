"""Residual vector quantizer of HuBERT features into semantic tokens (EnCodec-style, EMA codebook).

State_dict keys match GPT-SoVITS: `vq.layers.N._codebook.{inited, cluster_size, embed, embed_avg}`
(all buffers). SoVITS uses one layer of 1024 codes x 768 dims with Euclidean nearest-neighbour.

Inference (`encode`, `decode`, or `forward` in eval mode) never touches the buffers. Only
`forward` in training mode learns the codebook: a k-means initialisation from the first batch when
`inited == 0`, then EMA updates (decay 0.99) with dead-code replacement. Unlike the original, no
step here is distributed: under DDP each rank would update its own copy, so keep the quantizer
frozen (as every GPT-SoVITS recipe does) or sync the buffers yourself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KMEANS_MAX_SAMPLES = 500
"""The official k-means init only looks at the first 500 vectors of the first batch."""


def _nearest(x: Tensor, embed: Tensor) -> Tensor:
    """Index of the closest code (squared Euclidean) for each row of x [N, D]."""
    dist = x.pow(2).sum(1, keepdim=True) - 2 * x @ embed.t() + embed.pow(2).sum(1).unsqueeze(0)
    return dist.argmin(dim=-1)


def _sample_rows(samples: Tensor, num: int) -> Tensor:
    if samples.size(0) >= num:
        return samples[torch.randperm(samples.size(0), device=samples.device)[:num]]
    return samples[torch.randint(0, samples.size(0), (num,), device=samples.device)]


def kmeans(samples: Tensor, num_clusters: int, iters: int) -> tuple[Tensor, Tensor]:
    """Plain Lloyd k-means; empty clusters keep their previous centre. Returns (means, counts)."""
    means = _sample_rows(samples, num_clusters)
    counts = torch.zeros(num_clusters, device=samples.device)
    for _ in range(iters):
        assign = _nearest(samples, means)
        counts = torch.bincount(assign, minlength=num_clusters).to(samples.dtype)
        sums = torch.zeros_like(means).index_add_(0, assign, samples)
        new = sums / counts.clamp(min=1).unsqueeze(1)
        means = torch.where((counts == 0).unsqueeze(1), means, new)
    return means, counts


class EuclideanCodebook(nn.Module):
    """Codebook buffers plus the EMA learning rule."""

    def __init__(
        self, dim: int, codebook_size: int, decay: float = 0.99, epsilon: float = 1e-5,
        kmeans_iters: int = 50, threshold_ema_dead_code: float = 2.0,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.epsilon = epsilon
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        # Random (not zero) codes so a fresh, untrained model still yields distinct tokens;
        # `inited` stays 0 so the first training batch replaces them by k-means centres.
        embed = torch.randn(codebook_size, dim)
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def encode(self, x: Tensor) -> Tensor:
        """x [..., D] -> code indices [...]."""
        return _nearest(x.reshape(-1, x.size(-1)), self.embed).view(x.shape[:-1])

    def decode(self, codes: Tensor) -> Tensor:
        """codes [...] -> vectors [..., D]."""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def learn(self, x: Tensor, codes: Tensor) -> None:
        """One EMA step from a batch x [N, D] already assigned to `codes` [N]."""
        dead = self.cluster_size < self.threshold_ema_dead_code
        if bool(dead.any()):
            self.embed.copy_(torch.where(dead.unsqueeze(1), _sample_rows(x, self.codebook_size), self.embed))
        onehot = F.one_hot(codes, self.codebook_size).to(x.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))

    @torch.no_grad()
    def init_from(self, x: Tensor) -> None:
        """k-means initialisation from the first training batch (no-op once `inited`)."""
        if bool(self.inited.item()):
            return
        means, counts = kmeans(x[:KMEANS_MAX_SAMPLES], self.codebook_size, self.kmeans_iters)
        self.embed.copy_(means)
        # embed_avg is an EMA of per-code *sums* (embed = embed_avg / cluster_size), so seed it
        # with means * counts. The EnCodec original seeds it with the means, which makes the
        # first EMA step shrink every code by about 1/count.
        self.embed_avg.copy_(means * counts.unsqueeze(1))
        self.cluster_size.copy_(counts)
        self.inited.fill_(1.0)


class _Stage(nn.Module):
    """One residual stage; exists so the keys read `layers.N._codebook.*` as in the originals."""

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        self._codebook = EuclideanCodebook(dim, codebook_size)


class _Stages(nn.Module):
    def __init__(self, dim: int, codebook_size: int, n_q: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Stage(dim, codebook_size) for _ in range(n_q))


class ResidualVectorQuantizer(nn.Module):
    """x [B, D, T] -> codes [n_q, B, T]; codes -> sum of code vectors [B, D, T]."""

    def __init__(self, dimension: int = 768, n_q: int = 1, bins: int = 1024) -> None:
        super().__init__()
        self.dimension = dimension
        self.bins = bins
        self.vq = _Stages(dimension, bins, n_q)

    def _codebooks(self) -> list[EuclideanCodebook]:
        return [stage._codebook for stage in self.vq.layers]  # type: ignore[union-attr]

    def encode(self, x: Tensor) -> Tensor:
        residual = x.transpose(1, 2)  # [B, T, D]
        codes = []
        for book in self._codebooks():
            idx = book.encode(residual)
            residual = residual - book.decode(idx)
            codes.append(idx)
        return torch.stack(codes)

    def decode(self, codes: Tensor) -> Tensor:
        books = self._codebooks()
        out = books[0].decode(codes[0])
        for book, idx in zip(books[1:], codes[1:]):
            out = out + book.decode(idx)
        return out.transpose(1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (quantized [B, D, T], codes [n_q, B, T], commitment loss scalar).

        In training mode the codebooks learn from x, gradients pass straight through to x and the
        loss is the mean squared distance of x to its codes; in eval mode the loss is 0.
        """
        residual = x.transpose(1, 2)
        quantized = torch.zeros_like(residual)
        codes, losses = [], []
        for book in self._codebooks():
            flat = residual.reshape(-1, residual.size(-1))
            if self.training:
                book.init_from(flat.detach())
            idx = book.encode(residual)
            q = book.decode(idx)
            if self.training:
                book.learn(flat.detach(), idx.reshape(-1))
                losses.append(F.mse_loss(q.detach(), residual))
                q = residual + (q - residual).detach()
            residual = residual - q.detach()
            quantized = quantized + q
            codes.append(idx)
        loss = torch.stack(losses).mean() if losses else x.new_zeros(())
        return quantized.transpose(1, 2), torch.stack(codes), loss
