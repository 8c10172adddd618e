"""Our checkpoint format, and loading every supported file strictly into our model classes."""
from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from gpt_sovits.checkpoint import (
    detect,
    export_official_gpt,
    export_official_sovits,
    load_checkpoint,
    load_gpt,
    load_sovits,
    native_paths,
    read_state,
    save_gpt,
    save_sovits,
)
from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.errors import CheckpointError

try:
    from . import official_ckpt_factory as factory
except ImportError:  # tests/ is not a package: pytest puts this folder on sys.path
    import official_ckpt_factory as factory

CONFIGS, TINY_GPT = factory.CONFIGS, factory.TINY_GPT
VERSIONS, HEADERS = factory.VERSIONS, factory.HEADERS
tiny_sovits, as_official, write_tiny_sovits = factory.tiny_sovits, factory.as_official, factory.write_tiny_sovits


def _t2s() -> Any:
    return pytest.importorskip("gpt_sovits.t2s").T2SModel


def _synth() -> Any:
    return pytest.importorskip("gpt_sovits.sovits.model").SynthesizerTrn


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------- our format


def _safetensors_layout(path: Path) -> tuple[dict[str, Any], int]:
    """Parse the file by hand: u64 header length, JSON header, then exactly the tensor bytes."""
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    return header, len(blob) - 8 - n


def test_native_save_is_safetensors_plus_json_without_pickle(tmp_path: Path) -> None:
    state = factory.random_weights(factory.gpt_shapes(TINY_GPT), dtype=torch.float32)
    weights = save_gpt(state, TINY_GPT, tmp_path / "voice" / "gpt", info={"epoch": 3, "note": "unit"})
    sidecar = tmp_path / "voice" / "gpt.json"
    assert weights == tmp_path / "voice" / "gpt.safetensors" and sidecar.is_file()

    meta = json.loads(sidecar.read_text())
    assert meta == {"kind": "gpt", "format_version": 1, "config": TINY_GPT.to_dict(),
                    "info": {"epoch": 3, "note": "unit"}}
    header, payload = _safetensors_layout(weights)
    embedded = header.pop("__metadata__")
    assert all(isinstance(v, str) for v in embedded.values())  # the safetensors rule
    assert {k: json.loads(v) for k, v in embedded.items() if k in ("config", "info")} == {
        "config": meta["config"], "info": meta["info"]}
    assert (embedded["kind"], embedded["format_version"]) == ("gpt", "1")
    assert set(header) == set(state)
    assert payload == max(v["data_offsets"][1] for v in header.values())  # nothing but tensor bytes
    assert payload == sum(t.numel() * t.element_size() for t in state.values())
    assert not any(p.name.endswith(".tmp") for p in weights.parent.iterdir())


@pytest.mark.parametrize("name", ("gpt", "gpt.safetensors", "gpt.json"))
def test_native_round_trip_is_bit_exact_under_every_path_spelling(tmp_path: Path, name: str) -> None:
    state = factory.random_weights(factory.gpt_shapes(TINY_GPT), seed=5, dtype=torch.float32)
    save_gpt(state, TINY_GPT, tmp_path / "gpt")
    back, info = read_state(tmp_path / name)
    assert _same_state(back, state)
    assert (info.kind, info.family, info.version, info.config) == ("gpt", "native", "v2", TINY_GPT)
    assert info.stored_dtype == "F32" and info.sidecar == tmp_path / "gpt.json"
    assert native_paths(tmp_path / name) == (tmp_path / "gpt.safetensors", tmp_path / "gpt.json")


