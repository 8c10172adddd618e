"""Our weight-norm convs: official key names and shapes, torch-equivalent numerics, folding."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from vocoder.weight_norm import WNConv1d, WNConv2d, WNConvTranspose1d, fold_weight_norm


def test_keys_and_g_shapes_follow_dim_zero() -> None:
    assert {k: tuple(v.shape) for k, v in WNConv1d(4, 6, 3).state_dict().items()} == {
        "bias": (6,), "weight_g": (6, 1, 1), "weight_v": (6, 4, 3)}
    # ConvTranspose1d weights are [in, out, k]: dim 0, hence g, is per *input* channel.
    assert tuple(WNConvTranspose1d(8, 4, 16, 10).weight_g.shape) == (8, 1, 1)
    assert tuple(WNConv2d(1, 32, (5, 1)).weight_g.shape) == (32, 1, 1, 1)


def test_matches_torch_parametrized_weight_norm() -> None:
    torch.manual_seed(0)
    ours = WNConvTranspose1d(6, 3, 8, 4, padding=2)
    with torch.no_grad():
        ours.weight_g.mul_(torch.rand_like(ours.weight_g) + 0.5)
    ref = parametrizations.weight_norm(nn.ConvTranspose1d(6, 3, 8, 4, padding=2), dim=0)
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(ours.weight_g)
        ref.parametrizations.weight.original1.copy_(ours.weight_v)
        ref.bias.copy_(ours.bias)
    x = torch.randn(2, 6, 9)
    torch.testing.assert_close(ours(x), ref(x))


def test_init_std_sets_direction_and_gain() -> None:
    torch.manual_seed(0)
    conv = WNConv1d(64, 64, 7, init_std=0.01)
    assert abs(float(conv.weight_v.detach().std()) - 0.01) < 1e-3
    torch.testing.assert_close(conv.current_weight(), conv.weight_v)  # g = ||v|| at init


def test_fold_keeps_outputs_and_replaces_keys() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(WNConv1d(3, 5, 3, padding=1), nn.ReLU(), WNConv1d(5, 2, 1))
    with torch.no_grad():
        net[0].weight_g.mul_(3.0)
    x = torch.randn(1, 3, 11)
    before = net(x)
    assert fold_weight_norm(net) == 2
    assert sorted(net.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    torch.testing.assert_close(net(x), before)
    assert fold_weight_norm(net) == 0
