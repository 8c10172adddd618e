"""Runtime backends for the GPT step and the SoVITS chunk decode, chosen by `Settings.backend`.

`make_backend(name, bundle, ...)` builds one: "torch" (always available), "onnx" (ONNX Runtime;
exports the bundle first unless `export_dir` already holds a matching export) or "tensorrt"
(builds engines from an export; raises `BackendUnavailableError` without tensorrt/CUDA).
Plug it into the pipeline with `Synthesizer(bundle, backend=backend)`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from serving.backends.base import (
    Backend, BackendError, BackendInputError, BackendUnavailableError, ChunkVocoder,
)

BACKENDS = ("torch", "onnx", "tensorrt")

__all__ = [
    "BACKENDS", "Backend", "BackendError", "BackendInputError", "BackendUnavailableError",
    "ChunkVocoder", "ensure_export", "make_backend",
]


def _export_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def ensure_export(bundle: Any, export_dir: str | Path | None, precision: str) -> Path:
    """An export directory of `bundle` in `precision`: reused when its sidecar matches, else written.

    With `export_dir=None` a fresh temporary directory is used (it is not deleted: pass a
    directory to reuse exports across runs).
    """
    from serving.export import SIDECAR_NAME, export_onnx, load_export_info

    directory = Path(export_dir) if export_dir is not None else Path(tempfile.mkdtemp(prefix="gsv-export-"))
    if (directory / SIDECAR_NAME).is_file():
        info = load_export_info(directory)
        if info.model_name == bundle.name and info.precision == precision and len(info.graphs) == 5:
            return directory
    export_onnx(directory, bundle.gpt, bundle.sovits, precision=precision, model_name=bundle.name)
    return directory


def make_backend(
    name: str,
    bundle: Any,
    *,
    precision: str = "auto",
    device: str | torch.device | None = None,
    export_dir: str | Path | None = None,
    threads: int = 0,
    cuda_graph: bool = True,
    vocoder_precision: str = "auto",
) -> Backend:
    """Build backend `name` for `bundle` (device defaults to the bundle's).

    precision: auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16 (torch only) or int8 (CPU:
    torch dynamic INT8 GPT, or ONNX Runtime dynamic INT8 GPT graphs; TensorRT: INT8 engines).
    threads: ONNX Runtime intra-op threads (0 = its default).
    vocoder_precision: torch only, the HiFi-GAN generator's precision (auto: BF16 on CPUs with
    native BF16 instructions, otherwise the SoVITS precision).
    """
    dev = torch.device(device) if device is not None else bundle.device
    if name == "torch":
        from serving.backends.torch_backend import TorchBackend

        return TorchBackend(bundle, device=dev, precision=precision, cuda_graph=cuda_graph,
                            vocoder_precision=vocoder_precision)
    if name == "onnx":
        from serving.backends.onnx_backend import OnnxBackend

        directory = ensure_export(bundle, export_dir, _export_precision(precision, dev))
        return OnnxBackend(directory, device=dev, threads=threads)
    if name == "tensorrt":
        from serving.backends.tensorrt_backend import TensorRTBackend, _import_trt

        _import_trt()  # fail fast, before exporting anything
        directory = ensure_export(bundle, export_dir, "fp32")
        trt_precision = "fp16" if precision == "auto" else precision
        return TensorRTBackend(directory, precision=trt_precision, device=str(dev) if dev.type == "cuda" else "cuda")
    raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
