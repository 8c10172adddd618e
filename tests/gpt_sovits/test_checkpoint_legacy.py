"""Official GPT-SoVITS files: safe decoding, version detection, config mapping, refusal, export."""
from __future__ import annotations

import dataclasses
import io
import os
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from gpt_sovits.checkpoint import detect, load_checkpoint, load_sovits, read_state
from gpt_sovits.checkpoint_legacy import (
    EMBEDDED_CONFIG_KEY,
    V3V4_MESSAGE,
    export_official_gpt,
    export_official_sovits,
    read_official_gpt,
    read_official_sovits,
)
from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.errors import CheckpointError, UnsupportedCheckpointError

try:
    from . import official_ckpt_factory as factory
except ImportError:  # tests/ is not a package: pytest puts this folder on sys.path
    import official_ckpt_factory as factory

CONFIGS = factory.CONFIGS
TINY_GPT = factory.TINY_GPT
TINY_SOVITS = factory.TINY_SOVITS
VERSIONS, HEADERS = factory.VERSIONS, factory.HEADERS
tiny_sovits, as_official, write_tiny_sovits = factory.tiny_sovits, factory.as_official, factory.write_tiny_sovits


# ---------------------------------------------------------------------------- the test factory


@pytest.mark.parametrize("version", ("v1", "v2"))
def test_derived_gpt_layout_matches_official_reference(version: str) -> None:
    ref = {k.removeprefix("model."): s for k, s in factory.reference_gpt_shapes(version).items()}
    assert factory.gpt_shapes(GPTConfig.load(CONFIGS / f"gpt_{version}.json")) == ref


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("with_posterior", (False, True))
def test_derived_sovits_layout_matches_official_reference(version: str, with_posterior: bool) -> None:
    cfg = SoVITSConfig.load(CONFIGS / f"sovits_{version.lower()}.json")
    assert factory.sovits_shapes(cfg, with_posterior) == factory.reference_sovits_shapes(version, with_posterior)


# ------------------------------------------------------------------------------- GPT .ckpt files


@pytest.mark.parametrize("version", ("v1", "v2"))
def test_official_gpt_tiny_is_read_with_config_and_fp32_weights(tmp_path: Path, version: str) -> None:
    cfg = dataclasses.replace(TINY_GPT, phoneme_vocab_size=512 if version == "v1" else 732)
    weight = factory.random_weights(factory.gpt_shapes(cfg), seed=3)
    path = factory.write_official_gpt(tmp_path / "voice-e15.ckpt", weight, factory.official_gpt_config(cfg))

    state, got = read_official_gpt(path)
    assert got == as_official(cfg)
    assert set(state) == set(weight)  # `model.` prefix stripped
    assert all(state[k].dtype == torch.float32 and torch.equal(state[k], weight[k].float()) for k in weight)
    info = detect(path)
    assert (info.kind, info.family, info.version, info.header) == ("gpt", "official", version, "PK")
    assert info.stored_dtype == "float16" and info.info == "GPT-e15"


def test_gpt_shapes_override_a_stale_config(tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY_GPT, phoneme_vocab_size=512)
    weight = factory.random_weights(factory.gpt_shapes(cfg))
    stale = factory.official_gpt_config(dataclasses.replace(cfg, phoneme_vocab_size=732, n_layer=24, hidden_dim=512))
    _, got = read_official_gpt(factory.write_official_gpt(tmp_path / "g.ckpt", weight, stale))
    assert (got.phoneme_vocab_size, got.n_layer, got.hidden_dim, got.n_head) == (512, cfg.n_layer, 64, cfg.n_head)


# ------------------------------------------------------------------------------ SoVITS .pth files


@pytest.mark.parametrize("version", VERSIONS)
def test_official_sovits_finetune_detected_with_version_and_config(tmp_path: Path, version: str) -> None:
    cfg = tiny_sovits(version)
    path, weight = write_tiny_sovits(tmp_path / "voice_e8_s96.pth", cfg)
    assert "utils" not in sys.modules  # the throwaway module only existed while writing

    info = detect(path)
    assert (info.kind, info.family, info.version) == ("sovits", "official", version)
    assert info.header == HEADERS[version].decode() and not info.has_posterior
    assert info.config == as_official(cfg) and info.stored_dtype == "float16"
    state, got_cfg, got_version = read_official_sovits(path)
    assert got_version == version and got_cfg == info.config
    assert all(state[k].dtype == torch.float32 and torch.equal(state[k], weight[k].float()) for k in weight)


def test_plain_dict_config_of_newer_official_branches_is_read(tmp_path: Path) -> None:
    cfg = tiny_sovits("v2Pro")
    path, _ = write_tiny_sovits(tmp_path / "pro.pth", cfg, as_hparams=False, header=b"PK")
    info = detect(path)
    assert info.version == "v2Pro" and info.config == as_official(cfg) and info.header == "PK"


