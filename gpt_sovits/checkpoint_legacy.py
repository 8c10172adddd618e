"""Reader and writer for the official GPT-SoVITS weight files (GPT `.ckpt`, SoVITS `.pth`).

Official files are `torch.save` zips of `{'weight': state_dict, 'config': ..., 'info': ...}`:

* GPT `.ckpt`: keys prefixed `model.`, fp16; `config` is a plain dict (`config['model']` holds the
  s1 YAML fields, `config['data']['max_sec']` the length limit).
* SoVITS `.pth`: fp16 `SynthesizerTrn` keys (fine-tunes drop `enc_q.*`); `config` is pickled as the
  global `utils.HParams` (nested) on the main branch and as a plain dict on newer branches. Files
  of v2Pro/v2ProPlus/v3-LoRA/v4-LoRA overwrite the zip magic `PK` with the ASCII version codes
  `05`/`06`/`03`/`04`, and `00`/`01`/`02` name v1/v2/v3.

Nothing here runs code from the file: everything goes through `torch.load(weights_only=True)`,
with one allow-listed stand-in class answering to the name `utils.HParams` (a bag of attributes,
converted to nested dicts at once). No module named `utils` is ever imported.

The file's config is only a hint. Shapes decide (`sovits_config_from_official`,
`gpt_config_from_official`), because fine-tunes routinely carry stale or edited configs.
"""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.errors import CheckpointError, UnsupportedCheckpointError

ZIP_MAGIC = b"PK\x03\x04"
HEADER_VERSIONS: dict[bytes, str] = {
    b"00": "v1",
    b"01": "v2",
    b"02": "v3",
    b"03": "v3-lora",
    b"04": "v4-lora",
    b"05": "v2Pro",
    b"06": "v2ProPlus",
}
"""Two ASCII digits the official trainer writes over `PK` to mark the model version."""
UNSUPPORTED_HEADERS = frozenset({b"02", b"03", b"04"})
VERSION_HEADERS: dict[str, bytes] = {"v2Pro": b"05", "v2ProPlus": b"06"}
"""Headers our exporter writes (the official loaders see v1/v2 from the weights, Pro only here)."""

V3V4_MESSAGE = (
    "GPT-SoVITS v3/v4 checkpoints use a CFM decoder this service does not implement; "
    "use a v1/v2/v2Pro/v2ProPlus SoVITS file"
)
_V3V4_PREFIXES = ("cfm.", "bridge.", "wns1.", "linear_mel.")
_GPT_PREFIXES = ("ar_text_embedding.", "ar_audio_embedding.", "h.layers.", "bert_proj.")
_SOVITS_PREFIXES = ("enc_p.", "dec.", "flow.", "ref_enc.", "quantizer.", "ssl_proj.", "enc_q.")
EMBEDDED_CONFIG_KEY = "gsv_clone"
"""Top-level key of an exported official `config` holding our full dataclass (ignored upstream)."""


class _HParamsStandIn:
    """Receives the attributes of a pickled official `utils.HParams` (it is only an attribute bag)."""


_SAFE_GLOBALS: list[Any] = [(_HParamsStandIn, "utils.HParams")]
_LOAD_LOCK = threading.Lock()
"""`safe_globals` edits a process-wide allow-list; one load at a time keeps it consistent."""


@dataclass
class OfficialFile:
    """The decoded top level of an official checkpoint (weights upcast to fp32)."""

    weight: dict[str, torch.Tensor]
    config: dict[str, Any]
    info: Any
    header: str
    """`PK` for a plain zip, otherwise the two-digit version code found in place of it."""
    stored_dtype: str
    """dtype of the floating tensors as stored (official files are float16)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other top-level entries, e.g. `lora_rank` of v3/v4 LoRA files."""


# --------------------------------------------------------------------------- reading the container


def sniff_header(path: Path) -> bytes:
    """First 4 bytes of `path`, with a clear error for missing or unreadable files."""
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: '{path}'", code="checkpoint_not_found")
    if not path.is_file():
        raise CheckpointError(f"'{path}' is not a file; pass the path of a checkpoint file")
    with path.open("rb") as fh:
        return fh.read(4)


def is_official_header(head: bytes) -> bool:
    """True for a torch zip, with or without the 2-byte official version code."""
    return len(head) == 4 and head[2:] == ZIP_MAGIC[2:] and (head[:2] == b"PK" or head[:2] in HEADER_VERSIONS)


