"""Export the GPT and SoVITS to ONNX graphs plus a `gsv_export.json` sidecar.

Graphs (see `wrappers` for their inputs and outputs):

| role           | file               | what |
|----------------|--------------------|------|
| t2s_prefill    | t2s_prefill.onnx   | phones + BERT + prompt tokens -> first logits and the prompt's K/V |
| t2s_step       | t2s_step.onnx      | one token + past K/V -> logits + the new slot's K/V |
| sovits_decode  | sovits_decode.onnx | chunk codes + phones + ge + noise -> audio |
| ref_style      | ref_style.onnx     | reference spectrogram -> ge (the reference path, cached per voice) |
| prompt_codes   | prompt_codes.onnx  | HuBERT features -> prompt codes (HuBERT itself is not exported) |

Precision: `fp32`; `fp16` converts weights and compute to float16 and keeps float32 inputs and
outputs (for GPU runtimes; the CPU provider has few fp16 kernels); `int8` applies ONNX Runtime
dynamic quantisation (int8 weights in 7-bit range, per-call activation scales; see
`quantize_int8_dynamic`) to the MatMuls of the GPT graphs
and, optionally, static calibrated QDQ INT8 to the SoVITS decoder (`calibration=`). The GPT is
where int8 pays on CPU: its step is a chain of small matrix-vector products bound by weight reads.
Export runs the legacy TorchScript-based exporter: it is fast (seconds on tiny models) and the
wrappers keep every shape-dependent value inside the graph.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.errors import GSVError
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.t2s import T2SModel
from serving.export.sidecar import GRAPH_FILES, SIDECAR_NAME, ExportInfo
from serving.export.wrappers import (
    PromptCodes, RefStyle, SoVITSChunkDecode, T2SPrefill, T2SStep, freeze_layer_norm_widths_,
)

log = logging.getLogger(__name__)

EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_OPSET = 17
DEFAULT_MAX_CACHE_LEN = 2048


class ExportError(GSVError, ValueError):
    """The export cannot be done as asked (unsupported model variant, bad precision, no parts)."""

    code = "export_failed"


# ------------------------------------------------------------------------------ helpers
def step_input_names(n_layer: int) -> list[str]:
    return ["token", "audio_pos"] + [f"past_{kv}.{i}" for i in range(n_layer) for kv in ("k", "v")]


def step_output_names(n_layer: int) -> list[str]:
    return ["logits"] + [f"new_{kv}.{i}" for i in range(n_layer) for kv in ("k", "v")]


def _export(module: nn.Module, args: tuple[Tensor, ...], path: Path, inputs: list[str],
            outputs: list[str], axes: dict[str, dict[int, str]], opset: int) -> None:
    """Legacy (TorchScript-tracing) export: seconds, and exact control of input names."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-only Python checks
        torch.onnx.export(
            module, args, str(path), input_names=inputs, output_names=outputs,
            dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True,
        )


def _float_copy(model: nn.Module) -> Any:
    return copy.deepcopy(model).eval().float().requires_grad_(False)


# ------------------------------------------------------------------------------ graphs
def export_gpt(model: T2SModel, out_dir: Path, opset: int = DEFAULT_OPSET) -> dict[str, str]:
    """Write the prefill and step graphs of `model` into `out_dir`; returns role -> file."""
    model = _float_copy(model)
    cfg: GPTConfig = model.cfg
    n, p, past = 6, 5, 7
    gen = torch.Generator().manual_seed(0)
    phones = torch.randint(0, cfg.phoneme_vocab_size, (1, n), generator=gen)
    bert = torch.randn(1, cfg.bert_dim, n, generator=gen)
    prompt = torch.randint(0, cfg.eos, (1, p), generator=gen)
    _export(
        T2SPrefill(model), (phones, bert, prompt), out_dir / GRAPH_FILES["t2s_prefill"],
        ["phones", "bert", "prompt"], ["logits", "present_k", "present_v"],
        {"phones": {1: "n_phones"}, "bert": {2: "n_phones"}, "prompt": {1: "n_prompt"},
         "present_k": {2: "n_slots"}, "present_v": {2: "n_slots"}},
        opset,
    )
    token = torch.randint(0, cfg.eos, (1, 1), generator=gen)
    pos = torch.full((1, 1), 3, dtype=torch.long)
    pasts = tuple(torch.randn(1, past, cfg.hidden_dim, generator=gen) for _ in range(2 * cfg.n_layer))
    names = step_input_names(cfg.n_layer)
    _export(
        T2SStep(model), (token, pos, *pasts), out_dir / GRAPH_FILES["t2s_step"],
        names, step_output_names(cfg.n_layer), {name: {1: "past_len"} for name in names[2:]}, opset,
    )
    return {role: GRAPH_FILES[role] for role in ("t2s_prefill", "t2s_step")}


