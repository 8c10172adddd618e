"""Key-for-key, shape-for-shape compatibility with the official SynthesizerTrn state_dicts.

data/sovits_reference_shapes.json lists every key and shape of the official v2 model (taken from
the shared reference, which built it with the upstream code) plus diffs for v1, v2Pro and
v2ProPlus. Full-size models are built on the meta device, so these checks allocate nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gpt_sovits.config import SoVITSConfig
from gpt_sovits.sovits.model import SynthesizerTrn

from .conftest import CONFIGS

REFERENCE = Path(__file__).parent / "data" / "sovits_reference_shapes.json"
VARIANTS = ["v2", "v1", "v2pro", "v2proplus"]


def _reference() -> dict:
    return json.loads(REFERENCE.read_text())


def expected_shapes(variant: str) -> tuple[dict[str, list[int]], int]:
    """Official key -> shape map and parameter count for one variant."""
    ref = _reference()
    shapes = dict(ref["v2"]["state_dict"])
    if variant == "v2":
        return shapes, ref["v2"]["num_parameters"]
    diff = ref["diffs_vs_v2"][variant]
    for key in diff["only_in_v2"]:
        shapes.pop(key)
    shapes.update(diff["only_in_other"])
    shapes.update({k: v["other"] for k, v in diff["shape_differs"].items()})
    return shapes, diff["num_parameters"]


def build_meta(variant: str, with_posterior: bool = True) -> SynthesizerTrn:
    cfg = SoVITSConfig.load(CONFIGS / f"sovits_{variant}.json")
    with torch.device("meta"):
        return SynthesizerTrn(cfg, with_posterior=with_posterior)


@pytest.mark.parametrize("variant", VARIANTS)
def test_keys_and_shapes_match_official(variant: str) -> None:
    model = build_meta(variant)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    want, n_params = expected_shapes(variant)
    assert sorted(set(got) - set(want)) == []
    assert sorted(set(want) - set(got)) == []
    assert {k: s for k, s in got.items() if s != want[k]} == {}
    assert sum(p.numel() for p in model.parameters()) == n_params


@pytest.mark.parametrize("variant", VARIANTS)
def test_strict_load_of_official_shaped_dict(variant: str) -> None:
    want, _ = expected_shapes(variant)
    state = {k: torch.empty(s, device="meta") for k, s in want.items()}
    model = build_meta(variant)
    result = model.load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("variant", VARIANTS)
def test_inference_files_without_enc_q_load_strictly(variant: str) -> None:
    want, _ = expected_shapes(variant)
    state = {k: torch.empty(s, device="meta") for k, s in want.items() if "enc_q" not in k}
    if variant == "v2":
        ref = _reference()["v2"]
        assert len(state) == 776 - 103
        assert sum(torch.Size(s).numel() for k, s in want.items()
                   if "enc_q" not in k and "quantizer" not in k) == ref["num_parameters_excluding_enc_q"]
    build_meta(variant, with_posterior=False).load_state_dict(state, strict=True, assign=True)
    with pytest.raises(RuntimeError, match="enc_q"):
        build_meta(variant, with_posterior=True).load_state_dict(state, strict=True, assign=True)


def test_half_precision_weights_load_into_float_model(tiny_cfg: SoVITSConfig) -> None:
    """Official files are fp16; load_state_dict must upcast them into our fp32 parameters."""
    torch.manual_seed(1)
    source = SynthesizerTrn(tiny_cfg, with_posterior=False)
    half = {k: v.half() for k, v in source.state_dict().items()}
    target = SynthesizerTrn(tiny_cfg, with_posterior=False)
    target.load_state_dict(half, strict=True)
    w = target.dec.ups[0].weight_v
    assert w.dtype == torch.float32
    assert torch.equal(w, source.dec.ups[0].weight_v.half().float())


def test_decoder_keys_equal_standalone_vocoder(tiny_cfg: SoVITSConfig) -> None:
    """`dec.*` of a SoVITS file is exactly a `vocoder.Model` state_dict."""
    import vocoder

    model = SynthesizerTrn(tiny_cfg, with_posterior=False)
    dec_state = {k[4:]: v for k, v in model.state_dict().items() if k.startswith("dec.")}
    gen = vocoder.Model(tiny_cfg.vocoder_config())
    gen.load_state_dict(dec_state, strict=True)
    assert set(gen.state_dict()) == set(dec_state)