def test_pretrained_generator_with_posterior(tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY_SOVITS, spec_channels=513, posterior_layers=3)
    path, weight = write_tiny_sovits(tmp_path / "s2G.pth", cfg, with_posterior=True)
    state, got, _ = read_official_sovits(path)
    assert any(k.startswith("enc_q.") for k in state) and set(state) == set(weight)
    # HParams say filter_length 2048 (1025 bins); the posterior's input conv says 513: weights win
    assert (got.spec_channels, got.posterior_layers) == (513, 3)
    assert detect(path).has_posterior


def test_weights_win_over_header_and_hparams(tmp_path: Path) -> None:
    cfg = tiny_sovits("v2")
    lie = dataclasses.replace(cfg, version="v2ProPlus", gin_channels=1024, hidden_channels=192, n_layers=6,
                              upsample_initial_channel=768, filter_channels=768, n_heads=4, kernel_size=5,
                              inter_channels=192, resblock_kernel_sizes=[3, 7, 11],
                              resblock_dilation_sizes=[[1, 3, 5]] * 3, upsample_kernel_sizes=[20, 16, 8, 2, 2])
    weight = factory.random_weights(factory.sovits_shapes(cfg))
    path = factory.write_official_sovits(tmp_path / "x.pth", weight, factory.official_sovits_hparams(lie), header=b"06")
    info = detect(path)
    assert info.version == "v2" and info.header == "06"
    assert info.config == as_official(cfg)


def test_hparams_are_never_resolved_through_a_utils_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = write_tiny_sovits(tmp_path / "v.pth", tiny_sovits("v2"))
    touched: list[str] = []
    trap = types.ModuleType("utils")

    class HParams:  # a real `utils.HParams` would run code of the file author's choosing
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            touched.append("new")
            return super().__new__(cls)

        def __setstate__(self, state: Any) -> None:
            touched.append("setstate")

    HParams.__module__ = "utils"
    trap.HParams = HParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "utils", trap)
    _, cfg, _ = read_official_sovits(path)
    assert touched == [] and cfg.hidden_channels == TINY_SOVITS.hidden_channels


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.mkdir, (str(self.marker),))


