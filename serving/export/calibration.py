"""Calibration inputs for static INT8 (ONNX Runtime QDQ, TensorRT) made from a real voice.

Activation ranges must come from realistic data: the chunk decoder is fed windows of the
reference clip's own semantic tokens (HuBERT codes of real speech), its transcript's phones and
its style vector, with the same prior noise the runtime draws; the GPT prefill gets the
reference transcript + tokens. Random inputs would calibrate for signals that never occur.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gpt_sovits.errors import GSVError

CHUNK_SIZES = (4, 8, 16, 24)
"""Window sizes (tokens) fed to the chunk decoder: the streaming first chunk up to a later one."""


class CalibrationError(GSVError, ValueError):
    """The voice cannot provide calibration data (e.g. reference-free: no tokens or phones)."""

    code = "calibration_failed"


def _need_prompt(voice: Any) -> None:
    if voice.prompt_tokens is None or voice.prompt_phones is None:
        raise CalibrationError(
            "calibration needs a voice made with a transcript (prompt tokens and phones): pass "
            "--calibration-text with the reference clip"
        )


def sovits_calibration_feeds(bundle: Any, voice: Any, sizes: Sequence[int] = CHUNK_SIZES,
                             left_context: int = 12, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Inputs of the `sovits_decode` graph: windows (left context + chunk) of the voice's tokens."""
    _need_prompt(voice)
    tokens = voice.prompt_tokens.long()
    phones = voice.prompt_phones.long().view(1, -1).numpy()
    ge = voice.style(bundle).float().cpu().numpy()
    inter = bundle.sovits_config.inter_channels
    gen = torch.Generator().manual_seed(seed)
    feeds = []
    for size in sizes:
        for start in range(0, max(1, tokens.numel() - size - left_context + 1), size + left_context):
            window = tokens[start : start + left_context + size]
            frames = 2 * window.numel()
            feeds.append({
                "codes": window.view(1, 1, -1).numpy(),
                "phones": phones,
                "ge": ge,
                "noise": torch.randn(1, inter, frames, generator=gen).numpy(),
                "noise_scale": np.array([0.5], dtype=np.float32),
                "resample": np.eye(frames, dtype=np.float32),
            })
    return feeds


def t2s_calibration_feeds(voice: Any) -> list[dict[str, np.ndarray]]:
    """Inputs of the `t2s_prefill` graph: the reference transcript with growing token prefixes."""
    _need_prompt(voice)
    phones = voice.prompt_phones.long().view(1, -1).numpy()
    bert = voice.prompt_bert.float().unsqueeze(0).numpy()
    tokens = voice.prompt_tokens.long()
    cuts = sorted({max(1, tokens.numel() * k // 4) for k in (1, 2, 3, 4)})
    return [{"phones": phones, "bert": bert, "prompt": tokens[:n].view(1, -1).numpy()} for n in cuts]
