"""Residual VQ: nearest-code encoding, decoding, frozen eval behaviour and the EMA training rule."""
from __future__ import annotations

import torch

from gpt_sovits.sovits.quantizer import ResidualVectorQuantizer


def _codebook(q: ResidualVectorQuantizer):  # noqa: ANN202
    return q.vq.layers[0]._codebook


def test_state_dict_keys() -> None:
    q = ResidualVectorQuantizer(8, n_q=1, bins=16)
    shapes = {k: tuple(v.shape) for k, v in q.state_dict().items()}
    assert shapes == {
        "vq.layers.0._codebook.inited": (1,),
        "vq.layers.0._codebook.cluster_size": (16,),
        "vq.layers.0._codebook.embed": (16, 8),
        "vq.layers.0._codebook.embed_avg": (16, 8),
    }
    assert list(q.parameters()) == []


def test_encode_decode_round_trip_on_codebook_vectors() -> None:
    q = ResidualVectorQuantizer(8, bins=16)
    embed = _codebook(q).embed
    idx = torch.tensor([[3, 0, 15, 3]])
    x = embed[idx].transpose(1, 2) + 1e-3 * torch.randn(1, 8, 4)  # [B, D, T] near the codes
    codes = q.encode(x)
    assert codes.shape == (1, 1, 4) and torch.equal(codes[0], idx)
    torch.testing.assert_close(q.decode(codes), embed[idx].transpose(1, 2))


def test_two_stage_residual_sums_stages() -> None:
    q = ResidualVectorQuantizer(4, n_q=2, bins=8)
    x = torch.randn(2, 4, 5)
    codes = q.encode(x)
    assert codes.shape == (2, 2, 5)
    books = [layer._codebook.embed for layer in q.vq.layers]
    expected = books[0][codes[0]] + books[1][codes[1]]
    torch.testing.assert_close(q.decode(codes), expected.transpose(1, 2))


def test_eval_forward_leaves_buffers_and_has_zero_loss() -> None:
    q = ResidualVectorQuantizer(8, bins=16).eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    x = torch.randn(2, 8, 7)
    quantized, codes, loss = q(x)
    assert float(loss) == 0.0
    torch.testing.assert_close(quantized, q.decode(codes))
    for key, value in q.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_training_initialises_with_kmeans_then_tracks_data() -> None:
    torch.manual_seed(0)
    q = ResidualVectorQuantizer(2, bins=2).train()
    centres = torch.tensor([[5.0, 5.0], [-5.0, -5.0]])
    points = centres.repeat(40, 1) + 0.1 * torch.randn(80, 2)  # two tight clusters
    x = points.t().unsqueeze(0)  # [1, 2, 80]
    x.requires_grad_(True)
    quantized, _, loss = q(x)
    book = _codebook(q)
    assert float(book.inited) == 1.0
    found = sorted(book.embed.tolist())
    assert torch.allclose(torch.tensor(found), torch.tensor(sorted(centres.tolist())), atol=0.2)
    assert float(loss.detach()) > 0  # commitment: distance of x to its codes
    quantized.sum().backward()  # straight-through estimator: d quantized / d x = identity
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    # EMA: feed shifted data; the codes move towards it.
    shifted = (points + 1.0).t().unsqueeze(0)
    for _ in range(200):
        q(shifted)
    moved = sorted(book.embed.tolist())
    assert torch.allclose(torch.tensor(moved), torch.tensor(sorted((centres + 1.0).tolist())), atol=0.3)