def test_code_in_a_pickle_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": {"enc_p.x": torch.zeros(1)}, "config": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match=r"not weights \(\w+\.mkdir\)"):
        detect(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------- v3/v4 refusal


def _assert_refused(path: Path) -> None:
    for call in (detect, read_state, read_official_sovits, load_checkpoint, load_sovits):
        with pytest.raises(UnsupportedCheckpointError) as err:
            call(path)
        assert V3V4_MESSAGE in str(err.value) and err.value.code == "unsupported_checkpoint"


@pytest.mark.parametrize("header", (b"02", b"03", b"04"))
def test_v3_v4_headers_are_refused(tmp_path: Path, header: bytes) -> None:
    path, _ = write_tiny_sovits(tmp_path / "v3.pth", tiny_sovits("v2"), header=header)
    _assert_refused(path)


@pytest.mark.parametrize("variant", ("cfm", "no_text_embedding", "lora"))
def test_v3_v4_weights_are_refused(tmp_path: Path, variant: str) -> None:
    weight = factory.random_weights(factory.sovits_shapes(tiny_sovits("v2")))
    extra: dict[str, Any] = {}
    if variant == "cfm":  # SynthesizerTrnV3: a DiT decoder and a bridge instead of flow + HiFi-GAN
        weight = {k: v for k, v in weight.items() if not k.startswith(("dec.", "flow."))}
        weight.update({"cfm.estimator.proj_out.weight": torch.zeros(4, 4), "bridge.0.weight": torch.zeros(4, 4, 1)})
    elif variant == "no_text_embedding":
        del weight["enc_p.text_embedding.weight"]
    else:
        extra["lora_rank"] = 32
    path = tmp_path / f"{variant}.pth"
    torch.save({"weight": {k: v.half() for k, v in weight.items()}, "config": {}, "info": "x", **extra}, path)
    _assert_refused(path)


# --------------------------------------------------------------------------- broken or foreign


def _broken_files(tmp_path: Path) -> dict[str, Path]:
    good, _ = write_tiny_sovits(tmp_path / "good.pth", tiny_sovits("v2Pro"))
    data = good.read_bytes()
    files = {
        "empty": b"",
        "garbage": os.urandom(4096),
        "text": b"just some text, not a checkpoint\n" * 20,
        "truncated": data[: len(data) // 2],
        "tail_cut": data[:-100],
        "header_only": data[:4],
    }
    out = {name: tmp_path / f"{name}.pth" for name in files}
    for name, blob in files.items():
        out[name].write_bytes(blob)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("readme.txt", "a zip, but not a torch file")
    (out_zip := tmp_path / "plain.zip.pth").write_bytes(zbuf.getvalue())
    out["plain_zip"] = out_zip
    torch.save(torch.zeros(3), out_tensor := tmp_path / "tensor.pth")
    out["bare_tensor"] = out_tensor
    torch.save({"model": {"a": torch.zeros(1)}}, out_noweight := tmp_path / "noweight.pth")
    out["no_weight"] = out_noweight
    torch.save({"weight": {"discriminators.0.convs.0.weight_v": torch.zeros(2, 1, 15)}}, out_d := tmp_path / "D.pth")
    out["discriminator"] = out_d
    return out


def test_corrupt_truncated_and_foreign_files_raise_checkpoint_error(tmp_path: Path) -> None:
    for name, path in _broken_files(tmp_path).items():
        for call in (detect, read_state, load_checkpoint):
            with pytest.raises(CheckpointError) as err:
                call(path)
            assert type(err.value) is CheckpointError, name  # not the v3/v4 refusal, not a raw error
            assert str(path) in str(err.value), name


def test_missing_file_has_its_own_code(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        detect(tmp_path / "nope.pth")
    assert err.value.code == "checkpoint_not_found"


def test_gpt_reader_rejects_a_sovits_file_and_back(tmp_path: Path) -> None:
    sovits, _ = write_tiny_sovits(tmp_path / "s.pth", tiny_sovits("v2"))
    gpt = factory.write_official_gpt(tmp_path / "g.ckpt", factory.random_weights(factory.gpt_shapes(TINY_GPT)),
                                     factory.official_gpt_config(TINY_GPT))
    with pytest.raises(CheckpointError, match="not a GPT"):
        read_official_gpt(sovits)
    with pytest.raises(CheckpointError, match="not a SoVITS"):
        read_official_sovits(gpt)


# ------------------------------------------------------------------------------------ exporters

OFFICIAL_GPT_TINY = dataclasses.replace(TINY_GPT, ffn_dim=4 * TINY_GPT.hidden_dim, bert_dim=1024, max_positions=2000)


def test_export_official_gpt_round_trip(tmp_path: Path) -> None:
    state = factory.random_weights(factory.gpt_shapes(OFFICIAL_GPT_TINY), dtype=torch.float32)
    path = export_official_gpt(state, OFFICIAL_GPT_TINY, tmp_path / "voice-e15.ckpt", info="GPT-e15")
    raw = torch.load(path, weights_only=True)  # the official loader's view: plain containers only
    assert set(raw) == {"weight", "config", "info"} and raw["info"] == "GPT-e15"
    assert all(k.startswith("model.") and v.dtype == torch.float16 for k, v in raw["weight"].items())
    assert raw["config"]["data"]["max_sec"] == OFFICIAL_GPT_TINY.max_sec
    official_model_keys = set(factory._reference()["gpt_v2"]["model_config"])
    assert official_model_keys <= set(raw["config"]["model"])
    back, cfg = read_official_gpt(path)
    assert cfg == OFFICIAL_GPT_TINY  # exact, thanks to our embedded config
    assert all(torch.equal(back[k], state[k].half().float()) for k in state)


def test_export_official_gpt_refuses_what_upstream_cannot_build(tmp_path: Path) -> None:
    state = factory.random_weights(factory.gpt_shapes(TINY_GPT))
    with pytest.raises(CheckpointError, match="hard-codes"):
        export_official_gpt(state, TINY_GPT, tmp_path / "x.ckpt")  # tiny: ffn 2x, bert 32
    assert not (tmp_path / "x.ckpt").exists()


@pytest.mark.parametrize("version", VERSIONS)
def test_export_official_sovits_round_trip(tmp_path: Path, version: str) -> None:
    cfg = tiny_sovits(version)
    state = factory.random_weights(factory.sovits_shapes(cfg, with_posterior=True), dtype=torch.float32)
    path = export_official_sovits(state, cfg, tmp_path / "voice_e8_s96.pth")
    assert path.read_bytes()[:2] == HEADERS[version]  # upstream tells Pro models apart by this only
    info = detect(path)
    assert (info.version, info.has_posterior, info.config) == (version, False, cfg)
    back, _, _ = read_official_sovits(path)
    assert set(back) == {k for k in state if not k.startswith("enc_q.")}
    assert all(torch.equal(back[k], state[k].half().float()) for k in back)


def test_exported_sovits_config_fits_the_official_constructor(tmp_path: Path) -> None:
    cfg = tiny_sovits("v2")
    state = factory.random_weights(factory.sovits_shapes(cfg, with_posterior=True))
    path = export_official_sovits(state, cfg, tmp_path / "s.pth", keep_posterior=True)
    raw = torch.load(path, weights_only=True)
    official_model_keys = set(factory._reference()["sovits_v2"]["model_config"])
    assert set(raw["config"]["model"]) == official_model_keys  # SynthesizerTrn(**hps.model) must accept it
    assert raw["config"]["data"]["filter_length"] == cfg.filter_length and EMBEDDED_CONFIG_KEY in raw["config"]
    assert any(k.startswith("enc_q.") for k in raw["weight"])