def _without_metadata(blob: bytes, **replace: str) -> bytes:
    """The same safetensors file with `__metadata__` dropped, or with some of its values replaced."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    meta = header.pop("__metadata__")
    if replace:
        header["__metadata__"] = {**meta, **replace}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # keep the tensor data 8-byte aligned
    return struct.pack("<Q", len(text)) + text + blob[8 + n :]


def _gpt_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return factory.random_weights(factory.gpt_shapes(TINY_GPT), seed=seed, dtype=torch.float32)


def test_a_lone_safetensors_file_is_a_complete_checkpoint(tmp_path: Path) -> None:
    """The upload case: only the .safetensors travels (under any name), its config is embedded."""
    state = _gpt_state(seed=3)
    save_gpt(state, TINY_GPT, tmp_path / "out" / "gpt", info={"epoch": 7})
    lone = tmp_path / "upload" / "weights.ckpt"  # stored under another name, without a sidecar
    lone.parent.mkdir()
    lone.write_bytes((tmp_path / "out" / "gpt.safetensors").read_bytes())
    (tmp_path / "out" / "gpt.json").unlink()
    for path in (lone, tmp_path / "out" / "gpt.safetensors", tmp_path / "out" / "gpt"):
        back, info = read_state(path)
        assert _same_state(back, state)
        assert (info.kind, info.family, info.config, info.info, info.sidecar) == (
            "gpt", "native", TINY_GPT, {"epoch": 7}, None)
    model, cfg = load_gpt(lone)
    assert cfg == TINY_GPT and _same_state(model.state_dict(), state)


def test_sovits_config_is_embedded_too(tmp_path: Path) -> None:
    cfg = tiny_sovits("v2ProPlus")
    state = factory.random_weights(factory.sovits_shapes(cfg, with_posterior=False), dtype=torch.float32)
    weights = save_sovits(state, cfg, tmp_path / "s", info={"source": "unit"}, dtype=torch.float16)
    (tmp_path / "s.json").unlink()
    info = detect(weights)
    assert (info.kind, info.version, info.config, info.stored_dtype) == ("sovits", "v2ProPlus", cfg, "F16")
    _, loaded_cfg = load_sovits(weights)
    assert loaded_cfg == cfg


def test_the_sidecar_wins_over_the_embedded_config(tmp_path: Path) -> None:
    weights = save_gpt(_gpt_state(), TINY_GPT, tmp_path / "g", info={"from": "save"})
    sidecar = tmp_path / "g.json"
    meta = json.loads(sidecar.read_text())
    meta["info"] = {"from": "edited sidecar"}
    sidecar.write_text(json.dumps(meta))
    info = detect(weights)
    assert info.info == {"from": "edited sidecar"} and info.sidecar == sidecar


def test_old_files_with_only_a_sidecar_still_load(tmp_path: Path) -> None:
    state = _gpt_state(seed=4)
    weights = save_gpt(state, TINY_GPT, tmp_path / "g")
    weights.write_bytes(_without_metadata(weights.read_bytes()))
    back, info = read_state(weights)
    assert _same_state(back, state) and info.sidecar == tmp_path / "g.json"


@pytest.mark.parametrize(("replace", "match"), [
    ({"format_version": "9"}, "format_version 9"),
    ({"config": "{not json"}, "embedded checkpoint config is corrupt"),
    ({"kind": "vocoder"}, "not checkpoint metadata"),
    ({"config": '{"n_layers_typo": 1}'}, "does not fit GPTConfig"),
])
def test_bad_embedded_metadata_is_a_clear_error(tmp_path: Path, replace: dict[str, str], match: str) -> None:
    weights = save_gpt(_gpt_state(), TINY_GPT, tmp_path / "g")
    (tmp_path / "g.json").unlink()
    weights.write_bytes(_without_metadata(weights.read_bytes(), **replace))
    with pytest.raises(CheckpointError, match=match) as err:
        read_state(weights)
    assert "embedded" in str(err.value)


def test_native_fp16_save(tmp_path: Path) -> None:
    cfg = tiny_sovits("v2Pro")
    state = factory.random_weights(factory.sovits_shapes(cfg, with_posterior=True), dtype=torch.float32)
    save_sovits(state, cfg, tmp_path / "s", dtype=torch.float16)
    back, info = read_state(tmp_path / "s.safetensors")
    assert _same_state(back, {k: v.half() for k, v in state.items()})
    assert (info.kind, info.version, info.has_posterior, info.stored_dtype) == ("sovits", "v2Pro", True, "F16")


def test_native_save_overwrites_atomically(tmp_path: Path) -> None:
    first = factory.random_weights(factory.gpt_shapes(TINY_GPT), seed=1, dtype=torch.float32)
    second = factory.random_weights(factory.gpt_shapes(TINY_GPT), seed=2, dtype=torch.float32)
    save_gpt(first, TINY_GPT, tmp_path / "g")
    save_gpt(second, TINY_GPT, tmp_path / "g", info={"step": 2})
    back, info = read_state(tmp_path / "g")
    assert _same_state(back, second) and info.info == {"step": 2}


def test_native_errors_are_clear(tmp_path: Path) -> None:
    state = factory.random_weights(factory.gpt_shapes(TINY_GPT), dtype=torch.float32)
    save_gpt(state, TINY_GPT, tmp_path / "g")
    sidecar, weights = tmp_path / "g.json", tmp_path / "g.safetensors"
    good_meta, good_weights = sidecar.read_text(), weights.read_bytes()

    cases: dict[str, tuple[str, bytes]] = {
        "newer format": (good_meta.replace('"format_version": 1', '"format_version": 9'), good_weights),
        "unknown config key": (good_meta.replace('"n_layer"', '"n_layers_typo"'), good_weights),
        "not json": ("{not json", good_weights),
        "wrong kind": (good_meta.replace('"kind": "gpt"', '"kind": "vocoder"'), good_weights),
        "truncated weights": (good_meta, good_weights[: len(good_weights) // 2]),
    }
    for name, (meta, blob) in cases.items():
        sidecar.write_text(meta)
        weights.write_bytes(blob)
        with pytest.raises(CheckpointError) as err:
            read_state(tmp_path / "g")
        assert type(err.value) is CheckpointError, name
    sidecar.unlink()
    weights.write_bytes(_without_metadata(good_weights))  # a file saved before the config was embedded
    with pytest.raises(CheckpointError, match="need their .json"):
        detect(weights)
    with pytest.raises(CheckpointError, match="not found"):
        read_state(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="JSON"):
        save_gpt(state, TINY_GPT, tmp_path / "h", info={"bad": object()})
    with pytest.raises(ValueError, match="dtype"):
        save_gpt(state, TINY_GPT, tmp_path / "h", dtype=torch.int8)


# -------------------------------------------------------------------------- GPT into T2SModel


def _tiny_gpt(version: str) -> GPTConfig:
    return dataclasses.replace(TINY_GPT, phoneme_vocab_size=512 if version == "v1" else 732)


@pytest.mark.parametrize("version", ("v1", "v2"))
def test_official_gpt_loads_strictly_into_t2s(tmp_path: Path, version: str) -> None:
    t2s_cls = _t2s()
    cfg = _tiny_gpt(version)
    weight = factory.random_weights(factory.gpt_shapes(cfg), seed=7)
    path = factory.write_official_gpt(tmp_path / "g.ckpt", weight, factory.official_gpt_config(cfg))
    model, got = load_gpt(path)
    assert isinstance(model, t2s_cls) and not model.training and got == as_official(cfg)
    assert _same_state(model.state_dict(), {k: v.float() for k, v in weight.items()})


def test_gpt_native_round_trip_through_the_model(tmp_path: Path) -> None:
    t2s_cls = _t2s()
    model = t2s_cls(TINY_GPT)
    save_gpt(model, TINY_GPT, tmp_path / "gpt", info={"epoch": 1})
    loaded, cfg = load_gpt(tmp_path / "gpt.safetensors")
    assert cfg == TINY_GPT and _same_state(loaded.state_dict(), model.state_dict())
    again, cfg2 = load_checkpoint(tmp_path / "gpt")
    assert isinstance(again, t2s_cls) and cfg2 == TINY_GPT
    half, _ = load_gpt(tmp_path / "gpt", dtype=torch.float16)
    assert all(p.dtype == torch.float16 for p in half.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_official_files_load_onto_cuda_in_half(tmp_path: Path) -> None:
    _t2s(), _synth()
    gpt = factory.write_official_gpt(tmp_path / "g.ckpt", factory.random_weights(factory.gpt_shapes(TINY_GPT)),
                                     factory.official_gpt_config(TINY_GPT))
    sovits, _ = write_tiny_sovits(tmp_path / "s.pth", tiny_sovits("v2Pro"))
    for model in (load_gpt(gpt, "cuda", torch.float16)[0], load_sovits(sovits, "cuda", torch.float16)[0]):
        assert all(p.is_cuda and p.dtype == torch.float16 for p in model.parameters())


def test_gpt_official_export_then_load(tmp_path: Path) -> None:
    t2s_cls = _t2s()
    cfg = dataclasses.replace(TINY_GPT, ffn_dim=4 * TINY_GPT.hidden_dim, bert_dim=1024)
    model = t2s_cls(cfg)
    path = export_official_gpt(model, cfg, tmp_path / "voice-e15.ckpt")
    loaded, got = load_gpt(path)
    assert got == cfg
    assert _same_state(loaded.state_dict(), {k: v.half().float() for k, v in model.state_dict().items()})


def test_a_config_that_does_not_fit_the_weights_names_the_keys(tmp_path: Path) -> None:
    _t2s()
    state = factory.random_weights(factory.gpt_shapes(TINY_GPT), dtype=torch.float32)
    save_gpt(state, dataclasses.replace(TINY_GPT, n_layer=3), tmp_path / "g")
    with pytest.raises(CheckpointError, match=r"missing \d+ \['h\.layers\.2\."):
        load_gpt(tmp_path / "g")


def test_a_config_the_model_rejects_is_a_checkpoint_error(tmp_path: Path) -> None:
    _t2s()
    state = factory.random_weights(factory.gpt_shapes(TINY_GPT), dtype=torch.float32)
    save_gpt(state, dataclasses.replace(TINY_GPT, eos=3), tmp_path / "g")  # EOS must be the last token
    with pytest.raises(CheckpointError, match="cannot build the model"):
        load_gpt(tmp_path / "g")


def test_wrong_loader_for_the_kind(tmp_path: Path) -> None:
    path, _ = write_tiny_sovits(tmp_path / "s.pth", tiny_sovits("v2"))
    with pytest.raises(CheckpointError, match="load_sovits"):
        load_gpt(path)


# -------------------------------------------------------------------- SoVITS into SynthesizerTrn


@pytest.mark.parametrize("version", VERSIONS)
def test_official_sovits_finetune_loads_strictly(tmp_path: Path, version: str) -> None:
    synth_cls = _synth()
    cfg = tiny_sovits(version)
    path, weight = write_tiny_sovits(tmp_path / "s.pth", cfg, seed=11)
    model, got = load_sovits(path)
    assert isinstance(model, synth_cls) and not model.training
    assert got == as_official(cfg) and got.version == version
    assert _same_state(model.state_dict(), {k: v.float() for k, v in weight.items()})
    with pytest.raises(CheckpointError, match="no posterior encoder"):
        load_sovits(path, with_posterior=True)


def test_pretrained_sovits_with_posterior_keeps_or_drops_it(tmp_path: Path) -> None:
    _synth()
    cfg = tiny_sovits("v2")
    path, weight = write_tiny_sovits(tmp_path / "s2G.pth", cfg, with_posterior=True)
    full, _ = load_sovits(path, with_posterior=True)
    assert _same_state(full.state_dict(), {k: v.float() for k, v in weight.items()})
    lean, _ = load_sovits(path)  # inference: posterior dropped, the rest loaded strictly
    assert _same_state(lean.state_dict(), {k: v.float() for k, v in weight.items() if not k.startswith("enc_q.")})
    model, got = load_checkpoint(path)
    assert not any(k.startswith("enc_q.") for k in model.state_dict()) and got.version == "v2"


@pytest.mark.parametrize("version", ("v1", "v2ProPlus"))
def test_sovits_native_and_official_export_round_trips(tmp_path: Path, version: str) -> None:
    synth_cls = _synth()
    cfg = tiny_sovits(version)
    model = synth_cls(cfg, with_posterior=True)
    save_sovits(model, cfg, tmp_path / "native")
    back, got = load_sovits(tmp_path / "native", with_posterior=True)
    assert got == cfg and _same_state(back.state_dict(), model.state_dict())

    path = export_official_sovits(model, cfg, tmp_path / "voice_e8_s96.pth")
    assert path.read_bytes()[:2] == HEADERS[version]
    lean, got2 = load_sovits(path)
    assert got2 == cfg
    expected = {k: v.half().float() for k, v in model.state_dict().items() if not k.startswith("enc_q.")}
    assert _same_state(lean.state_dict(), expected)


@pytest.fixture(scope="session")
def full_size_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Lazily written v2-size official files (random fp16 from the reference shapes), one each."""
    root = tmp_path_factory.mktemp("official_full")
    made: dict[tuple[str, str, bool], Path] = {}

    def get(kind: str, version: str, with_posterior: bool = False) -> Path:
        key = (kind, version, with_posterior)
        if key not in made:
            if kind == "gpt":
                weight = factory.random_weights(factory.reference_gpt_shapes(version), seed=1)
                made[key] = factory.write_official_gpt(root / f"{version}.ckpt", weight,
                                                       factory.reference_gpt_config(version))
            else:
                weight = factory.random_weights(factory.reference_sovits_shapes(version, with_posterior), seed=2)
                made[key] = factory.write_official_sovits(
                    root / f"{version}_{with_posterior}.pth", weight, factory.reference_sovits_hparams(version),
                    header=HEADERS[version] if not with_posterior else b"PK")
        return made[key]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("version", ("v1", "v2"))