def read_official(path: str | Path) -> OfficialFile:
    """Decode an official `.ckpt`/`.pth` without executing anything from it."""
    path = Path(path)
    head = sniff_header(path)
    if not is_official_header(head):
        raise CheckpointError(
            f"'{path}' is not a GPT-SoVITS checkpoint: expected a PyTorch zip (.ckpt/.pth) "
            "or our .safetensors + .json pair"
        )
    code = head[:2]
    if code in UNSUPPORTED_HEADERS:
        raise UnsupportedCheckpointError(f"'{path}' ({HEADER_VERSIONS[code]}): {V3V4_MESSAGE}")
    obj = _safe_torch_load(path, code)
    return _decode_top_level(path, obj, code.decode("ascii"))


def _safe_torch_load(path: Path, code: bytes) -> Any:
    if code == b"PK":
        source: Any = str(path)
        mmap = True  # tensors stay on disk until upcast; halves peak memory for big files
    else:
        data = bytearray(path.read_bytes())
        data[:2] = b"PK"
        source, mmap = io.BytesIO(bytes(data)), False
    try:
        with _LOAD_LOCK, torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        culprit = found.group(1) if found else _first_line(exc)
        raise CheckpointError(
            f"'{path}' holds Python objects that are not weights ({culprit}); we never unpickle "
            "arbitrary code. Re-save it as a plain {'weight','config','info'} checkpoint."
        ) from exc
    except Exception as exc:  # torch reports corrupt zips as RuntimeError, short reads as others
        raise CheckpointError(
            f"'{path}' is corrupt or truncated and cannot be read as a PyTorch checkpoint "
            f"({_first_line(exc)}); re-download or re-export it."
        ) from exc


