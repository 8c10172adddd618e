from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from training.gpt_check import UnitMap, check_gpt, edit_distance


def _run_cli(argv: list[str]) -> int:
    from scripts import eval_cmds

    parser = argparse.ArgumentParser()
    eval_cmds.register(parser.add_subparsers())
    args = parser.parse_args(["eval-gpt", *argv])
    return args.func(args)


@pytest.mark.parametrize(("a", "b", "dist"), [
    ([], [], 0), ([1, 2, 3], [], 3), ([], [4], 1), ([1, 2, 3], [1, 2, 3], 0),
    ([1, 2, 3], [1, 3], 1), ([1, 2, 3], [3, 2, 1], 2), ([5, 6], [6, 5, 6], 1),
])
def test_edit_distance(a, b, dist):
    assert edit_distance(a, b) == dist == edit_distance(b, a)


def test_units_collapse_repeats_and_map_phone_states(tmp_path: Path):
    from gpt_sovits.phone_align import PhoneAlignFeatureExtractor

    assert UnitMap().units([3, 3, 4, 3, 3]) == [3, 4, 3]
    folder = PhoneAlignFeatureExtractor().save(tmp_path / "aligner")
    phones = UnitMap.from_aligner(folder)
    assert phones.group == 3 and phones.drop == frozenset({0})  # SIL is phone 0
    # SIL states 0-2 vanish; 3 states of phone 1 become one unit, a later repeat of phone 1 another
    assert phones.units([0, 1, 3, 4, 5, 2, 6, 7, 3]) == [1, 2, 1]


def test_gpt_check_scores_a_random_gpt_low_and_the_true_tokens_perfect(
        slt_dataset, tiny_base, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    ds, _ = slt_dataset
    gpt, _ = tiny_base
    out = tmp_path / "gpt.json"
    assert _run_cli([str(ds.root), "--gpt", str(gpt), "-n", "3", "--top-k", "5", "-o", str(out)]) == 0
    assert "token error rate" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert len(report["rows"]) == 3 and report["sampling"]["top_k"] == 5
    assert report["sampling"]["repetition_penalty"] == 1.35  # the tiny config recommends nothing
    assert report["error_rate"] > 0.5  # random weights do not know the utterances

    # a GPT that returns each utterance's own tokens scores 0 with length ratio 1
    from gpt_sovits.engine import Decoder

    truth = {tuple(ds.load_features(it)["phones"].tolist()): ds.load_features(it)["semantic"]
             for it in ds.require_items()}
    monkeypatch.setattr(Decoder, "generate", lambda self, reqs, sampling, **kw: [truth[tuple(r.phones.tolist())]
                                                                                for r in reqs])
    perfect = check_gpt(gpt, ds.root, n=3)
    assert perfect.error_rate() == 0.0 and perfect.length_ratios() == [1.0, 1.0, 1.0]


def test_gpt_check_refuses_missing_weights(slt_dataset, tmp_path: Path) -> None:
    from gpt_sovits.errors import GSVError

    with pytest.raises(GSVError):
        check_gpt(tmp_path / "missing.safetensors", slt_dataset[0].root, n=1)
