"""From-scratch base init: pair-pooling ssl_proj, k-means codebook that survives save/load/training mode."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gpt_sovits.checkpoint import load_gpt, load_sovits
from gpt_sovits.config import GPTConfig, SoVITSConfig
from training.base_init import (
    BaseInitError,
    check_pair,
    export_training_sovits,
    init_base_sovits,
    pair_average_,
    write_base_models,
)
from training.state import Progress, save_training_state
from training.train_sovits import load_generator, train_mode

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CODES = 8


def _tiny_cfg() -> SoVITSConfig:
    return dataclasses.replace(SoVITSConfig.load(CONFIGS / "sovits_tiny.json"), codebook_size=CODES)


def _clustered_features(cfg: SoVITSConfig, n_maps: int = 12, frames: int = 40) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Feature maps whose frame pairs sit near one of CODES well-separated centres."""
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(CODES, cfg.ssl_dim, generator=gen) * 10
    maps = []
    for _ in range(n_maps):
        which = torch.randint(CODES, (frames // 2,), generator=gen).repeat_interleave(2)
        maps.append((centres[which] + 0.05 * torch.randn(frames, cfg.ssl_dim, generator=gen)).T)
    return maps, centres


def test_pair_average_pools_frame_pairs() -> None:
    conv = torch.nn.Conv1d(6, 6, 2, stride=2)
    pair_average_(conv)
    x = torch.randn(1, 6, 10)
    expected = (x[..., 0::2] + x[..., 1::2]) / 2
    assert torch.allclose(conv(x), expected, atol=1e-6)
    with pytest.raises(BaseInitError, match="conv"):
        pair_average_(torch.nn.Conv1d(6, 4, 2, stride=2))


def test_codebook_recovers_clusters_and_tokens_follow_content() -> None:
    cfg = _tiny_cfg()
    maps, centres = _clustered_features(cfg)
    model = init_base_sovits(cfg, maps)
    book = model.quantizer.vq.layers[0]._codebook
    assert book.inited.item() == 1.0
    # every true centre has a code within the noise radius
    assert torch.cdist(centres, book.embed).min(dim=1).values.max() < 0.5
    # a map made of centre j then centre k gives exactly two distinct tokens, one per half
    probe = torch.cat([centres[2].expand(8, -1), centres[5].expand(8, -1)]).T[None]
    codes = model.extract_latent(probe)[0, 0]
    assert codes.shape == (8,)
    assert len(set(codes[:4].tolist())) == 1 and len(set(codes[4:].tolist())) == 1
    assert codes[0] != codes[-1]
    assert int(book.cluster_size.sum()) == sum(m.shape[1] // 2 for m in maps)


def test_written_base_keeps_codebook_through_load_and_training_mode(tmp_path: Path) -> None:
    cfg = _tiny_cfg()
    gpt_cfg = dataclasses.replace(GPTConfig.load(CONFIGS / "gpt_tiny.json"), vocab_size=CODES + 1, eos=CODES)
    maps, _ = _clustered_features(cfg)
    gpt_path, sovits_path = write_base_models(tmp_path / "base", gpt_cfg, cfg, maps)
    model, _ = load_sovits(sovits_path)
    embed = model.quantizer.vq.layers[0]._codebook.embed.clone()
    # the trainer's loader (with the posterior encoder) sees the same codebook, keeps the
    # quantizer in eval mode, and a first-batch k-means would be a no-op (inited)
    net_g, _ = load_generator(sovits_path)
    assert net_g.enc_q is not None
    train_mode(net_g, torch.nn.Identity())
    assert not net_g.quantizer.training
    book = net_g.quantizer.vq.layers[0]._codebook
    assert torch.equal(book.embed, embed)
    book.init_from(torch.randn(100, cfg.ssl_dim))
    assert torch.equal(book.embed, embed)
    assert torch.allclose(model.ssl_proj.weight[:, :, 0], torch.eye(cfg.ssl_dim) / 2)
    gpt, loaded_cfg = load_gpt(gpt_path)
    assert loaded_cfg.vocab_size == CODES + 1


def test_bad_inputs_are_rejected() -> None:
    cfg = _tiny_cfg()
    with pytest.raises(BaseInitError, match="ssl_dim"):
        init_base_sovits(cfg, [torch.randn(cfg.ssl_dim + 1, 20)])
    with pytest.raises(BaseInitError, match="at least"):
        init_base_sovits(cfg, [torch.randn(cfg.ssl_dim, 6)])
    with pytest.raises(BaseInitError, match="freeze_quantizer"):
        init_base_sovits(dataclasses.replace(cfg, freeze_quantizer=False), [torch.randn(cfg.ssl_dim, 40)])
    with pytest.raises(BaseInitError, match="vocab_size"):
        check_pair(GPTConfig.load(CONFIGS / "gpt_tiny.json"), cfg)


def test_export_training_sovits_keeps_posterior_and_loads_for_inference(tmp_path: Path) -> None:
    cfg = _tiny_cfg()
    maps, _ = _clustered_features(cfg)
    model = init_base_sovits(cfg, maps)
    with pytest.raises(BaseInitError, match="no training checkpoint"):
        export_training_sovits(tmp_path / "run", cfg, tmp_path / "out")
    save_training_state(tmp_path / "run", {"generator": model}, {}, None, Progress(step=7))
    path = export_training_sovits(tmp_path / "run", cfg, tmp_path / "out")
    net_g, _ = load_generator(path)  # training loader: enc_q present, nothing missing
    assert torch.allclose(net_g.enc_q.pre.weight, model.enc_q.pre.weight.half().float())
    inference, _ = load_sovits(path)  # inference loader drops enc_q
    assert inference.enc_q is None
    assert torch.equal(inference.quantizer.vq.layers[0]._codebook.embed,
                       model.quantizer.vq.layers[0]._codebook.embed.half().float())


def test_aligned_base_and_export_base_round_trip(tmp_path: Path) -> None:
    """`--phone-aligner` init: identity codebook (frozen), one-hot pairs quantize to their code;
    `export_base` writes our layout from the newest S1/S2 checkpoints, and it loads as a bundle."""
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.checkpoint import save_gpt, save_sovits
    from gpt_sovits.phone_align import PhoneAlignConfig, PhoneAlignFeatureExtractor, phone_token_sovits_config
    from training.base_init import export_base, init_aligned_base_sovits, init_base_gpt

    aligner = PhoneAlignConfig()
    sovits_cfg = phone_token_sovits_config(aligner, SoVITSConfig.load(CONFIGS / "sovits_tiny.json"))
    gpt_cfg = dataclasses.replace(GPTConfig.load(CONFIGS / "gpt_tiny.json"), vocab_size=121, eos=120)
    gpt, sovits = init_base_gpt(gpt_cfg), init_aligned_base_sovits(sovits_cfg)
    codes = torch.tensor([5, 5, 119, 0, 42])
    onehot = torch.nn.functional.one_hot(codes.repeat_interleave(2), 120).T.float()[None]
    assert sovits.extract_latent(onehot)[0, 0].tolist() == codes.tolist()
    with pytest.raises(BaseInitError, match="ssl_dim == codebook_size"):
        init_aligned_base_sovits(dataclasses.replace(sovits_cfg, codebook_size=64))
    # two "runs", each with a finished chunk (weights + json) and a newer checkpoint
    save_sovits(sovits, sovits_cfg, tmp_path / "s2" / "sovits")
    save_gpt(gpt, gpt_cfg, tmp_path / "s1" / "gpt")
    with torch.no_grad():
        sovits.flow.flows[0].pre.weight.add_(1.0)
        gpt.ar_predict_layer.weight.add_(1.0)
    save_training_state(tmp_path / "s2", {"generator": sovits}, {}, None, Progress(step=9))
    save_training_state(tmp_path / "s1", {"gpt": gpt}, {}, None, Progress(step=4))
    PhoneAlignFeatureExtractor(aligner).save(tmp_path / "aligner")
    out = tmp_path / "base"
    export_base(tmp_path / "s2", tmp_path / "s1", tmp_path / "aligner", out)
    bundle = ModelBundle.from_models_dir(out)
    assert torch.equal(bundle.sovits.flow.flows[0].pre.weight, sovits.flow.flows[0].pre.weight.half().float())
    assert torch.equal(bundle.gpt.ar_predict_layer.weight.float(), gpt.ar_predict_layer.weight.half().float())
    assert load_generator(out / "sovits.safetensors")[0].enc_q is not None  # further training can start here
    # a later session that trained only SoVITS keeps the exported GPT
    with torch.no_grad():
        sovits.flow.flows[0].pre.weight.add_(1.0)
    save_training_state(tmp_path / "s2", {"generator": sovits}, {}, None, Progress(step=12))
    gpt_bytes = (out / "gpt.safetensors").read_bytes()
    export_base(tmp_path / "s2", None, tmp_path / "aligner", out)
    assert (out / "gpt.safetensors").read_bytes() == gpt_bytes
    assert torch.equal(ModelBundle.from_models_dir(out).sovits.flow.flows[0].pre.weight,
                       sovits.flow.flows[0].pre.weight.half().float())
    with pytest.raises(BaseInitError, match="pass --s1-run"):
        export_base(tmp_path / "s2", None, tmp_path / "aligner", tmp_path / "empty")