def _first_line(exc: BaseException) -> str:
    """The gist of a low-level error: its first sentence, without torch's long advice."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text.split(". ", 1)[0][:200]


def _decode_top_level(path: Path, obj: Any, header: str) -> OfficialFile:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"'{path}' holds a {type(obj).__name__}, not a GPT-SoVITS checkpoint dict")
    weights = obj.get("weight", obj.get("state_dict"))
    if not isinstance(weights, Mapping) or not weights:
        raise CheckpointError(
            f"'{path}' has no 'weight' dict (top-level keys: {sorted(map(str, obj))[:8]}); "
            "not a GPT-SoVITS checkpoint"
        )
    stored = {t.dtype for t in weights.values() if isinstance(t, torch.Tensor) and t.is_floating_point()}
    bad = [k for k, t in weights.items() if not isinstance(t, torch.Tensor)]
    if bad:
        raise CheckpointError(f"'{path}': weight entries that are not tensors: {bad[:5]}")
    weight = {str(k): (t.float() if t.is_floating_point() else t) for k, t in weights.items()}
    config = _plain(obj.get("config"))
    extra = {str(k): v for k, v in obj.items() if k not in ("weight", "state_dict", "config", "info")}
    return OfficialFile(
        weight=weight,
        config=config if isinstance(config, dict) else {},
        info=_plain(obj.get("info")),
        header=header,
        stored_dtype=",".join(sorted(str(d).removeprefix("torch.") for d in stored)) or "none",
        extra=extra,
    )


def _plain(value: Any) -> Any:
    """HParams stand-ins and containers -> nested builtin dicts/lists."""
    if isinstance(value, _HParamsStandIn):
        return {str(k): _plain(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def classify_weights(weight: Mapping[str, torch.Tensor]) -> str:
    """'gpt', 'sovits', 'sovits_v3v4', 'discriminator' or 'unknown', from key names alone."""
    keys = [k.removeprefix("model.") for k in weight]
    if any(k.startswith(_V3V4_PREFIXES) for k in keys):
        return "sovits_v3v4"
    if any(k.startswith(_GPT_PREFIXES) for k in keys):
        return "gpt"
    if any(k.startswith(_SOVITS_PREFIXES) for k in keys):
        return "sovits"
    if any(k.startswith("discriminators.") for k in keys):
        return "discriminator"
    return "unknown"


# --------------------------------------------------------------------------------- shape helpers


def _shape(weight: Mapping[str, torch.Tensor], key: str, what: str) -> tuple[int, ...]:
    tensor = weight.get(key)
    if tensor is None:
        raise CheckpointError(f"{what} checkpoint lacks '{key}': the weights do not match the GPT-SoVITS layout")
    return tuple(tensor.shape)


def _count_indices(keys: Any, prefix: str) -> int:
    """Number of distinct integer sub-module indices right after `prefix` (e.g. layers)."""
    found = set()
    for key in keys:
        if key.startswith(prefix):
            head = key[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return len(found)


def _normed_weight_shape(weight: Mapping[str, torch.Tensor], base: str, what: str) -> tuple[int, ...]:
    """Shape of a (possibly weight-normed) conv weight under any of its key spellings."""
    for suffix in (".weight_v", ".parametrizations.weight.original1", ".weight"):
        if base + suffix in weight:
            return tuple(weight[base + suffix].shape)
    return _shape(weight, base + ".weight_v", what)


# ------------------------------------------------------------------------------------------- GPT


def _strip_model_prefix(weight: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in weight.items()}


def gpt_config_from_official(weight: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> GPTConfig:
    """GPTConfig from an official GPT state dict (keys without `model.`) and its config dict.

    Shapes give every size but the head count, which only the config knows (official: 16).
    """
    cfg = GPTConfig()
    model_cfg = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    data_cfg = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    names = {"vocab_size": "vocab_size", "phoneme_vocab_size": "phoneme_vocab_size",
             "embedding_dim": "embedding_dim", "hidden_dim": "hidden_dim", "head": "n_head",
             "n_layer": "n_layer", "EOS": "eos"}
    try:
        for src, dst in names.items():
            if src in model_cfg:
                setattr(cfg, dst, int(model_cfg[src]))
        if "dropout" in model_cfg:
            cfg.dropout = float(model_cfg["dropout"])
        if "max_sec" in data_cfg:
            cfg.max_sec = int(data_cfg["max_sec"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"GPT checkpoint config has a malformed field: {exc}") from exc
    _apply_embedded(cfg, config)
    eos_from_config = "EOS" in model_cfg or isinstance(config.get(EMBEDDED_CONFIG_KEY), Mapping)
    _gpt_shapes_win(cfg, weight)
    if not eos_from_config:
        cfg.eos = cfg.vocab_size - 1
    _check_gpt(cfg)
    return cfg


def _gpt_shapes_win(cfg: GPTConfig, weight: Mapping[str, torch.Tensor]) -> None:
    cfg.phoneme_vocab_size, cfg.embedding_dim = _shape(weight, "ar_text_embedding.word_embeddings.weight", "GPT")
    cfg.vocab_size = _shape(weight, "ar_audio_embedding.word_embeddings.weight", "GPT")[0]
    cfg.hidden_dim, cfg.bert_dim = _shape(weight, "bert_proj.weight", "GPT")
    cfg.ffn_dim = _shape(weight, "h.layers.0.linear1.weight", "GPT")[0]
    cfg.n_layer = _count_indices(weight, "h.layers.")
    _shape(weight, "ar_predict_layer.weight", "GPT")


def _check_gpt(cfg: GPTConfig) -> None:
    if cfg.n_head <= 0 or cfg.hidden_dim % cfg.n_head:
        raise CheckpointError(f"GPT checkpoint: hidden_dim {cfg.hidden_dim} is not divisible by head={cfg.n_head}")
    if not 0 <= cfg.eos < cfg.vocab_size:
        raise CheckpointError(f"GPT checkpoint: EOS {cfg.eos} outside the semantic vocabulary {cfg.vocab_size}")


def gpt_version(cfg: GPTConfig) -> str:
    """v1 GPTs have a 512-row phone table; every later release ships the v2 (732-row) layout."""
    return "v1" if cfg.phoneme_vocab_size == 512 else "v2"


def read_official_gpt(path: str | Path) -> tuple[dict[str, torch.Tensor], GPTConfig]:
    """fp32 state dict (keys as `T2SModel`, i.e. without `model.`) and config of an official `.ckpt`."""
    file = read_official(path)
    kind = classify_weights(file.weight)
    if kind != "gpt":
        raise CheckpointError(f"'{path}' is not a GPT (text-to-semantic) checkpoint; it looks like: {kind}")
    weight = _strip_model_prefix(file.weight)
    return weight, gpt_config_from_official(weight, file.config)


# ---------------------------------------------------------------------------------------- SoVITS

_HP_MODEL_INT = ("inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers",
                 "kernel_size", "upsample_initial_channel", "gin_channels")
_HP_MODEL_LISTS = ("resblock_kernel_sizes", "upsample_rates", "upsample_kernel_sizes")
_HP_DATA_INT = ("sampling_rate", "filter_length", "hop_length", "win_length", "n_mel_channels")


def _apply_hparams(cfg: SoVITSConfig, hp: Mapping[str, Any]) -> None:
    model = hp.get("model") if isinstance(hp.get("model"), Mapping) else {}
    data = hp.get("data") if isinstance(hp.get("data"), Mapping) else {}
    train = hp.get("train") if isinstance(hp.get("train"), Mapping) else {}
    try:
        for name in _HP_MODEL_INT:
            if name in model:
                setattr(cfg, name, int(model[name]))
        for name in _HP_MODEL_LISTS:
            if name in model:
                setattr(cfg, name, [int(v) for v in model[name]])
        if "resblock_dilation_sizes" in model:
            cfg.resblock_dilation_sizes = [[int(v) for v in d] for d in model["resblock_dilation_sizes"]]
        if "resblock" in model:
            cfg.resblock = str(model["resblock"])
        if "p_dropout" in model:
            cfg.p_dropout = float(model["p_dropout"])
        if "freeze_quantizer" in model and model["freeze_quantizer"] is not None:
            cfg.freeze_quantizer = bool(model["freeze_quantizer"])
        for name in _HP_DATA_INT:
            if name in data:
                setattr(cfg, name, int(data[name]))
        if "filter_length" in data:
            cfg.spec_channels = cfg.filter_length // 2 + 1
        if "segment_size" in train:
            cfg.segment_size = int(train["segment_size"]) // cfg.hop_length
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"SoVITS checkpoint config has a malformed field: {exc}") from exc


def _apply_embedded(cfg: Any, config: Mapping[str, Any]) -> None:
    """Our own exports carry the exact dataclass under EMBEDDED_CONFIG_KEY; use it when present."""
    embedded = config.get(EMBEDDED_CONFIG_KEY)
    if not isinstance(embedded, Mapping) or not isinstance(embedded.get("config"), Mapping):
        return
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in embedded["config"].items():
        if key in names:
            setattr(cfg, key, value)


def _sovits_shapes_win(cfg: SoVITSConfig, w: Mapping[str, torch.Tensor]) -> None:
    what = "SoVITS"
    cfg.n_symbols, cfg.hidden_channels = _shape(w, "enc_p.text_embedding.weight", what)
    cfg.inter_channels = _shape(w, "enc_p.proj.weight", what)[0] // 2
    ffn = _shape(w, "enc_p.encoder_text.ffn_layers.0.conv_1.weight", what)
    cfg.filter_channels, cfg.kernel_size = ffn[0], ffn[2]
    cfg.n_layers = _count_indices(w, "enc_p.encoder_text.attn_layers.")
    head_dim = _shape(w, "enc_p.encoder_text.attn_layers.0.emb_rel_k", what)[-1]
    cfg.n_heads = max(1, cfg.hidden_channels // head_dim)
    cfg.ssl_dim = _shape(w, "ssl_proj.weight", what)[0]
    cfg.mrte_hidden = _shape(w, "enc_p.mrte.c_pre.weight", what)[0]
    cfg.gin_channels, _ = _shape(w, "ref_enc.fc.fc.weight", what)
    cfg.ref_enc_in = _shape(w, "ref_enc.spectral.0.fc.weight", what)[1]
    cfg.codebook_size = _shape(w, "quantizer.vq.layers.0._codebook.embed", what)[0]
    cfg.use_sv = "sv_emb.weight" in w
    if cfg.use_sv:
        cfg.sv_dim = _shape(w, "sv_emb.weight", what)[1]
    cfg.n_flows = _count_indices(w, "flow.flows.")
    cfg.flow_layers = _count_indices(w, "flow.flows.0.enc.in_layers.")
    if "enc_q.pre.weight" in w:
        cfg.spec_channels = _shape(w, "enc_q.pre.weight", what)[1]
        cfg.posterior_layers = _count_indices(w, "enc_q.enc.in_layers.")
    _decoder_shapes_win(cfg, w)


def _decoder_shapes_win(cfg: SoVITSConfig, w: Mapping[str, torch.Tensor]) -> None:
    """HiFi-GAN sizes from shapes; strides and dilations are invisible, so they must agree in count."""
    what = "SoVITS decoder"
    cfg.upsample_initial_channel = _shape(w, "dec.conv_pre.weight", what)[0]
    n_ups = _count_indices(w, "dec.ups.")
    cfg.upsample_kernel_sizes = [_normed_weight_shape(w, f"dec.ups.{i}", what)[2] for i in range(n_ups)]
    n_blocks = _count_indices(w, "dec.resblocks.")
    if n_ups == 0 or n_blocks % n_ups:
        raise CheckpointError(f"{what}: {n_blocks} residual blocks do not divide over {n_ups} upsampling stages")
    per_stage = n_blocks // n_ups
    cfg.resblock = "1" if any(k.startswith("dec.resblocks.0.convs1.") for k in w) else "2"
    conv = "convs1" if cfg.resblock == "1" else "convs"
    cfg.resblock_kernel_sizes = [_normed_weight_shape(w, f"dec.resblocks.{j}.{conv}.0", what)[2]
                                 for j in range(per_stage)]
    n_dil = _count_indices(w, f"dec.resblocks.0.{conv}.")
    dil = cfg.resblock_dilation_sizes
    if len(dil) != per_stage or any(len(d) != n_dil for d in dil):
        if n_dil > 3:
            raise CheckpointError(f"{what}: cannot guess {n_dil} dilations per block; the file needs its config")
        cfg.resblock_dilation_sizes = [[1, 3, 5][:n_dil] for _ in range(per_stage)]
    if len(cfg.upsample_rates) != n_ups:
        raise CheckpointError(
            f"{what}: {n_ups} upsampling stages but the config lists upsample_rates "
            f"{cfg.upsample_rates}; strides are not visible in the weights, fix the file's config"
        )


def sovits_version(cfg: SoVITSConfig) -> str:
    """Model version from the (shape-derived) config, per the official fingerprints."""
    if cfg.use_sv:
        plus = cfg.upsample_initial_channel == 768 or cfg.upsample_kernel_sizes[:1] == [20]
        return "v2ProPlus" if plus else "v2Pro"
    return "v1" if cfg.n_symbols == 322 else "v2"


def check_sovits_supported(weight: Mapping[str, torch.Tensor], extra: Mapping[str, Any], where: str) -> None:
    """Refuse the v3/v4 family (CFM decoder) with the one message users can act on."""
    kind = classify_weights(weight)
    if kind == "sovits_v3v4" or "lora_rank" in extra or "enc_p.text_embedding.weight" not in weight:
        raise UnsupportedCheckpointError(f"{where}: {V3V4_MESSAGE}")


def sovits_config_from_official(weight: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> SoVITSConfig:
    """SoVITSConfig from official weights + HParams/plain config: config first, the shapes win."""
    cfg = SoVITSConfig()
    _apply_hparams(cfg, config)
    _apply_embedded(cfg, config)
    cfg.semantic_frame_rate = "25hz"  # the official loaders force it as well
    _sovits_shapes_win(cfg, weight)
    cfg.version = sovits_version(cfg)
    return cfg


def read_official_sovits(path: str | Path) -> tuple[dict[str, torch.Tensor], SoVITSConfig, str]:
    """fp32 state dict (official = our key names; `enc_q.*` kept when present), config, version."""
    file = read_official(path)
    kind = classify_weights(file.weight)
    if kind == "discriminator":
        raise CheckpointError(f"'{path}' is a SoVITS discriminator (s2D) file, not a generator (s2G / fine-tune)")
    if kind not in ("sovits", "sovits_v3v4"):
        raise CheckpointError(f"'{path}' is not a SoVITS checkpoint; it looks like: {kind}")
    check_sovits_supported(file.weight, file.extra, f"'{path}'")
    cfg = sovits_config_from_official(file.weight, file.config)
    return file.weight, cfg, cfg.version


# ----------------------------------------------------------------------------------------- export


def to_official_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parametrization-style weight-norm names -> the `weight_g`/`weight_v` names upstream uses."""
    out = {}
    for key, value in state.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        out[key.replace(".parametrizations.weight.original1", ".weight_v")] = value
    return out


