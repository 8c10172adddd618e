"""Writes weight files in the *official* GPT-SoVITS layouts, filled with random tensors.

Two sources of key/shape lists:

* `reference_*_shapes`: the lists measured from the official classes
  (`data/gptsovits-v2-state-dict.json`, a copy of the shared reference), with the recorded v1 /
  v2Pro / v2ProPlus differences applied. These are the ground truth for full-size files.
* `gpt_shapes(cfg)` / `sovits_shapes(cfg)`: the same layouts derived from a config by the
  architecture facts (reference §4), so tests can write *tiny* official-layout files. The tests
  check that these reproduce the reference lists exactly for the official sizes.

Writers mimic the official savers: fp16 tensors, GPT keys prefixed `model.`, SoVITS config pickled
as the global `utils.HParams` (through a throwaway `utils` module that exists only while writing),
and the 2-byte version header written over `PK` for v2Pro/v2ProPlus.
"""
from __future__ import annotations

import dataclasses
import io
import json
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from gpt_sovits.config import GPTConfig, SoVITSConfig

REFERENCE_JSON = Path(__file__).parent / "data" / "gptsovits-v2-state-dict.json"
Shapes = dict[str, tuple[int, ...]]
_SOVITS_DIFF_NAMES = {"v1": "v1 (s2.json, version=v1)", "v2Pro": "v2Pro (s2v2Pro.json)",
                      "v2ProPlus": "v2ProPlus (s2v2ProPlus.json)"}


@lru_cache(maxsize=1)
def _reference() -> dict[str, Any]:
    return json.loads(REFERENCE_JSON.read_text())


# ------------------------------------------------------------------------------ reference shapes


def reference_gpt_shapes(version: str) -> Shapes:
    """Official GPT keys (with the `model.` prefix) and shapes for v1 or v2."""
    ref = _reference()
    shapes = {e["key"]: tuple(e["shape"]) for e in ref["gpt_v2"]["state_dict"]}
    if version == "v1":
        for key, diff in ref["gpt_other_versions_vs_v2"]["v1 (s1longer.yaml)"]["shape_differs"].items():
            shapes[key] = tuple(diff["other"])
    return shapes


def reference_sovits_shapes(version: str, with_posterior: bool = False) -> Shapes:
    """Official SynthesizerTrn keys and shapes for v1/v2/v2Pro/v2ProPlus (fine-tunes drop enc_q)."""
    ref = _reference()
    shapes = {e["key"]: tuple(e["shape"]) for e in ref["sovits_v2"]["state_dict"]}
    if version != "v2":
        diff = ref["sovits_other_versions_vs_v2"][_SOVITS_DIFF_NAMES[version]]
        for key in diff["only_in_v2"]:
            shapes.pop(key)
        shapes.update({k: tuple(v) for k, v in diff["only_in_other"].items()})
        shapes.update({k: tuple(d["other"]) for k, d in diff["shape_differs"].items()})
    if not with_posterior:
        shapes = {k: v for k, v in shapes.items() if "enc_q" not in k}
    return shapes


# ------------------------------------------------------------------- layouts derived from configs


def gpt_shapes(cfg: GPTConfig) -> Shapes:
    """Official GPT layout (keys without `model.`) for `cfg`, from the architecture description."""
    e, h, f, v = cfg.embedding_dim, cfg.hidden_dim, cfg.ffn_dim, cfg.vocab_size
    shapes: Shapes = {
        "bert_proj.weight": (e, cfg.bert_dim), "bert_proj.bias": (e,),
        "ar_text_embedding.word_embeddings.weight": (cfg.phoneme_vocab_size, e),
        "ar_text_position.alpha": (1,),
        "ar_audio_embedding.word_embeddings.weight": (v, e), "ar_audio_position.alpha": (1,),
    }
    for i in range(cfg.n_layer):
        p = f"h.layers.{i}."
        shapes.update({
            p + "self_attn.in_proj_weight": (3 * h, h), p + "self_attn.in_proj_bias": (3 * h,),
            p + "self_attn.out_proj.weight": (h, h), p + "self_attn.out_proj.bias": (h,),
            p + "linear1.weight": (f, h), p + "linear1.bias": (f,),
            p + "linear2.weight": (h, f), p + "linear2.bias": (h,),
            p + "norm1.weight": (h,), p + "norm1.bias": (h,), p + "norm2.weight": (h,), p + "norm2.bias": (h,),
        })
    shapes["ar_predict_layer.weight"] = (v, h)
    return shapes