def test_full_size_official_gpt_maps_to_our_config(full_size_files: Any, version: str) -> None:
    info = detect(full_size_files("gpt", version))
    assert info.version == version and info.config == GPTConfig.load(CONFIGS / f"gpt_{version}.json")


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_full_size_official_sovits_maps_to_our_config(full_size_files: Any, version: str) -> None:
    info = detect(full_size_files("sovits", version))
    assert info.version == version and not info.has_posterior
    assert info.config == SoVITSConfig.load(CONFIGS / f"sovits_{version.lower()}.json")


# ------------------------------------------------------- full-size official layouts, loaded once


@pytest.mark.slow
@pytest.mark.parametrize("version", ("v1", "v2"))
def test_full_size_official_gpt_loads_strictly(full_size_files: Any, version: str) -> None:
    _t2s()
    model, cfg = load_gpt(full_size_files("gpt", version))
    assert cfg == GPTConfig.load(CONFIGS / f"gpt_{version}.json")
    n_params = sum(p.numel() for p in model.parameters())
    ref = factory._reference()
    expected = (ref["gpt_v2"]["num_parameters"] if version == "v2"
                else ref["gpt_other_versions_vs_v2"]["v1 (s1longer.yaml)"]["num_parameters"])
    assert n_params == expected


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_full_size_official_sovits_finetune_loads_strictly(full_size_files: Any, version: str) -> None:
    _synth()
    model, cfg = load_sovits(full_size_files("sovits", version))
    assert cfg == SoVITSConfig.load(CONFIGS / f"sovits_{version.lower()}.json")
    shapes = factory.reference_sovits_shapes(version)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes


@pytest.mark.slow
def test_full_size_pretrained_sovits_with_posterior(full_size_files: Any) -> None:
    _synth()
    model, _ = load_sovits(full_size_files("sovits", "v2", with_posterior=True), with_posterior=True)
    ref = factory._reference()["sovits_v2"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_parameters"]