def _state_of(model_or_state: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(model_or_state, torch.nn.Module):
        return dict(model_or_state.state_dict())
    return dict(model_or_state)


def _half(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
            for k, v in state.items()}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def official_gpt_config(cfg: GPTConfig) -> dict[str, Any]:
    """The plain-dict config upstream's loaders read (`model`, `data.max_sec`), plus ours embedded."""
    if cfg.ffn_dim != 4 * cfg.hidden_dim or cfg.bert_dim != 1024 or cfg.embedding_dim != cfg.hidden_dim:
        raise CheckpointError(
            "the official GPT code hard-codes ffn=4*hidden, bert_dim=1024 and embedding_dim=hidden_dim; "
            f"this config ({cfg.ffn_dim}, {cfg.bert_dim}, {cfg.embedding_dim}) cannot be exported for it"
        )
    model = {"vocab_size": cfg.vocab_size, "phoneme_vocab_size": cfg.phoneme_vocab_size,
             "embedding_dim": cfg.embedding_dim, "hidden_dim": cfg.hidden_dim, "head": cfg.n_head,
             "linear_units": cfg.ffn_dim, "n_layer": cfg.n_layer, "dropout": cfg.dropout,
             "EOS": cfg.eos, "random_bert": 0}
    return {"model": model, "data": {"max_sec": cfg.max_sec, "pad_val": cfg.eos},
            EMBEDDED_CONFIG_KEY: {"format_version": 1, "config": cfg.to_dict()}}


def export_official_gpt(model: torch.nn.Module | Mapping[str, torch.Tensor], cfg: GPTConfig,
                        path: str | Path, info: str = "GPT-e0") -> Path:
    """Write a `.ckpt` the official GPT-SoVITS WebUI/api load: fp16, keys prefixed `model.`.

    This is a pickle (that is the official format); our own files never are.
    """
    state = _half(_state_of(model))
    weight = {"model." + k: v for k, v in state.items()}
    path = Path(path)
    _atomic_write(path, _torch_bytes({"weight": weight, "config": official_gpt_config(cfg), "info": info}))
    return path


def official_sovits_config(cfg: SoVITSConfig, name: str = "") -> dict[str, Any]:
    """An `s2.json`-shaped plain dict (upstream reads it like its HParams) plus ours embedded."""
    model = {"inter_channels": cfg.inter_channels, "hidden_channels": cfg.hidden_channels,
             "filter_channels": cfg.filter_channels, "n_heads": cfg.n_heads, "n_layers": cfg.n_layers,
             "kernel_size": cfg.kernel_size, "p_dropout": cfg.p_dropout, "resblock": cfg.resblock,
             "resblock_kernel_sizes": list(cfg.resblock_kernel_sizes),
             "resblock_dilation_sizes": [list(d) for d in cfg.resblock_dilation_sizes],
             "upsample_rates": list(cfg.upsample_rates),
             "upsample_initial_channel": cfg.upsample_initial_channel,
             "upsample_kernel_sizes": list(cfg.upsample_kernel_sizes), "n_layers_q": 3,
             "use_spectral_norm": False, "gin_channels": cfg.gin_channels,
             "semantic_frame_rate": cfg.semantic_frame_rate, "freeze_quantizer": cfg.freeze_quantizer,
             "version": cfg.version}
    data = {"max_wav_value": 32768.0, "sampling_rate": cfg.sampling_rate, "filter_length": cfg.filter_length,
            "hop_length": cfg.hop_length, "win_length": cfg.win_length, "n_mel_channels": cfg.n_mel_channels,
            "mel_fmin": 0.0, "mel_fmax": None, "add_blank": True, "n_speakers": 300, "cleaned_text": True}
    train = {"segment_size": cfg.segment_size * cfg.hop_length, "fp16_run": True}
    return {"train": train, "data": data, "model": model, "content_module": "cnhubert", "name": name,
            "version": cfg.version, EMBEDDED_CONFIG_KEY: {"format_version": 1, "config": cfg.to_dict()}}


def export_official_sovits(model: torch.nn.Module | Mapping[str, torch.Tensor], cfg: SoVITSConfig,
                           path: str | Path, info: str = "0epoch_0iteration",
                           keep_posterior: bool = False) -> Path:
    """Write a SoVITS `.pth` the official tool loads, shaped like its fine-tune saves.

    fp16 weights with `enc_q.*` dropped (unless `keep_posterior`, e.g. to seed official training),
    and the v2Pro/v2ProPlus version code `05`/`06` written over `PK` because the official loader
    recognises Pro models only by that header. The config is a *plain dict* with the s2.json layout
    rather than a pickled `utils.HParams`: the official loaders index it the same way, and writing it
    that way avoids the pickle global that needs their `utils` module to read. This file is a pickle
    (the official format); our own files never are.
    """
    state = to_official_keys(_state_of(model))
    if not keep_posterior:
        state = {k: v for k, v in state.items() if "enc_q" not in k}
    state = _half(state)
    # the version (and so the header) follows the weights, like every reader's does
    cfg = sovits_config_from_official(state, {EMBEDDED_CONFIG_KEY: {"config": cfg.to_dict()}})
    path = Path(path)
    config = official_sovits_config(cfg, path.stem)
    data = bytearray(_torch_bytes({"weight": state, "config": config, "info": info}))
    header = VERSION_HEADERS.get(cfg.version)
    if header is not None:
        data[:2] = header
    _atomic_write(path, bytes(data))
    return path
