"""TensorRT backend: engines built from a `gsv export` directory (FP32, FP16, or INT8 calibrated
on real reference audio), run on torch CUDA tensors with `execute_async_v3`.

Engines are cached next to the ONNX files (`<graph>.<precision>.plan`); a build takes minutes
for v2-size models. Shapes are dynamic inside optimisation profiles whose maxima come from the
sidecar (`max_cache_len` for the KV cache). Needs `tensorrt` (10.x API) and a CUDA device; when
either is missing, constructing the backend raises `BackendUnavailableError`.

NOTE: written against the TensorRT 10 Python API but not run in this repository's CI (no GPU);
the parity tests in tests/serving/backends skip cleanly without tensorrt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gpt_sovits.engine import DecodeRequest
from gpt_sovits.fast import T2SState
from gpt_sovits.sovits.text_encoder import speed_frames
from serving.backends.base import Backend, BackendError, BackendUnavailableError, check_chunk_inputs, prior_noise
from serving.export.onnx_export import step_input_names, step_output_names
from serving.export.sidecar import load_export_info
from serving.export.wrappers import resample_matrix

TRT_PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_BYTES = 4 << 30


def _import_trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "the tensorrt backend needs the `tensorrt` package and an NVIDIA GPU "
            "(pip install tensorrt); use backend=onnx or torch here"
        ) from exc
    if not torch.cuda.is_available():
        raise BackendUnavailableError("the tensorrt backend needs a CUDA device; none is visible")
    return trt


def profiles(role: str, info: Any) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt, max) shapes of every dynamic input of graph `role`."""
    g, s, m = info.gpt(), info.sovits(), info.max_cache_len
    if role == "t2s_prefill":
        return {"phones": ((1, 1), (1, 96), (1, 512)),
                "bert": ((1, g.bert_dim, 1), (1, g.bert_dim, 96), (1, g.bert_dim, 512)),
                "prompt": ((1, 1), (1, 200), (1, 512))}
    if role == "t2s_step":
        return {name: ((1, 1, g.hidden_dim), (1, 384, g.hidden_dim), (1, m, g.hidden_dim))
                for name in step_input_names(g.n_layer)[2:]}
    if role == "sovits_decode":
        return {"codes": ((1, 1, 1), (1, 1, 36), (1, 1, 400)), "phones": ((1, 1), (1, 64), (1, 512)),
                "noise": ((1, s.inter_channels, 2), (1, s.inter_channels, 72), (1, s.inter_channels, 3200)),
                "resample": ((2, 2), (72, 72), (800, 3200))}
    return {}


class _Calibrator:
    """Entropy calibrator fed with real inputs (numpy dicts by input name)."""

    def __new__(cls, trt: Any, feeds: list[dict[str, np.ndarray]], cache: Path) -> Any:
        base = trt.IInt8EntropyCalibrator2

        class Calibrator(base):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                base.__init__(self)
                self._feeds, self._held = iter(feeds), []

            def get_batch_size(self) -> int:
                return 1

            def get_batch(self, names: list[str]) -> list[int] | None:
                feed = next(self._feeds, None)
                if feed is None:
                    return None
                self._held = [torch.from_numpy(np.ascontiguousarray(feed[n])).cuda() for n in names]
                return [t.data_ptr() for t in self._held]

            def read_calibration_cache(self) -> bytes | None:
                return cache.read_bytes() if cache.is_file() else None

            def write_calibration_cache(self, data: bytes) -> None:
                cache.write_bytes(bytes(data))

        return Calibrator()


