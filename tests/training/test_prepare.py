from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gpt_sovits.features import ssl_frame_count
from training.config import PrepareConfig
from training.dataset import DatasetDir, DatasetError
from training.features import FeatureModels
from training.prepare import prepare_dataset
from training.slicing import active_rms_dbfs
from training.transcripts import SourceAudio, TranscriptError, collect_sources

EN_SLT = Path(__file__).resolve().parents[1] / "data" / "voices" / "en_slt"

SR = 32000


def _utt(i: int) -> np.ndarray:
    wav, sr = sf.read(EN_SLT / "utts" / f"{i:03d}.flac", dtype="float32")
    assert sr == SR
    return wav


def _texts() -> list[str]:
    return [line.split("|")[3] for line in (EN_SLT / "clone.list").read_text().splitlines()]


def _long_file(path: Path, ids: list[int]) -> list[float]:
    """Utterances joined with 0.3 s of silence (as clone.flac); returns their durations."""
    gap = np.zeros(int(0.3 * SR), dtype=np.float32)
    parts = [_utt(i) for i in ids]
    sf.write(path, np.concatenate([p for u in parts for p in (u, gap)]), SR)
    return [len(u) / SR for u in parts]


def test_list_voice_gives_one_utterance_per_line_with_consistent_features(slt_dataset, feature_models) -> None:
    ds, report = slt_dataset
    items = sorted(ds.read_manifest(), key=lambda it: it.source)
    assert report.accepted == len(items) == 15 and not report.rejected
    texts = _texts()
    for i, item in enumerate(items):
        assert item.text == texts[i]
        assert item.n_phones > 10
        assert feature_models.frontend.sentence(item.text, "en").phone_ids == _phones(ds, item)
        wav = ds.load_wav(item)
        assert abs(len(wav) / SR - item.duration) < 0.01
        assert item.n_ssl == ssl_frame_count(len(wav) // 2)
        assert abs(item.n_ssl - 50 * item.duration) <= 2
        assert item.n_semantic == item.n_ssl // 2
        assert item.n_spec == len(wav) // 640 and abs(item.n_spec - item.n_ssl) <= 1
        feats = ds.load_features(item)
        assert tuple(feats["ssl"].shape) == (32, item.n_ssl)
        assert tuple(feats["spec"].shape) == (1025, item.n_spec)
        assert "bert" not in feats  # English: BERT is zeros at training time, not stored
        assert active_rms_dbfs(wav, SR) == pytest.approx(-20.0, abs=1.0)


def _phones(ds: DatasetDir, item) -> list[int]:
    return ds.load_features(item)["phones"].tolist()


def test_rerun_is_a_no_op(slt_dataset, feature_models, monkeypatch) -> None:
    ds, _ = slt_dataset
    manifest = ds.manifest_path.read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in ds.items_dir.iterdir()}

    def fail(*_a, **_k):
        raise AssertionError("features recomputed on a rerun")

    monkeypatch.setattr(FeatureModels, "ssl_features", fail)
    sources = collect_sources([EN_SLT / "utts"], EN_SLT / "clone.list")
    # another device does not change what is produced, so it does not count as other settings
    report = prepare_dataset(sources, ds.root, PrepareConfig(device="cpu"), feature_models, progress=False)
    assert report.new == 0 and report.accepted == 15
    assert ds.manifest_path.read_bytes() == manifest
    assert {p: p.stat().st_mtime_ns for p in ds.items_dir.iterdir()} == mtimes


def test_interrupted_run_resumes_and_repairs_a_torn_manifest(slt_dataset, feature_models, tmp_path) -> None:
    ds, _ = slt_dataset
    copy = tmp_path / "copy"
    shutil.copytree(ds.root, copy)
    lines = (copy / "manifest.jsonl").read_text().splitlines(keepends=True)
    (copy / "manifest.jsonl").write_text("".join(lines[:13]) + lines[13][:25])  # crash mid-append
    sources = collect_sources([EN_SLT / "utts"], EN_SLT / "clone.list")
    report = prepare_dataset(sources, copy, PrepareConfig(), feature_models, progress=False)
    assert report.new == 2 and report.accepted == 15
    assert len(DatasetDir(copy).read_manifest()) == 15
    assert all(json.loads(line) for line in (copy / "manifest.jsonl").read_text().splitlines())


@pytest.mark.parametrize("one_line", [False, True])
def test_long_recording_is_aligned_to_its_sentences(tmp_path, feature_models, one_line) -> None:
    durations = _long_file(tmp_path / "long.flac", [1, 2, 3, 8])
    texts = [_texts()[i - 1] for i in (1, 2, 3, 8)]  # 8 has a pause at its colon
    (tmp_path / "long.txt").write_text((" " if one_line else "\n").join(texts))
    sources = collect_sources([tmp_path / "long.flac"], lang="en")
    prepare_dataset(sources, tmp_path / "ds", PrepareConfig(), feature_models, progress=False)
    items = sorted(DatasetDir(tmp_path / "ds").read_manifest(), key=lambda it: it.start)
    assert [it.text for it in items] == texts
    for item, seconds in zip(items, durations):
        assert item.duration == pytest.approx(seconds, abs=0.3)