def sovits_decode_example(cfg: SoVITSConfig, tokens: int = 6, phones: int = 5) -> dict[str, Tensor]:
    """Inputs of the chunk-decode graph for `tokens` codes at speed 1 (also used for tests)."""
    gen = torch.Generator().manual_seed(0)
    frames = 2 * tokens
    return {
        "codes": torch.randint(0, cfg.codebook_size, (1, 1, tokens), generator=gen),
        "phones": torch.randint(0, cfg.n_symbols, (1, phones), generator=gen),
        "ge": torch.randn(1, cfg.gin_channels, 1, generator=gen),
        "noise": torch.randn(1, cfg.inter_channels, frames, generator=gen),
        "noise_scale": torch.tensor([0.5]),
        "resample": torch.eye(frames),
    }


def export_sovits(model: SynthesizerTrn, out_dir: Path, opset: int = DEFAULT_OPSET) -> dict[str, str]:
    """Write the chunk-decode and reference-path graphs into `out_dir`; returns role -> file."""
    cfg: SoVITSConfig = model.cfg
    if cfg.use_sv:
        raise ExportError(
            f"{cfg.version} (use_sv) models need the speaker-verification input in the style "
            "graph, which is not exported yet: export a v1/v2 SoVITS or use the torch backend"
        )
    model = _float_copy(model)
    model.fold_weight_norm()
    freeze_layer_norm_widths_(model)
    ex = sovits_decode_example(cfg)
    _export(
        SoVITSChunkDecode(model), tuple(ex.values()), out_dir / GRAPH_FILES["sovits_decode"],
        list(ex), ["audio"],
        {"codes": {2: "n_tokens"}, "phones": {1: "n_phones"}, "noise": {2: "n_frames"},
         "resample": {0: "n_frames_in", 1: "n_frames"}, "audio": {2: "n_samples"}},
        opset,
    )
    gen = torch.Generator().manual_seed(1)
    spec = torch.rand(1, cfg.spec_channels, 40, generator=gen)
    _export(RefStyle(model), (spec,), out_dir / GRAPH_FILES["ref_style"], ["spec"], ["ge"],
            {"spec": {2: "spec_frames"}}, opset)
    ssl = torch.randn(1, cfg.ssl_dim, 20, generator=gen)
    _export(PromptCodes(model), (ssl,), out_dir / GRAPH_FILES["prompt_codes"], ["ssl"], ["codes"],
            {"ssl": {2: "ssl_frames"}, "codes": {2: "n_codes"}}, opset)
    return {role: GRAPH_FILES[role] for role in ("sovits_decode", "ref_style", "prompt_codes")}


# ------------------------------------------------------------------------------ precision
def convert_fp16(path: Path) -> None:
    """Float16 weights and compute; inputs/outputs stay float32 (`keep_io_types`)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, str(path))


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs every skipped tensor on the root logger at INFO."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING + 1))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8_dynamic(path: Path, op_types: Iterable[str] = ("MatMul", "Gemm"),
                          reduce_range: bool = True) -> None:
    """ONNX Runtime dynamic INT8 (weights int8, activation scale computed per call).

    `reduce_range` (default on) keeps the weights in 7 bits, [-64, 64]. The graph multiplies
    uint8 activations by int8 weights (MatMulInteger, U8S8), and on x86 CPUs without VNNI
    (AVX2 or AVX-512 alone: AMD Zen 2/3, Intel before Cascade Lake) ONNX Runtime's MLAS kernel
    uses VPMADDUBSW, which adds each pair of uint8*int8 products into a *saturating* int16
    (255*127*2 = 64770 > 32767). With full-range weights enough pairs clip that the tiny GPT's
    INT8 logits came out 20% off its FP32 ones (exact integer maths: 1%). With 7-bit weights a
    pair stays within 255*64*2 = 32640, so every CPU computes the exact integer result, at the
    same speed. An export runs wherever it is copied, so this cannot follow the exporting
    machine's CPU. (U8U8 weights avoid the clipping too, but run ~30% slower on AVX2.)
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_name(path.stem + ".fp32.onnx")
    path.rename(fp32)
    try:
        with _quiet_root_logger():
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8,
                             op_types_to_quantize=list(op_types), reduce_range=reduce_range)
    finally:
        fp32.unlink(missing_ok=True)


