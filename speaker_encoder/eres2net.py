"""ERes2NetV2 speaker network (3D-Speaker), as GPT-SoVITS v2Pro/v2ProPlus use it for `sv_emb`.

GPT-SoVITS loads `pretrained_models/sv/pretrained_eres2netv2w24s4ep4.ckpt` (a plain state dict)
into ERes2NetV2(baseWidth=24, scale=4, expansion=4) and does *not* use the 192-d speaker
embedding head. Instead it takes the fused stage-3/4 feature map [B, 2048, 10, T/8], flattens
channels x frequency to 20480 and averages over time: that 20480-d vector is `sv_emb`, the input
of SoVITS-Pro's `sv_emb` Linear(20480 -> 1024). `sv_embedding` below computes exactly that.

Architecture facts (module names match the checkpoint's keys):
- stem: conv1 3x3 (1 -> 64) + bn1 + ReLU over the [B, 1, 80 mel, T] fbank image;
- layer1..4: [3, 4, 6, 3] Res2Net-style bottlenecks with planes 64/128/256/512, strides 1/2/2/2.
  Each block: 1x1 conv to width*scale (width = floor(planes*24/64)), `scale` chained 3x3 convs
  on channel splits, 1x1 conv to planes*expansion, shortcut (1x1 conv + BN when the shape changes),
  clipped ReLU (hardtanh 0..20). In layer3/4 the split chaining uses attentional feature fusion
  (`fuse_models`, AFF) instead of addition;
- layer3_ds: 3x3 stride-2 conv taking layer3's output to layer4's shape; fuse34 = AFF(layer4, it);
- head: temporal statistics pooling (mean and unbiased std over time) -> seg_1 Linear(40960 -> 192).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gpt_sovits.audio import resample
from gpt_sovits.config import JsonConfig
from gpt_sovits.errors import CheckpointError, ModelNotFoundError
from speaker_encoder.frontend import kaldi_fbank

_WEIGHTS_WHAT = (
    "ERes2NetV2 weights 'pretrained_eres2netv2w24s4ep4.ckpt' (a state dict, from the official GPT-SoVITS "
    "GPT_SoVITS/pretrained_models/sv/ folder) or a .safetensors conversion of it"
)


@dataclass
class ERes2NetV2Config(JsonConfig):
    """ERes2NetV2 sizes; defaults are the w24 s4 e4 model GPT-SoVITS v2Pro ships."""

    feat_dim: int = 80
    """Kaldi fbank mel bins (the frequency axis of the 2-D input)."""
    m_channels: int = 64
    """Stem width; stage planes are 1x, 2x, 4x, 8x this."""
    base_width: int = 24
    """Res2Net base width: split width = floor(planes * base_width / 64)."""
    scale: int = 4
    """Number of channel splits per block."""
    expansion: int = 4
    """Block output channels = planes * expansion."""
    num_blocks: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    """Blocks per stage."""
    embedding_size: int = 192
    """Speaker-embedding head width (not used for GPT-SoVITS's sv_emb)."""
    aff_reduction: int = 4
    """Channel reduction inside attentional feature fusion."""
    sample_rate: int = 16000
    """Rate the fbank front end expects."""

    @property
    def sv_dim(self) -> int:
        """Width of `sv_embedding`: final channels x frequency bins after three stride-2 stages."""
        return self.m_channels * 8 * self.expansion * math.ceil(self.feat_dim / 8)


def _clipped_relu(x: Tensor) -> Tensor:
    return torch.nn.functional.hardtanh(x, 0.0, 20.0)


class AFF(nn.Module):
    """Attentional feature fusion: a learned per-position soft switch between two maps."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        inner = channels // reduction
        self.local_att = nn.Sequential(
            nn.Conv2d(2 * channels, inner, kernel_size=1),
            nn.BatchNorm2d(inner),
            nn.SiLU(),
            nn.Conv2d(inner, channels, kernel_size=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        gate = 1.0 + torch.tanh(self.local_att(torch.cat([x, y], dim=1)))  # in (0, 2)
        return x * gate + y * (2.0 - gate)


class ERes2NetV2Block(nn.Module):
    """Res2Net bottleneck whose splits are chained by addition or, with `fuse`, by AFF."""

    def __init__(self, in_planes: int, planes: int, stride: int, config: ERes2NetV2Config, fuse: bool) -> None:
        super().__init__()
        width = int(math.floor(planes * config.base_width / 64.0))
        out_planes = planes * config.expansion
        self.width = width
        self.conv1 = nn.Conv2d(in_planes, width * config.scale, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * config.scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False) for _ in range(config.scale)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(config.scale))
        if fuse:
            self.fuse_models = nn.ModuleList(AFF(width, config.aff_reduction) for _ in range(config.scale - 1))
        self.conv3 = nn.Conv2d(width * config.scale, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        splits = _clipped_relu(self.bn1(self.conv1(x))).split(self.width, dim=1)
        outputs: list[Tensor] = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i == 0:
                current = splits[0]
            elif hasattr(self, "fuse_models"):
                current = self.fuse_models[i - 1](current, splits[i])
            else:
                current = current + splits[i]
            current = _clipped_relu(bn(conv(current)))
            outputs.append(current)
        out = self.bn3(self.conv3(torch.cat(outputs, dim=1)))
        return _clipped_relu(out + self.shortcut(x))


class ERes2NetV2(nn.Module):
    """fbank [B, T, feat_dim] -> speaker embedding [B, 192] (`forward`) or sv_emb [B, 20480]."""

    def __init__(self, config: ERes2NetV2Config | None = None) -> None:
        super().__init__()
        self.config = c = config or ERes2NetV2Config()
        self.conv1 = nn.Conv2d(1, c.m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c.m_channels)
        in_planes = c.m_channels
        for index, (blocks, stride) in enumerate(zip(c.num_blocks, (1, 2, 2, 2))):
            planes = c.m_channels * 2**index
            layer = []
            for b in range(blocks):
                layer.append(ERes2NetV2Block(in_planes, planes, stride if b == 0 else 1, c, fuse=index >= 2))
                in_planes = planes * c.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
        top = c.m_channels * 8 * c.expansion
        self.layer3_ds = nn.Conv2d(top // 2, top, kernel_size=3, stride=2, padding=1, bias=False)
        self.fuse34 = AFF(top, c.aff_reduction)
        self.seg_1 = nn.Linear(2 * c.sv_dim, c.embedding_size)

    def feature_map(self, feats: Tensor) -> Tensor:
        """[B, T, F] fbank -> fused stage-3/4 map [B, C_top, ceil(F/8), ceil(T/8)]."""
        x = feats.transpose(1, 2).unsqueeze(1)
        out = torch.relu(self.bn1(self.conv1(x)))
        out3 = self.layer3(self.layer2(self.layer1(out)))
        return self.fuse34(self.layer4(out3), self.layer3_ds(out3))

    def sv_embedding(self, feats: Tensor) -> Tensor:
        """GPT-SoVITS's `sv_emb` (its `forward3`): time-mean of the flattened map, [B, sv_dim]."""
        return self.feature_map(feats).flatten(1, 2).mean(dim=-1)

    def forward(self, feats: Tensor) -> Tensor:
        fmap = self.feature_map(feats).flatten(1, 2)  # [B, sv_dim, T']
        stats = torch.cat([fmap.mean(dim=-1), torch.sqrt(fmap.var(dim=-1) + 1e-8)], dim=1)
        return self.seg_1(stats)

    @torch.no_grad()
    def embed_wav(self, wav16k: Tensor) -> Tensor:
        """16 kHz float waveforms [B, samples] (or [samples]) -> sv_emb [B, sv_dim].

        Same recipe as GPT-SoVITS `SV.compute_embedding3`: Kaldi fbank per item, then forward3.
        """
        if wav16k.dim() == 1:
            wav16k = wav16k.unsqueeze(0)
        param = next(self.parameters())
        feats = kaldi_fbank(wav16k.to(param.device), self.config.sample_rate, self.config.feat_dim)
        return self.sv_embedding(feats.to(param.dtype))

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Any-rate mono numpy audio -> sv_emb [sv_dim] as float32 numpy."""
        x = resample(np.asarray(wav, dtype=np.float32), sr, self.config.sample_rate)
        return self.embed_wav(torch.from_numpy(x))[0].float().cpu().numpy()


def load_eres2net(path: str | Path, config: ERes2NetV2Config | None = None) -> tuple[ERes2NetV2, ERes2NetV2Config]:
    """Load user-supplied ERes2NetV2 weights strictly (a .ckpt/.pt state dict or .safetensors).

    Without `config`, an `ERes2NetV2Config` JSON with the weights' stem (e.g. `sv.json` beside
    `sv.safetensors`) gives the sizes; the official file carries no config, so the defaults
    (w24 s4 e4) apply when there is none.
    """
    weights = Path(path)
    if not weights.is_file():
        raise ModelNotFoundError(weights, _WEIGHTS_WHAT)
    sidecar = weights.with_suffix(".json")
    if config is None and sidecar.is_file():
        try:
            config = ERes2NetV2Config.load(sidecar)
        except (OSError, TypeError, ValueError) as exc:
            raise CheckpointError(f"'{sidecar}' is not a valid ERes2NetV2Config JSON ({exc})") from exc
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    config = config or ERes2NetV2Config()
    model = ERes2NetV2(config)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval(), config
