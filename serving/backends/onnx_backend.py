"""ONNX Runtime backend over a `gsv export` directory.

The GPT step runs with IO binding: every layer's cache is one `[1, slots, hidden]` region of a
preallocated buffer, its filled prefix is bound as `past_k.{i}` without a copy, and the graph's
`new_k.{i}` output is bound straight to the next free slot, so a step copies nothing on the host.
On CUDA (`device="cuda"`, onnxruntime-gpu) the buffers are torch CUDA tensors bound the same way
and sampling runs on the GPU.

Limitations: batch 1 per state (concurrent streams use separate states on shared sessions, which
ONNX Runtime allows); reference-free voices (no prompt tokens) are not supported here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gpt_sovits.engine import DecodeRequest
from gpt_sovits.fast import CPU_STEP_THREADS, T2SState
from gpt_sovits.sovits.text_encoder import speed_frames
from serving.backends.base import (
    Backend, BackendInputError, BackendUnavailableError, check_chunk_inputs, prior_noise,
)
from serving.export.onnx_export import step_input_names, step_output_names
from serving.export.sidecar import ExportInfo, load_export_info
from serving.export.wrappers import resample_matrix

_NP_TYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64}


def _bind(io: Any, name: str, tensor: Tensor, *, output: bool = False) -> None:
    """Bind a contiguous torch tensor's memory to a graph input/output (no copy)."""
    assert tensor.is_contiguous(), name
    dev = tensor.device
    args = (name, dev.type, dev.index or 0, _NP_TYPES[tensor.dtype], list(tensor.shape), tensor.data_ptr())
    if output:
        io.bind_output(*args)
    else:
        io.bind_input(*args)


def _providers(device: torch.device) -> list[str]:
    import onnxruntime as ort

    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        # Run on torch's current stream so tensors written by torch are ready when ORT reads.
        options = {"device_id": str(device.index or 0), "has_user_compute_stream": "1",
                   "user_compute_stream": str(torch.cuda.current_stream(device).cuda_stream)}
        return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]  # type: ignore[list-item]
    raise BackendUnavailableError(
        f"onnxruntime here has no provider for {device}: install onnxruntime-gpu for CUDA, "
        "or run the onnx backend on cpu"
    )