def test_unlabelled_audio_needs_a_transcript_or_asr(tmp_path, feature_models) -> None:
    _long_file(tmp_path / "a.flac", [1])
    sources = collect_sources([tmp_path])
    with pytest.raises(TranscriptError) as err:
        prepare_dataset(sources, tmp_path / "ds", PrepareConfig(), feature_models, progress=False)
    assert err.value.code == "missing_transcript"
    assert "--list" in str(err.value) and "--asr-model" in str(err.value)


class FakeASR:
    def __init__(self) -> None:
        self.lengths: list[float] = []

    def transcribe(self, wav16k: np.ndarray, language: str | None) -> tuple[str, str]:
        self.lengths.append(len(wav16k) / 16000)
        return f"Words number {len(self.lengths)} spoken here.", "en"


def test_unlabelled_audio_is_chunked_and_labelled_by_asr(tmp_path, feature_models) -> None:
    _long_file(tmp_path / "a.flac", [1, 2, 3, 4, 5])
    asr = FakeASR()
    report = prepare_dataset(collect_sources([tmp_path]), tmp_path / "ds", PrepareConfig(), feature_models,
                             transcriber=asr, progress=False)
    items = DatasetDir(tmp_path / "ds").read_manifest()
    assert report.accepted == len(asr.lengths) == len(items) >= 2
    assert all(2.0 <= length <= 10.0 for length in asr.lengths)
    assert {it.lang for it in items} == {"en"}
    assert all(it.text.startswith("Words number") for it in items)


def test_bad_slices_are_rejected_with_reasons(tmp_path, feature_models) -> None:
    good = _utt(1)
    sf.write(tmp_path / "good.wav", good, SR)
    sf.write(tmp_path / "clipped.wav", np.clip(_utt(2) * 30, -1, 1), SR)
    sf.write(tmp_path / "short.wav", _utt(3)[: int(0.7 * SR)], SR)
    sf.write(tmp_path / "silence.wav", np.zeros(3 * SR, dtype=np.float32), SR)
    for name in ("good", "clipped", "short", "silence"):
        (tmp_path / f"{name}.txt").write_text("Some words for this clip.")
    report = prepare_dataset(collect_sources([tmp_path], lang="en"), tmp_path / "ds", PrepareConfig(), feature_models,
                             progress=False)
    reasons = {Path(r["source"]).stem: r["reason"] for r in report.rejected}
    assert reasons == {"clipped": "clipped", "short": "too_short", "silence": "silent"}
    assert report.accepted == 1
    saved = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert len(saved["rejected"]) == 3


def test_only_silence_is_a_clear_error(tmp_path, feature_models) -> None:
    sf.write(tmp_path / "silence.wav", np.zeros(3 * SR, dtype=np.float32), SR)
    (tmp_path / "silence.txt").write_text("Nothing here.")
    with pytest.raises(DatasetError) as err:
        prepare_dataset(collect_sources([tmp_path]), tmp_path / "ds", PrepareConfig(), feature_models, progress=False)
    assert err.value.code == "no_usable_audio" and "silent" in str(err.value)


def test_other_settings_into_the_same_dataset_are_refused(slt_dataset, feature_models) -> None:
    ds, _ = slt_dataset
    sources = collect_sources([EN_SLT / "utts"], EN_SLT / "clone.list")
    with pytest.raises(DatasetError) as err:
        prepare_dataset(sources, ds.root, PrepareConfig(max_seconds=8.0), feature_models, progress=False)
    assert err.value.code == "dataset_mismatch"


def test_language_without_frontend_fails_before_work(tmp_path, feature_models) -> None:
    sources = [SourceAudio(EN_SLT / "utts" / "001.flac", "こんにちは", "ja")]
    with pytest.raises(TranscriptError) as err:
        prepare_dataset(sources, tmp_path / "ds", PrepareConfig(), feature_models, progress=False)
    assert err.value.code == "unsupported_language"
    assert not (tmp_path / "ds" / "manifest.jsonl").exists()


def test_chinese_transcripts_store_bert_features(tmp_path, feature_models) -> None:
    sf.write(tmp_path / "zh.wav", _utt(1), SR)
    (tmp_path / "zh.txt").write_text("今天天气很好，我们去公园散步吧。")
    prepare_dataset(collect_sources([tmp_path], lang="zh"), tmp_path / "ds", PrepareConfig(), feature_models,
                    progress=False)
    ds = DatasetDir(tmp_path / "ds")
    (item,) = ds.read_manifest()
    feats = ds.load_features(item)
    assert item.has_bert and item.lang == "zh"
    assert tuple(feats["bert"].shape) == (32, item.n_phones)
    assert int(feats["word2ph"].sum()) == item.n_phones
    assert feats["bert"].abs().sum() > 0
