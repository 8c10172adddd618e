"""`gsv_export.json`: the sidecar that makes an export directory self-describing.

A runtime (ours, or a C++/Rust one) reads this file alone to learn what the graphs expect: audio
facts (sample rate, hop, samples per token), the token vocabulary (size, EOS), the KV-cache layout
(layers, width, maximum length), the precision and opset, and the full model configs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt_sovits.config import GPTConfig, JsonConfig, SoVITSConfig
from gpt_sovits.errors import GSVError

SIDECAR_NAME = "gsv_export.json"
FORMAT_VERSION = 1

GRAPH_FILES = {
    "t2s_prefill": "t2s_prefill.onnx",
    "t2s_step": "t2s_step.onnx",
    "sovits_decode": "sovits_decode.onnx",
    "ref_style": "ref_style.onnx",
    "prompt_codes": "prompt_codes.onnx",
}
"""Graph role -> file name inside the export directory."""


class ExportFormatError(GSVError, ValueError):
    """An export directory is missing its sidecar or graphs, or was written by a newer version."""

    code = "invalid_export"


@dataclass
class ExportInfo(JsonConfig):
    """Contents of `gsv_export.json` (see the module docstring)."""

    format: str = "gsv-onnx"
    format_version: int = FORMAT_VERSION
    model_name: str = ""
    """Which weights were exported (bundle name or file names)."""
    precision: str = "fp32"
    """fp32, fp16 (float16 weights/compute, float32 inputs and outputs) or int8."""
    opset: int = 17
    sample_rate: int = 32000
    hop_length: int = 640
    """Audio samples per latent frame (two frames per semantic token)."""
    samples_per_token: int = 1280
    vocab_size: int = 1025
    """Semantic tokens including EOS; logits have this width."""
    eos: int = 1024
    n_layer: int = 24
    hidden_dim: int = 512
    """Width of each cached key/value vector (heads are not split in the cache)."""
    max_cache_len: int = 2048
    """Most cache slots (text + prompt + new tokens) a fixed-shape runtime must support."""
    cache_layout: str = "per-layer past_k.{i}/past_v.{i} [1, past_len, hidden_dim]"
    quantized_graphs: list[str] = field(default_factory=list)
    """Graphs stored in INT8 (the others stay FP32 when precision is int8)."""
    graphs: dict[str, str] = field(default_factory=dict)
    """Graph role -> file name (roles: t2s_prefill, t2s_step, sovits_decode, ref_style, prompt_codes)."""
    gpt_config: dict[str, Any] = field(default_factory=dict)
    sovits_config: dict[str, Any] = field(default_factory=dict)
    torch_version: str = ""

    def gpt(self) -> GPTConfig:
        return GPTConfig.from_dict(self.gpt_config)

    def sovits(self) -> SoVITSConfig:
        return SoVITSConfig.from_dict(self.sovits_config)

    def path(self, directory: str | Path, role: str) -> Path:
        """File of graph `role` inside `directory`, checked to exist."""
        if role not in self.graphs:
            raise ExportFormatError(
                f"export in {directory} has no {role!r} graph (it has {sorted(self.graphs)}); "
                "re-run `gsv export` with the part that contains it (--gpt / --sovits)"
            )
        path = Path(directory) / self.graphs[role]
        if not path.is_file():
            raise ExportFormatError(f"graph file {path} listed in {SIDECAR_NAME} is missing")
        return path


def load_export_info(directory: str | Path) -> ExportInfo:
    """Read and check the sidecar of an export directory."""
    path = Path(directory) / SIDECAR_NAME
    if not path.is_file():
        raise ExportFormatError(f"{path} not found: point at a directory written by `gsv export`")
    info = ExportInfo.load(path)
    if info.format != "gsv-onnx" or info.format_version > FORMAT_VERSION:
        raise ExportFormatError(
            f"{path}: format {info.format!r} v{info.format_version} is not readable by this "
            f"version (reads gsv-onnx up to v{FORMAT_VERSION}); re-export with this version"
        )
    return info
