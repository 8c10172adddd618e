"""Evaluation metrics (WER/CER, similarity baseline, RTF) and `gsv eval` end to end on tiny models."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from gpt_sovits.audio import load_audio
from gpt_sovits.errors import ModelNotFoundError
from training.evaluate import (
    ErrorCount,
    EvalError,
    SimilarityJudge,
    baseline_similarity,
    char_errors,
    edit_distance,
    error_metric,
    load_voice,
    make_recognizer,
    normalize_text,
    word_errors,
)


def _pocketsphinx_missing() -> bool:
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.fixture(scope="module")
def judge() -> SimilarityJudge:
    try:
        return SimilarityJudge()
    except ModelNotFoundError as exc:
        pytest.skip(f"GE2E weights unavailable (pip install --no-deps resemblyzer): {exc}")


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("same", "same", 0), ("abcdef", "azced", 3)],
)
def test_edit_distance_on_strings(ref: str, hyp: str, expected: int) -> None:
    assert edit_distance(ref, hyp) == expected
    assert edit_distance(hyp, ref) == expected  # symmetric


def test_edit_distance_on_word_lists() -> None:
    assert edit_distance("the cat sat on the mat".split(), "the cat sat on mat".split()) == 1
    assert edit_distance("a b c".split(), "x a b c".split()) == 1
    assert edit_distance("a b c".split(), "a x c".split()) == 1


def test_word_errors_ignore_case_punctuation_and_digit_spelling() -> None:
    ref = "The hardware store on Main Street closes at 6 on Saturdays."
    assert word_errors(ref, "the hardware store on main street closes at six on saturdays") == ErrorCount(0, 11)
    count = word_errors(ref, "the hardware store on main street closed at six saturdays")
    assert count == ErrorCount(2, 11)  # one substitution, one deletion
    assert count.rate == pytest.approx(2 / 11)
    assert word_errors("It's 3 hours!", "it's three hours").errors == 0
    assert normalize_text("Well-known, 20 items.", "en") == "well known twenty items"


def test_word_error_rate_can_exceed_one_and_empty_refs() -> None:
    assert word_errors("yes", "no no no").rate == pytest.approx(3.0)
    assert ErrorCount(0, 0).rate == 0.0
    assert ErrorCount(2, 0).rate == 1.0
    assert (ErrorCount(1, 4) + ErrorCount(1, 6)).rate == pytest.approx(0.2)


def test_char_errors_for_chinese() -> None:
    assert char_errors("超市晚上十点关门。", "超市晚上10点关门") == ErrorCount(0, 8)
    assert char_errors("请把门关上，外面很冷。", "请把门关上外边很冷") == ErrorCount(1, 9)
    assert error_metric("zh") == "cer" and error_metric("en") == "wer"


def test_recogniser_choice_errors_are_clear() -> None:
    with pytest.raises(EvalError, match="--asr-model"):
        make_recognizer("whisper")
    with pytest.raises(EvalError, match="Unknown recogniser"):
        make_recognizer("kaldi")
    assert make_recognizer("none") is None


def test_load_voice_names_missing_files(tmp_path: Path) -> None:
    (tmp_path / "ref.txt").write_text("hello")
    with pytest.raises(EvalError, match="ref.flac, clone.flac, clone.list, test.txt"):
        load_voice(tmp_path)


def test_load_voice_reads_the_folder(voices_dir: Path) -> None:
    voice = load_voice(voices_dir / "en_slt")
    assert voice.lang == "en" and len(voice.sentences) == 10
    assert voice.ref_text.endswith(".")
    assert 55 < len(voice.own) / voice.own_sr < 65


@pytest.mark.skipif(_pocketsphinx_missing(), reason="pocketsphinx not installed (pip install pocketsphinx)")
def test_pocketsphinx_transcribes_a_real_recording(voices_dir: Path) -> None:
    recognizer = make_recognizer("pocketsphinx")
    wav, _ = load_audio(voices_dir / "en_allison" / "ref.flac", target_sr=16000)
    ref = (voices_dir / "en_allison" / "ref.txt").read_text().strip()
    hyp = recognizer.transcribe(wav, "en")
    assert word_errors(ref, hyp).rate < 0.3, hyp
    assert word_errors(ref, recognizer.transcribe(np.zeros(16000, np.float32), "en")).rate >= 0.9


def test_similarity_baseline_same_speaker_beats_different(voices_dir: Path, judge: SimilarityJudge) -> None:
    voices = [load_voice(voices_dir / name) for name in ("en_allison", "en_slt")]
    base = baseline_similarity(voices, judge)
    assert base.voices == ["en_allison", "en_slt"]
    for v in base.voices:
        assert base.same(v) > 0.85
        assert base.same(v) > base.bar(v) + 0.1
    summary = base.summary()
    assert summary["same_mean"] > summary["different_max"]
    assert -1.0 <= summary["different_mean"] <= 1.0


def test_silence_has_no_embedding(judge: SimilarityJudge) -> None:
    assert judge.embed(np.zeros(16000, np.float32), 16000) is None
    assert judge.similarity(None, np.ones(256)) is None


def _run_eval_cli(argv: list[str]) -> int:
    from scripts import eval_cmds

    parser = argparse.ArgumentParser()
    eval_cmds.register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


@pytest.mark.slow
def test_gsv_eval_end_to_end_on_random_tiny(tmp_path: Path, voices_dir: Path, judge: SimilarityJudge,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.checkpoint import save_gpt, save_sovits

    tuned = ModelBundle.random_tiny(seed=1)  # stands in for a per-voice fine-tune
    gpt = save_gpt(tuned.gpt, tuned.gpt_config, tmp_path / "ft_gpt")
    sovits = save_sovits(tuned.sovits, tuned.sovits_config, tmp_path / "ft_sovits")
    out = tmp_path / "report.json"
    asr = "none" if _pocketsphinx_missing() else "pocketsphinx"
    rc = _run_eval_cli(["--voices", str(voices_dir), "--random-tiny", "--max-sentences", "1", "--max-new-tokens", "30",
                        "--asr", asr, "--finetuned", f"en_slt={gpt},{sovits}", "--temperature", "0.8",
                        "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "zero-shot" in printed and "fine-tuned" in printed and "en_allison" in printed

    report = json.loads(out.read_text())
    assert report["decoding"]["temperature"] == 0.8 and report["decoding"]["top_k"] is None
    assert report["baseline"]["voices"] == ["en_allison", "en_slt"]
    rows = {(r["system"], r["voice"]): r for r in report["results"]}
    assert set(rows) == {("zero-shot", "en_allison"), ("zero-shot", "en_slt"),
                         ("fine-tuned", "en_allison"), ("fine-tuned", "en_slt")}
    assert rows[("fine-tuned", "en_allison")]["skipped"] == "no weights for this voice"
    for key in [("zero-shot", "en_allison"), ("zero-shot", "en_slt"), ("fine-tuned", "en_slt")]:
        row = rows[key]
        assert row["skipped"] is None and len(row["sentences"]) == 1
        assert row["sampling"] == {"top_k": 15, "repetition_penalty": 1.35, "grammar": False}  # tiny configs recommend nothing
        sentence = row["sentences"][0]
        assert sentence["error"] is None
        assert 0 < sentence["audio_seconds"] <= 30 * 0.04 + 1e-6
        assert row["rtf"] > 0
        assert -1.0 <= row["similarity"] <= 1.0
        assert row["same_speaker"] > row["different_speaker_bar"]
        if asr == "pocketsphinx":
            assert row["error_rate"] >= 0 and sentence["words"] == 11
            # the real voices' own references: the recogniser's floor, far below random-weight noise
            assert row["asr_floor"] < 0.3 < row["error_rate"]
    if asr == "pocketsphinx":
        assert "floor" in printed


def test_reference_free_eval_gives_the_gpt_no_prompt(voices_dir: Path, judge: SimilarityJudge, monkeypatch) -> None:
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.pipeline import SynthesisParams, VoicePrompt
    from training.evaluate import System, run_eval

    made: list[VoicePrompt] = []
    real = VoicePrompt.from_audio.__func__

    def spy(cls, *args, **kwargs):
        made.append(real(cls, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(VoicePrompt, "from_audio", classmethod(spy))
    bundle = ModelBundle.random_tiny(seed=0)
    voices = [load_voice(voices_dir / "en_slt")]
    params = SynthesisParams(seed=1, max_new_tokens=6)
    for free in (False, True):
        report = run_eval(voices, [System("zero-shot", lambda _v: bundle)], judge, None, params, 1,
                          reference_free=free)
        assert report.to_json()["decoding"]["reference_free"] is free
        assert report.results[0].sentences[0].error is None
        # prompted: the reference's tokens and its text's phones; reference-free: neither
        assert made[-1].ref_free is free and (made[-1].prompt_phones is None) is free


def test_gsv_eval_rejects_a_bad_decoding_knob_before_loading_models(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="temperature must be > 0"):
        _run_eval_cli(["--voices", str(tmp_path / "missing"), "--random-tiny", "--temperature", "0"])


def test_seen_map_marks_heldout_and_trained_voices(tmp_path: Path) -> None:
    from scripts.eval_cmds import _seen_map

    manifest = {"heldout": {"persons": ["allison-smith"]},
                "speakers": {"ast-fr-june": {"person": "june-wallack", "split": "train"},
                             "voice-en_allison": {"person": "allison-smith", "split": "heldout"}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    seen = _seen_map(tmp_path, ["en_allison", "fr_june", "en_joe"])
    assert seen == {"en_allison": "held-out", "fr_june": "seen", "en_joe": "unseen"}
    assert _seen_map(None, ["en_allison"]) == {}


def test_load_bundle_opens_our_encoder_through_the_core_loader(tiny_base_dir: Path, tmp_path: Path) -> None:
    import shutil

    from gpt_sovits.bundle import ModelConfigError
    from training.content_encoder import ContentFeatureExtractor
    from training.evaluate import load_bundle

    bundle = load_bundle(tiny_base_dir / "gpt.safetensors", tiny_base_dir / "sovits.safetensors",
                         tiny_base_dir / "hubert")
    assert isinstance(bundle.ssl, ContentFeatureExtractor) and bundle.ssl.name == "tiny-content"
    other = Path(shutil.copytree(tiny_base_dir / "hubert", tmp_path / "enc"))
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "name": "someone-else"}))
    with pytest.raises(ModelConfigError, match="someone-else"):
        load_bundle(tiny_base_dir / "gpt.safetensors", tiny_base_dir / "sovits.safetensors", other)