class OnnxBackend(Backend):
    """Runs the graphs of one export directory (both the GPT and the SoVITS parts)."""

    name = "onnx"

    def __init__(self, export_dir: str | Path, *, device: str | torch.device = "cpu",
                 threads: int = 0, spin: bool = False) -> None:
        """`threads`: intra-op threads (0 = ONNX Runtime's default); `spin`: let idle pool
        threads busy-wait. Off by default: the GPT step, SoVITS decodes and other requests share
        the cores, and spinning threads steal them (it only pays on a dedicated, idle machine)."""
        import onnxruntime as ort

        self.export_dir = Path(export_dir)
        self.info: ExportInfo = load_export_info(self.export_dir)
        dev = torch.device(device)
        super().__init__(self.info.gpt(), self.info.sovits(), self.info.precision, dev)
        providers = _providers(dev)

        def session(role: str, n_threads: int) -> Any:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n_threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
            return ort.InferenceSession(str(self.info.path(self.export_dir, role)), opts, providers=providers)

        # On CPU the single-token step runs on CPU_STEP_THREADS threads, as in the torch backend,
        # and SoVITS gets a second session of that size, used while the caller's torch thread
        # count says the GPT holds the other cores (`pipeline` lowers it around such decodes;
        # ONNX Runtime fixes a session's threads at creation).
        on_cpu = dev.type == "cpu"
        self.sessions = {role: session(role, CPU_STEP_THREADS if on_cpu and role == "t2s_step" else threads)
                         for role in self.info.graphs}
        self._narrow_sovits = session("sovits_decode", CPU_STEP_THREADS) if on_cpu else None
        self._full_threads = threads or torch.get_num_threads()
        self._step_in = step_input_names(self.gpt_config.n_layer)[2:]
        self._step_out = step_output_names(self.gpt_config.n_layer)[1:]

    # ------------------------------------------------------------------ GPT
    def t2s_prefill(self, request: DecodeRequest, capacity: int) -> tuple[Tensor, T2SState]:
        if request.prompt is None or request.prompt.numel() == 0:
            raise BackendInputError(
                "the onnx backend needs prompt tokens (a voice with a transcript); use the torch "
                "backend for reference-free voices"
            )
        feeds = {
            "phones": request.phones.view(1, -1).cpu().numpy().astype(np.int64),
            "bert": request.bert.unsqueeze(0).float().cpu().numpy(),
            "prompt": request.prompt.view(1, -1).cpu().numpy().astype(np.int64),
        }
        logits, keys, values = self.sessions["t2s_prefill"].run(None, feeds)
        filled = keys.shape[2]
        cfg = self.gpt_config
        shape = (cfg.n_layer, 1, filled + capacity, cfg.hidden_dim)
        k = torch.empty(shape, dtype=torch.float32, device=self.device)
        v = torch.empty(shape, dtype=torch.float32, device=self.device)
        k[:, :, :filled] = torch.from_numpy(keys)
        v[:, :, :filled] = torch.from_numpy(values)
        state = _OnnxT2SState(self, k, v, filled, request.phones.numel())
        return torch.from_numpy(logits).to(self.device), state

    # ------------------------------------------------------------------ SoVITS
    def decode_chunk(self, codes: Tensor, phones: Tensor, ge: Tensor, noise_scale: float = 0.5,
                     speed: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        cfg = self.sovits_config
        check_chunk_inputs(cfg, codes, phones, ge, speed)
        frames = 2 * codes.shape[-1]
        out_frames = speed_frames(frames, speed)
        feeds = {
            "codes": codes.cpu().numpy().astype(np.int64),
            "phones": phones.cpu().numpy().astype(np.int64),
            "ge": ge.float().cpu().numpy(),
            "noise": prior_noise((1, cfg.inter_channels, out_frames), noise_scale, generator).numpy(),
            "noise_scale": np.array([noise_scale], dtype=np.float32),
            "resample": resample_matrix(frames, out_frames).numpy(),
        }
        narrow = self._narrow_sovits is not None and torch.get_num_threads() < self._full_threads
        (audio,) = (self._narrow_sovits if narrow else self.sessions["sovits_decode"]).run(["audio"], feeds)
        return torch.from_numpy(audio)

    def reference_style(self, spec: Tensor) -> Tensor:
        (ge,) = self.sessions["ref_style"].run(["ge"], {"spec": spec.float().cpu().numpy()})
        return torch.from_numpy(ge)

    def prompt_codes(self, ssl: Tensor) -> Tensor:
        (codes,) = self.sessions["prompt_codes"].run(["codes"], {"ssl": ssl.float().cpu().numpy()})
        return torch.from_numpy(codes)


class _OnnxT2SState:
    """KV buffers + IO binding of one sequence on the step graph."""

    def __init__(self, backend: OnnxBackend, k: Tensor, v: Tensor, length: int, n_text: int) -> None:
        self.session = backend.sessions["t2s_step"]
        self.names_in, self.names_out = backend._step_in, backend._step_out
        self.k, self.v = k, v
        self.length, self.n_text = length, n_text
        dev = k.device
        self.token = torch.zeros(1, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, 1, dtype=torch.long, device=dev)
        self.logits = torch.empty(1, backend.vocab_size, dtype=torch.float32, device=dev)
        self.io = self.session.io_binding()

    def step(self, token: Tensor) -> Tensor:
        t = self.length
        if t >= self.k.shape[2]:
            raise BackendInputError(f"KV buffer full at {t} slots: prefill with a larger capacity")
        self.token.copy_(token.view(1, 1))
        self.pos.fill_(t - self.n_text)  # audio positions restart at 0 after the text
        io = self.io
        _bind(io, "token", self.token)
        _bind(io, "audio_pos", self.pos)
        for layer in range(self.k.shape[0]):
            for j, buf in enumerate((self.k, self.v)):
                _bind(io, self.names_in[2 * layer + j], buf[layer, :, :t])
                _bind(io, self.names_out[2 * layer + j], buf[layer, :, t : t + 1], output=True)
        _bind(io, "logits", self.logits, output=True)
        self.session.run_with_iobinding(io)
        self.length = t + 1
        return self.logits

    def close(self) -> None:
        self.io.clear_binding_inputs()
        self.io.clear_binding_outputs()