def _conv(shapes: Shapes, name: str, out: int, inp: int, k: int, bias: bool = True) -> None:
    shapes[name + ".weight"] = (out, inp, k)
    if bias:
        shapes[name + ".bias"] = (out,)


def _normed_conv(shapes: Shapes, name: str, out: int, inp: int, k: int) -> None:
    """Conv1d under old-style weight norm (dim 0)."""
    shapes[name + ".bias"] = (out,)
    shapes[name + ".weight_g"] = (out, 1, 1)
    shapes[name + ".weight_v"] = (out, inp, k)


def _normed_tconv(shapes: Shapes, name: str, inp: int, out: int, k: int) -> None:
    """ConvTranspose1d under weight norm: its weight is [in, out, k], so the norm's dim 0 is `in`."""
    shapes[name + ".bias"] = (out,)
    shapes[name + ".weight_g"] = (inp, 1, 1)
    shapes[name + ".weight_v"] = (inp, out, k)


def _attn_encoder(shapes: Shapes, p: str, layers: int, hid: int, filt: int, heads: int, k: int) -> None:
    for i in range(layers):
        a = f"{p}.attn_layers.{i}"
        shapes[a + ".emb_rel_k"] = shapes[a + ".emb_rel_v"] = (1, 9, hid // heads)
        for c in ("conv_q", "conv_k", "conv_v", "conv_o"):
            _conv(shapes, f"{a}.{c}", hid, hid, 1)
        for n in ("norm_layers_1", "norm_layers_2"):
            shapes[f"{p}.{n}.{i}.gamma"] = shapes[f"{p}.{n}.{i}.beta"] = (hid,)
        _conv(shapes, f"{p}.ffn_layers.{i}.conv_1", filt, hid, k)
        _conv(shapes, f"{p}.ffn_layers.{i}.conv_2", hid, filt, k)


def _wavenet(shapes: Shapes, p: str, hid: int, layers: int, gin: int) -> None:
    for i in range(layers):
        _normed_conv(shapes, f"{p}.in_layers.{i}", 2 * hid, hid, 5)
        _normed_conv(shapes, f"{p}.res_skip_layers.{i}", 2 * hid if i < layers - 1 else hid, hid, 1)
    _normed_conv(shapes, f"{p}.cond_layer", 2 * hid * layers, gin, 1)


def _text_encoder(shapes: Shapes, c: SoVITSConfig) -> None:
    hid, m = c.hidden_channels, c.mrte_hidden
    _conv(shapes, "enc_p.ssl_proj", hid, c.ssl_dim, 1)
    for name, layers in (("encoder_ssl", c.n_layers // 2), ("encoder_text", c.n_layers),
                         ("encoder2", c.n_layers // 2)):
        _attn_encoder(shapes, f"enc_p.{name}", layers, hid, c.filter_channels, c.n_heads, c.kernel_size)
    shapes["enc_p.text_embedding.weight"] = (c.n_symbols, hid)
    for name in ("conv_q", "conv_k", "conv_v", "conv_o"):
        _conv(shapes, f"enc_p.mrte.cross_attention.{name}", m, m, 1)
    _conv(shapes, "enc_p.mrte.c_pre", m, hid, 1)
    _conv(shapes, "enc_p.mrte.text_pre", m, hid, 1)
    _conv(shapes, "enc_p.mrte.c_post", hid, m, 1)
    _conv(shapes, "enc_p.proj", 2 * c.inter_channels, hid, 1)


def _decoder(shapes: Shapes, c: SoVITSConfig) -> None:
    up = c.upsample_initial_channel
    _conv(shapes, "dec.conv_pre", up, c.inter_channels, 7)
    for i, k in enumerate(c.upsample_kernel_sizes):
        _normed_tconv(shapes, f"dec.ups.{i}", up // 2 ** i, up // 2 ** (i + 1), k)
    for i in range(len(c.upsample_rates)):
        ch = up // 2 ** (i + 1)
        for j, (k, dil) in enumerate(zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes)):
            block = f"dec.resblocks.{i * len(c.resblock_kernel_sizes) + j}"
            for conv in ("convs1", "convs2"):
                for d in range(len(dil)):
                    _normed_conv(shapes, f"{block}.{conv}.{d}", ch, ch, k)
    _conv(shapes, "dec.conv_post", 1, up // 2 ** len(c.upsample_rates), 7, bias=False)
    _conv(shapes, "dec.cond", up, c.gin_channels, 1)


def sovits_shapes(c: SoVITSConfig, with_posterior: bool = False) -> Shapes:
    """Official SynthesizerTrn layout for `c`, from the architecture description."""
    shapes: Shapes = {}
    _text_encoder(shapes, c)
    _decoder(shapes, c)
    if with_posterior:
        _conv(shapes, "enc_q.pre", c.hidden_channels, c.spec_channels, 1)
        _wavenet(shapes, "enc_q.enc", c.hidden_channels, c.posterior_layers, c.gin_channels)
        _conv(shapes, "enc_q.proj", 2 * c.inter_channels, c.hidden_channels, 1)
    half = c.inter_channels // 2
    for f in range(c.n_flows):
        p = f"flow.flows.{2 * f}"
        _conv(shapes, p + ".pre", c.hidden_channels, half, 1)
        _wavenet(shapes, p + ".enc", c.hidden_channels, c.flow_layers, c.gin_channels)
        _conv(shapes, p + ".post", half, c.hidden_channels, 1)
    shapes["ref_enc.spectral.0.fc.weight"], shapes["ref_enc.spectral.0.fc.bias"] = (128, c.ref_enc_in), (128,)
    shapes["ref_enc.spectral.3.fc.weight"], shapes["ref_enc.spectral.3.fc.bias"] = (128, 128), (128,)
    for t in (0, 1):
        _conv(shapes, f"ref_enc.temporal.{t}.conv1.conv", 256, 128, 5)
    for name in ("w_qs", "w_ks", "w_vs", "fc"):
        shapes[f"ref_enc.slf_attn.{name}.weight"], shapes[f"ref_enc.slf_attn.{name}.bias"] = (128, 128), (128,)
    shapes["ref_enc.fc.fc.weight"], shapes["ref_enc.fc.fc.bias"] = (c.gin_channels, 128), (c.gin_channels,)
    _conv(shapes, "ssl_proj", c.ssl_dim, c.ssl_dim, 2)
    q = "quantizer.vq.layers.0._codebook."
    shapes.update({q + "inited": (1,), q + "cluster_size": (c.codebook_size,),
                   q + "embed": (c.codebook_size, c.ssl_dim), q + "embed_avg": (c.codebook_size, c.ssl_dim)})
    if c.use_sv:
        shapes["sv_emb.weight"], shapes["sv_emb.bias"] = (c.gin_channels, c.sv_dim), (c.gin_channels,)
        shapes["prelu.weight"] = (c.gin_channels,)
        shapes["ge_to512.weight"], shapes["ge_to512.bias"] = (c.mrte_hidden, c.gin_channels), (c.mrte_hidden,)
    return shapes


def random_weights(shapes: Mapping[str, tuple[int, ...]], seed: int = 0,
                   dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes; codebook `inited` flags set to 1 as in trained files."""
    gen = torch.Generator().manual_seed(seed)
    out = {k: torch.randn(s, generator=gen, dtype=torch.float32).to(dtype) for k, s in shapes.items()}
    for key in out:
        if key.endswith("_codebook.inited"):
            out[key].fill_(1)
    return out


# ------------------------------------------------------------------------------- official configs


def official_gpt_config(cfg: GPTConfig) -> dict[str, Any]:
    """A `s1longer(-v2).yaml`-shaped config dict with WebUI training fields, as the official saver writes."""
    return {
        "train": {"seed": 1234, "epochs": 15, "batch_size": 8, "save_every_n_epoch": 5, "precision": "16-mixed",
                  "gradient_clip": 1.0, "if_save_latest": True, "if_save_every_weights": True,
                  "half_weights_save_dir": "GPT_weights_v2", "exp_name": "voice", "if_dpo": False},
        "optimizer": {"lr": 0.01, "lr_init": 1e-5, "lr_end": 1e-4, "warmup_steps": 2000, "decay_steps": 40000},
        "data": {"max_eval_sample": 8, "max_sec": cfg.max_sec, "num_workers": 4, "pad_val": cfg.eos},
        "model": {"vocab_size": cfg.vocab_size, "phoneme_vocab_size": cfg.phoneme_vocab_size,
                  "embedding_dim": cfg.embedding_dim, "hidden_dim": cfg.hidden_dim, "head": cfg.n_head,
                  "linear_units": cfg.ffn_dim, "n_layer": cfg.n_layer, "dropout": 0, "EOS": cfg.eos,
                  "random_bert": 0},
        "inference": {"top_k": 15},
        "pretrained_s1": "GPT_SoVITS/pretrained_models/s1v3.ckpt",
        "train_semantic_path": "logs/voice/6-name2semantic.tsv",
        "train_phoneme_path": "logs/voice/2-name2text.txt",
        "output_dir": "logs/voice/logs_s1_v2",
    }


def official_sovits_hparams(cfg: SoVITSConfig) -> dict[str, Any]:
    """An `s2*.json`-shaped config (what the official trainer keeps in `utils.HParams`)."""
    return {
        "train": {"log_interval": 100, "eval_interval": 500, "seed": 1234, "epochs": 8, "learning_rate": 0.0001,
                  "betas": [0.8, 0.99], "eps": 1e-09, "batch_size": 4, "fp16_run": True, "lr_decay": 0.999875,
                  "segment_size": cfg.segment_size * cfg.hop_length, "init_lr_ratio": 1, "warmup_epochs": 0,
                  "c_mel": 45, "c_kl": 1.0, "text_low_lr_rate": 0.4, "grad_ckpt": False,
                  "pretrained_s2G": "GPT_SoVITS/pretrained_models/s2G.pth", "if_save_latest": True},
        "data": {"max_wav_value": 32768.0, "sampling_rate": cfg.sampling_rate, "filter_length": cfg.filter_length,
                 "hop_length": cfg.hop_length, "win_length": cfg.win_length, "n_mel_channels": cfg.n_mel_channels,
                 "mel_fmin": 0.0, "mel_fmax": None, "add_blank": True, "n_speakers": 300, "cleaned_text": True,
                 "exp_dir": "logs/voice"},
        "model": {"inter_channels": cfg.inter_channels, "hidden_channels": cfg.hidden_channels,
                  "filter_channels": cfg.filter_channels, "n_heads": cfg.n_heads, "n_layers": cfg.n_layers,
                  "kernel_size": cfg.kernel_size, "p_dropout": cfg.p_dropout, "resblock": cfg.resblock,
                  "resblock_kernel_sizes": list(cfg.resblock_kernel_sizes),
                  "resblock_dilation_sizes": [list(d) for d in cfg.resblock_dilation_sizes],
                  "upsample_rates": list(cfg.upsample_rates), "upsample_initial_channel": cfg.upsample_initial_channel,
                  "upsample_kernel_sizes": list(cfg.upsample_kernel_sizes), "n_layers_q": 3,
                  "use_spectral_norm": False, "gin_channels": cfg.gin_channels, "semantic_frame_rate": "25hz",
                  "freeze_quantizer": True, "version": cfg.version},
        "s2_ckpt_dir": "logs/voice", "content_module": "cnhubert", "save_weight_dir": "SoVITS_weights_v2",
        "name": "voice", "version": cfg.version, "pretrain": None, "resume_step": None,
    }


# --------------------------------------------------------------------------------------- writers


@contextmanager
def fake_utils_module() -> Iterator[type]:
    """A module named `utils` with an `HParams` class, present only inside the block (for pickling)."""
    previous = sys.modules.get("utils")
    module = types.ModuleType("utils")

    class HParams:
        def __init__(self, **kwargs: Any) -> None:
            for key, value in kwargs.items():
                setattr(self, key, HParams(**value) if isinstance(value, dict) else value)

    HParams.__module__, HParams.__qualname__ = "utils", "HParams"
    module.HParams = HParams  # type: ignore[attr-defined]
    sys.modules["utils"] = module
    try:
        yield HParams
    finally:
        if previous is None:
            sys.modules.pop("utils", None)
        else:
            sys.modules["utils"] = previous


def _write(path: Path, obj: Any, header: bytes = b"PK") -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = bytearray(buf.getvalue())
    assert data[:2] == b"PK"
    data[:2] = header
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def write_official_gpt(path: Path, weight: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                       info: str = "GPT-e15") -> Path:
    """`{'weight', 'config', 'info'}` like `s1_train.py`; keys get the `model.` prefix if missing."""
    prefixed = {(k if k.startswith("model.") else "model." + k): v.half() for k, v in weight.items()}
    return _write(path, {"weight": prefixed, "config": dict(config), "info": info})


def write_official_sovits(path: Path, weight: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                          info: str = "8epoch_96iteration", header: bytes = b"PK",
                          as_hparams: bool = True) -> Path:
    """`{'weight', 'config', 'info'}` like `process_ckpt.savee` (+ `my_save2` header bytes).

    `as_hparams=False` stores the config as a plain dict, as newer official branches do.
    """
    weight = {k: v.half() for k, v in weight.items()}
    if not as_hparams:
        return _write(path, {"weight": weight, "config": dict(config), "info": info}, header)
    with fake_utils_module() as hparams_cls:
        return _write(path, {"weight": weight, "config": hparams_cls(**config), "info": info}, header)


def reference_sovits_hparams(version: str) -> dict[str, Any]:
    """The official `s2.json` / `s2v2Pro.json` / `s2v2ProPlus.json` values (from the reference), as a
    trainer would save them: independent of our config files, so tests can compare against those."""
    ref = _reference()["sovits_v2"]
    model = dict(ref["model_config"], version=version)
    if version in ("v2Pro", "v2ProPlus"):
        model.update(gin_channels=1024, p_dropout=0.0)
    if version == "v2ProPlus":
        model.update(upsample_initial_channel=768, upsample_kernel_sizes=[20, 16, 8, 2, 2])
    train = {"segment_size": 20480, "fp16_run": True, "epochs": 8, "batch_size": 4, "text_low_lr_rate": 0.4}
    return {"train": train, "data": dict(ref["data_config"]), "model": model, "s2_ckpt_dir": "logs/voice",
            "content_module": "cnhubert", "save_weight_dir": "SoVITS_weights_v2", "name": "voice",
            "version": version, "pretrain": None, "resume_step": None}


def reference_gpt_config(version: str) -> dict[str, Any]:
    """The official `s1longer(-v2).yaml` model section (from the reference) plus `data.max_sec`."""
    ref = _reference()
    model = (ref["gpt_other_versions_vs_v2"]["v1 (s1longer.yaml)"]["model_config"] if version == "v1"
             else ref["gpt_v2"]["model_config"])
    return {"model": dict(model), "data": {"max_sec": 54, "pad_val": 1024, "num_workers": 4},
            "train": {"exp_name": "voice", "if_dpo": False, "half_weights_save_dir": "GPT_weights_v2"}}


# ------------------------------------------------------------------------ tiny variants for tests

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_SOVITS = SoVITSConfig.load(CONFIGS / "sovits_tiny.json")
TINY_GPT = GPTConfig.load(CONFIGS / "gpt_tiny.json")
VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")
HEADERS = {"v1": b"PK", "v2": b"PK", "v2Pro": b"05", "v2ProPlus": b"06"}
"""What the official trainer writes over the zip magic (v1/v2 fine-tunes stay plain zips)."""


def tiny_sovits(version: str) -> SoVITSConfig:
    """Tiny configs carrying each version's fingerprint (phone table / ref bins / sv / kernel 20)."""
    if version == "v1":
        return dataclasses.replace(TINY_SOVITS, version="v1", n_symbols=322, ref_enc_in=1025)
    if version == "v2":
        return dataclasses.replace(TINY_SOVITS)
    plus = {"upsample_kernel_sizes": [20, 16, 8, 2, 2]} if version == "v2ProPlus" else {}
    return dataclasses.replace(TINY_SOVITS, version=version, use_sv=True, sv_dim=64, gin_channels=48, **plus)


def as_official(cfg: Any, with_posterior: bool = False) -> Any:
    """What an official file can carry: fields it has no slot for come back as the official constants
    (MRTE heads, SSL model name, GPT position table; the posterior depth when enc_q was dropped)."""
    if isinstance(cfg, SoVITSConfig):
        fixed = {} if with_posterior else {"posterior_layers": 16}
        return dataclasses.replace(cfg, mrte_heads=4, content_encoder="chinese-hubert-base", **fixed)
    return dataclasses.replace(cfg, max_positions=4000)


def write_tiny_sovits(path: Path, cfg: SoVITSConfig, with_posterior: bool = False, seed: int = 0,
                      **kwargs: Any) -> tuple[Path, dict[str, torch.Tensor]]:
    """Random official-layout SoVITS file for `cfg` with its version's header; returns (path, fp16 weights)."""
    weight = random_weights(sovits_shapes(cfg, with_posterior), seed=seed)
    kwargs.setdefault("header", HEADERS.get(cfg.version, b"PK"))
    return write_official_sovits(path, weight, official_sovits_hparams(cfg), **kwargs), weight