def build_engine(trt: Any, onnx_path: Path, precision: str, shapes: dict[str, tuple[tuple[int, ...], ...]],
                 calibration: list[dict[str, np.ndarray]] | None = None) -> bytes:
    """Parse `onnx_path` and build a serialized engine in `precision`."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8" and calibration:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _Calibrator(trt, calibration, onnx_path.with_suffix(".calib"))
        config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"TensorRT failed to build an engine for {onnx_path}")
    return bytes(plan)


class _Engine:
    """One deserialized engine; `run` binds torch CUDA tensors by name and executes."""

    def __init__(self, trt: Any, plan: bytes) -> None:
        self.trt = trt
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
        self.context = self.engine.create_execution_context()

    def run(self, inputs: dict[str, Tensor], outputs: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        ctx, outs = self.context, dict(outputs or {})
        for name, tensor in inputs.items():
            ctx.set_input_shape(name, tuple(tensor.shape))
            ctx.set_tensor_address(name, tensor.data_ptr())
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) != self.trt.TensorIOMode.OUTPUT:
                continue
            if name not in outs:
                shape = tuple(ctx.get_tensor_shape(name))
                dtype = torch.int64 if self.engine.get_tensor_dtype(name) == self.trt.int64 else torch.float32
                outs[name] = torch.empty(shape, dtype=dtype, device="cuda")
            ctx.set_tensor_address(name, outs[name].data_ptr())
        if not ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise BackendError("TensorRT execution failed")
        return outs


class TensorRTBackend(Backend):
    """TensorRT engines for the GPT prefill/step and the SoVITS chunk decode (reference path: ONNX
    graphs are small and cached per voice, so they stay on the torch/onnx side)."""

    name = "tensorrt"

    def __init__(self, export_dir: str | Path, *, precision: str = "fp16", device: str = "cuda",
                 calibration: dict[str, list[dict[str, np.ndarray]]] | None = None) -> None:
        trt = _import_trt()
        if precision not in TRT_PRECISIONS:
            raise BackendError(f"tensorrt precision must be one of {TRT_PRECISIONS}; got {precision!r}")
        directory = Path(export_dir)
        self.info = load_export_info(directory)
        super().__init__(self.info.gpt(), self.info.sovits(), precision, torch.device(device))
        self.engines: dict[str, _Engine] = {}
        for role in ("t2s_prefill", "t2s_step", "sovits_decode"):
            onnx_path = self.info.path(directory, role)
            plan_path = onnx_path.with_suffix(f".{precision}.plan")
            if not plan_path.is_file():
                feeds = (calibration or {}).get(role)
                plan_path.write_bytes(build_engine(trt, onnx_path, precision, profiles(role, self.info), feeds))
            self.engines[role] = _Engine(trt, plan_path.read_bytes())
        self._step_in = step_input_names(self.gpt_config.n_layer)
        self._step_out = step_output_names(self.gpt_config.n_layer)

    def t2s_prefill(self, request: DecodeRequest, capacity: int) -> tuple[Tensor, T2SState]:
        dev = self.device
        out = self.engines["t2s_prefill"].run({
            "phones": request.phones.view(1, -1).to(dev),
            "bert": request.bert.unsqueeze(0).float().to(dev).contiguous(),
            "prompt": request.prompt.view(1, -1).to(dev) if request.prompt is not None else
            torch.zeros(1, 1, dtype=torch.long, device=dev),
        })
        filled = out["present_k"].shape[2]
        cfg = self.gpt_config
        shape = (cfg.n_layer, 1, filled + capacity, cfg.hidden_dim)
        k, v = torch.empty(shape, device=dev), torch.empty(shape, device=dev)
        k[:, :, :filled], v[:, :, :filled] = out["present_k"], out["present_v"]
        return out["logits"], _TrtT2SState(self, k, v, filled, request.phones.numel())

    def decode_chunk(self, codes: Tensor, phones: Tensor, ge: Tensor, noise_scale: float = 0.5,
                     speed: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        cfg, dev = self.sovits_config, self.device
        check_chunk_inputs(cfg, codes, phones, ge, speed)
        frames = 2 * codes.shape[-1]
        out_frames = speed_frames(frames, speed)
        noise = prior_noise((1, cfg.inter_channels, out_frames), noise_scale, generator)
        out = self.engines["sovits_decode"].run({
            "codes": codes.to(dev).long().contiguous(), "phones": phones.to(dev).long().contiguous(),
            "ge": ge.to(dev).float().contiguous(), "noise": noise.to(dev),
            "noise_scale": torch.tensor([noise_scale], device=dev),
            "resample": resample_matrix(frames, out_frames).to(dev),
        })
        return out["audio"].cpu()

    def reference_style(self, spec: Tensor) -> Tensor:
        raise BackendError("the tensorrt backend leaves the reference path to torch/onnx (cached per voice)")

    def prompt_codes(self, ssl: Tensor) -> Tensor:
        raise BackendError("the tensorrt backend leaves the reference path to torch/onnx (cached per voice)")


class _TrtT2SState:
    def __init__(self, backend: TensorRTBackend, k: Tensor, v: Tensor, length: int, n_text: int) -> None:
        self.engine = backend.engines["t2s_step"]
        self.names_in, self.names_out = backend._step_in, backend._step_out
        self.k, self.v, self.length, self.n_text = k, v, length, n_text
        self.token = torch.zeros(1, 1, dtype=torch.long, device=k.device)
        self.pos = torch.zeros(1, 1, dtype=torch.long, device=k.device)
        self.logits = torch.empty(1, backend.vocab_size, device=k.device)

    def step(self, token: Tensor) -> Tensor:
        t = self.length
        if t >= self.k.shape[2]:
            raise BackendError(f"KV buffer full at {t} slots")
        self.token.copy_(token.view(1, 1))
        self.pos.fill_(t - self.n_text)
        inputs = {"token": self.token, "audio_pos": self.pos}
        outputs = {"logits": self.logits}
        for layer in range(self.k.shape[0]):
            for j, buf in enumerate((self.k, self.v)):
                inputs[self.names_in[2 + 2 * layer + j]] = buf[layer, :, :t]
                outputs[self.names_out[1 + 2 * layer + j]] = buf[layer, :, t : t + 1]
        self.engine.run(inputs, outputs)
        self.length = t + 1
        return self.logits

    def close(self) -> None:
        pass