def quantize_int8_static(path: Path, calibration: list[dict[str, Any]],
                         op_types: Iterable[str] = ("Conv", "ConvTranspose")) -> None:
    """Static QDQ INT8 with activation ranges from `calibration` feeds (real reference audio)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    fp32 = path.with_name(path.stem + ".fp32.onnx")
    path.rename(fp32)
    try:
        with _quiet_root_logger():
            # Only the compute-heavy ops; elementwise maths (noise, masks, gates) stays float.
            quantize_static(str(fp32), str(path), _Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            per_channel=True, reduce_range=True, op_types_to_quantize=list(op_types))
    finally:
        fp32.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ driver
def export_onnx(
    out_dir: str | Path,
    gpt: T2SModel | None = None,
    sovits: SynthesizerTrn | None = None,
    *,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    max_cache_len: int = DEFAULT_MAX_CACHE_LEN,
    model_name: str = "",
    sovits_calibration: list[dict[str, Any]] | None = None,
) -> ExportInfo:
    """Export the given models into `out_dir` (created) and write the sidecar; returns it.

    `sovits_calibration`: feeds for the sovits_decode graph (numpy arrays by input name) made
    from real reference audio; with precision int8 the decoder is then statically quantised,
    otherwise it stays float32.
    """
    if gpt is None and sovits is None:
        raise ExportError("nothing to export: pass the GPT, the SoVITS or both")
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(EXPORT_PRECISIONS)}; got {precision!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = ExportInfo(model_name=model_name, precision=precision, opset=opset,
                      max_cache_len=max_cache_len, torch_version=torch.__version__)
    if gpt is not None:
        _fill_gpt_facts(info, gpt.cfg)
        info.graphs.update(export_gpt(gpt, out, opset))
    if sovits is not None:
        _fill_sovits_facts(info, sovits.cfg)
        info.graphs.update(export_sovits(sovits, out, opset))
    _apply_precision(out, info, sovits_calibration)
    info.save(out / SIDECAR_NAME)
    log.info("exported %s to %s (%s)", sorted(info.graphs), out, precision)
    return info


def _fill_gpt_facts(info: ExportInfo, cfg: GPTConfig) -> None:
    info.gpt_config = cfg.to_dict()
    info.vocab_size, info.eos = cfg.vocab_size, cfg.eos
    info.n_layer, info.hidden_dim = cfg.n_layer, cfg.hidden_dim
    info.max_cache_len = min(info.max_cache_len, cfg.max_positions)


def _fill_sovits_facts(info: ExportInfo, cfg: SoVITSConfig) -> None:
    info.sovits_config = cfg.to_dict()
    info.sample_rate, info.hop_length = cfg.sampling_rate, cfg.hop_length
    info.samples_per_token = cfg.samples_per_token


def _apply_precision(out: Path, info: ExportInfo, calibration: list[dict[str, Any]] | None) -> None:
    if info.precision == "fp16":
        for name in info.graphs.values():
            convert_fp16(out / name)
    elif info.precision == "int8":
        for role in ("t2s_prefill", "t2s_step"):
            if role in info.graphs:
                quantize_int8_dynamic(out / info.graphs[role])
                info.quantized_graphs.append(role)
        if calibration and "sovits_decode" in info.graphs:
            quantize_int8_static(out / info.graphs["sovits_decode"], calibration)
            info.quantized_graphs.append("sovits_decode")
