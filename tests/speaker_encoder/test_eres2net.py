"""ERes2NetV2 (GPT-SoVITS v2Pro sv_emb network): key layout of the official checkpoint, shapes, loading."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gpt_sovits.errors import ModelNotFoundError
from speaker_encoder.eres2net import ERes2NetV2, ERes2NetV2Config, load_eres2net

TINY = ERes2NetV2Config(m_channels=8, num_blocks=[1, 1, 2, 1], embedding_size=16)


def _bn(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (n,), f"{prefix}.bias": (n,), f"{prefix}.running_mean": (n,),
        f"{prefix}.running_var": (n,), f"{prefix}.num_batches_tracked": (),
    }


def _aff(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.local_att.0.weight": (c // 4, 2 * c, 1, 1), f"{prefix}.local_att.0.bias": (c // 4,)}
    keys |= _bn(f"{prefix}.local_att.1", c // 4)
    keys |= {f"{prefix}.local_att.3.weight": (c, c // 4, 1, 1), f"{prefix}.local_att.3.bias": (c,)}
    return keys | _bn(f"{prefix}.local_att.4", c)


def official_w24s4_keys() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of pretrained_eres2netv2w24s4ep4.ckpt, written out from the upstream module
    layout (3D-Speaker ERes2NetV2(baseWidth=24, scale=4, expansion=4), m_channels 64, feat_dim 80)."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 1, 3, 3)} | _bn("bn1", 64)
    in_planes = 64
    for stage, (planes, blocks, stride) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2)), 1):
        width = planes * 24 // 64
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            keys[f"{p}.conv1.weight"] = (4 * width, in_planes, 1, 1)
            keys |= _bn(f"{p}.bn1", 4 * width)
            for i in range(4):
                keys[f"{p}.convs.{i}.weight"] = (width, width, 3, 3)
                keys |= _bn(f"{p}.bns.{i}", width)
            if stage >= 3:
                for i in range(3):
                    keys |= _aff(f"{p}.fuse_models.{i}", width)
            keys[f"{p}.conv3.weight"] = (4 * planes, 4 * width, 1, 1)
            keys |= _bn(f"{p}.bn3", 4 * planes)
            if b == 0 and (stride != 1 or in_planes != 4 * planes):
                keys[f"{p}.shortcut.0.weight"] = (4 * planes, in_planes, 1, 1)
                keys |= _bn(f"{p}.shortcut.1", 4 * planes)
            in_planes = 4 * planes
    keys["layer3_ds.weight"] = (2048, 1024, 3, 3)
    keys |= _aff("fuse34", 2048)
    return keys | {"seg_1.weight": (192, 40960), "seg_1.bias": (192,)}


@pytest.fixture(scope="module")
def full() -> ERes2NetV2:
    return ERes2NetV2().eval()


def test_state_dict_matches_official_checkpoint_layout(full: ERes2NetV2) -> None:
    expected = official_w24s4_keys()
    actual = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert set(actual) == set(expected)
    assert actual == expected
    # Independent spot checks (shapes seen in third-party loaders of the real file).
    assert actual["fuse34.local_att.0.weight"][0] == 512 and actual["fuse34.local_att.3.weight"][0] == 2048


def test_official_key_set_loads_strictly(full: ERes2NetV2) -> None:
    state = {k: torch.full(s, 0.25) if s else torch.tensor(7) for k, s in official_w24s4_keys().items()}
    fresh = ERes2NetV2()
    fresh.load_state_dict(state, strict=True)
    assert torch.all(fresh.seg_1.weight == 0.25) and torch.all(fresh.layer3_ds.weight == 0.25)
    assert int(fresh.bn1.num_batches_tracked) == 7


def test_full_size_sv_embedding_is_20480(full: ERes2NetV2) -> None:
    assert full.config.sv_dim == 20480
    wav = torch.randn(8000) * 0.1  # 0.5 s @ 16 kHz -> 48 fbank frames -> 6 map frames
    emb = full.embed_wav(wav)
    assert emb.shape == (1, 20480) and torch.isfinite(emb).all()
    assert full.feature_map(torch.randn(1, 48, 80)).shape == (1, 2048, 10, 6)


def test_head_and_sv_outputs_on_tiny_model() -> None:
    torch.manual_seed(0)
    model = ERes2NetV2(TINY).eval()
    feats = torch.randn(2, 40, 80)
    with torch.no_grad():
        assert model(feats).shape == (2, 16)
        fmap = model.feature_map(feats)
        sv = model.sv_embedding(feats)
    assert fmap.shape == (2, 8 * 8 * 4, 10, 5)
    assert sv.shape == (2, TINY.sv_dim) == (2, 2560)
    # sv_emb is the time mean of the (channel x frequency)-flattened map.
    torch.testing.assert_close(sv, fmap.flatten(1, 2).mean(dim=-1))
    # Batch items are independent in eval mode.
    with torch.no_grad():
        torch.testing.assert_close(model.sv_embedding(feats[1:]), sv[1:], atol=1e-5, rtol=1e-5)


def test_embed_resamples_numpy_audio() -> None:
    model = ERes2NetV2(TINY).eval()
    t = np.arange(32000) / 32000
    wav = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    emb = model.embed(wav, 32000)
    assert emb.shape == (2560,) and emb.dtype == np.float32
    from gpt_sovits.audio import resample

    expected = model.embed_wav(torch.from_numpy(resample(wav, 32000, 16000)))[0].numpy()
    np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-6)


def test_load_round_trip_strict_and_missing(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = ERes2NetV2(TINY).eval()
    path = tmp_path / "sv.ckpt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
    loaded, config = load_eres2net(path, TINY)
    assert config is TINY and not loaded.training
    feats = torch.randn(1, 32, 80)
    with torch.no_grad():
        torch.testing.assert_close(loaded.sv_embedding(feats), model.sv_embedding(feats), atol=1e-2, rtol=1e-2)
    state = model.state_dict()
    state.pop("seg_1.bias")
    torch.save(state, tmp_path / "partial.ckpt")
    with pytest.raises(RuntimeError, match="seg_1.bias"):
        load_eres2net(tmp_path / "partial.ckpt", TINY)
    with pytest.raises(ModelNotFoundError) as info:
        load_eres2net(tmp_path / "pretrained_eres2netv2w24s4ep4.ckpt")
    assert "pretrained_models/sv" in str(info.value)
