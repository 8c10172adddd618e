"""Corpus builder: sources, processing, held-out split, licences in the manifest."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus import CorpusConfig, CorpusError, build_corpus, corpus_audio, process_audio, text_key, trim_edges
from training.corpus_sources import (
    AsteriskSource,
    EspeakSource,
    FliteSource,
    GcinSource,
    RawUtterance,
    SourceInfo,
    SpeakerInfo,
    SynthVoice,
    VoiceFoldersSource,
    concatenate_syllables,
    load_texts,
    parse_asterisk_transcripts,
    read_test_sentences,
    zhuyin_folder,
)
from training.slicing import active_rms_dbfs
from training.transcripts import parse_list_file

ESPEAK = shutil.which("espeak-ng")


class _FakeSource:
    """Yields given (text, audio) pairs: a test double for the builder's text rules."""

    def __init__(self, items: list[tuple[str, np.ndarray]], person: str = "fake-person") -> None:
        self.items = items
        self.info = SourceInfo(name="fake", kind="synthetic", licence="CC0-1.0", attribution="tests")
        self.speaker = SpeakerInfo("fake-a", person, "en", "f", "fake")

    def missing(self) -> str | None:
        return None

    def speakers(self) -> list[SpeakerInfo]:
        return [self.speaker]

    def utterances(self, speaker: SpeakerInfo, seed: int) -> Iterator[RawUtterance]:
        for text, audio in self.items:
            yield RawUtterance(speaker, text, "fake", lambda a=audio: (a, 16000))


def _tone(seconds: float, sr: int = 16000, level: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_parse_asterisk_transcripts() -> None:
    text = ("; Core Asterisk Sounds in English\n\nactivated: Activated.\nbeep: [this is a simple beep tone]\n"
            "at-tone-time-exactly: At the sound of the tone, the time will be exactly...\n"
            "mgcp: MGCP (in inglese).\ndigits/1: one\n")
    assert parse_asterisk_transcripts(text) == {
        "activated": "Activated.",
        "at-tone-time-exactly": "At the sound of the tone, the time will be exactly.",
        "digits/1": "One.",
    }


def test_text_key_ignores_case_and_punctuation() -> None:
    assert text_key("Please hold, thanks!") == text_key("please hold thanks")
    assert text_key("请把门关上，外面很冷。") == text_key("请把门关上外面很冷")


def test_trim_edges_and_processing() -> None:
    sr = 16000
    speech = _tone(1.0)
    padded = np.concatenate([np.zeros(sr), speech, np.zeros(sr)])
    trimmed = trim_edges(padded, sr, margin_s=0.1)
    assert 1.15 <= len(trimmed) / sr <= 1.25
    cfg = CorpusConfig()
    out, out_sr, verdict = process_audio(padded, sr, cfg)
    assert verdict == "ok" and out_sr == sr
    assert active_rms_dbfs(out, sr) == pytest.approx(-20.0, abs=0.5)
    assert process_audio(_tone(0.3), sr, cfg)[2] == "too_short"
    assert process_audio(np.zeros(sr * 2, np.float32), sr, cfg)[2] in ("too_short", "silent")
    hi, hi_sr, _ = process_audio(_tone(1.0, 44100), 44100, cfg)
    assert hi_sr == 32000 and hi is not None


def test_zhuyin_folder_and_concatenation() -> None:
    assert zhuyin_folder("ㄋㄧˇ") == ("ㄋㄧ", "3")
    assert zhuyin_folder("ㄇㄣ˙") == ("ㄇㄣ", "1")
    assert zhuyin_folder("ㄍㄨㄥ") == ("ㄍㄨㄥ", "")
    a, b = np.ones(1000, np.float32), np.ones(1000, np.float32)
    joined = concatenate_syllables([a, b, None, a], sr=16000, pause_s=0.1, fade_s=0.005)
    assert len(joined) == 1000 + 1000 - 80 + 1600 + 1000 - 80  # every join overlaps by the 5 ms fade
    assert np.all(joined[1950:3400] == 0.0)  # the pause
    assert np.allclose(joined[900:1000], 1.0)  # cross-fade of equal clips keeps the level


def test_shipped_sentences_avoid_the_eval_voices(voices_dir: Path) -> None:
    held_out = {text_key(s) for lines in read_test_sentences(voices_dir).values() for s in lines}
    for lang in ("en", "zh"):
        texts = load_texts(lang)
        assert len(texts) >= 60
        assert not held_out & {text_key(t) for t in texts}


def test_missing_sources_name_the_apt_line(tmp_path: Path) -> None:
    flite = FliteSource(binary="gsv-no-such-flite")
    assert "apt-get install -y flite" in (flite.missing() or "")
    asterisk = AsteriskSource("en", sounds_dir=tmp_path, doc_dir=tmp_path)
    assert "apt-get install -y asterisk-core-sounds-en asterisk-core-sounds-en-g722" in (asterisk.missing() or "")
    assert "apt-get install -y gcin-voice" in (GcinSource(root=tmp_path / "none").missing() or "")
    with pytest.raises(CorpusError, match="apt-get install -y flite"):
        build_corpus(tmp_path / "corpus", [flite])


def test_build_writes_lists_manifest_and_heldout_split(tmp_path: Path, voices_dir: Path) -> None:
    sources = [VoiceFoldersSource(voices_dir)]
    test_sentence = (voices_dir / "en_slt" / "test.txt").read_text().splitlines()[0]
    sources.append(_FakeSource([(test_sentence, _tone(1.5)), ("A sentence of our own.", _tone(1.5)),
                                ("A sentence of our own!", _tone(1.6)), ("Too short.", _tone(0.2))]))
    if ESPEAK:
        sources.append(EspeakSource(voices=(SynthVoice("en-us+f2", "espeak-en-us-f2", "en", "f"),)))
    cfg = CorpusConfig(heldout_persons=["allison-smith"], max_utts_per_speaker=2, heldout_utts_per_speaker=2)
    out = tmp_path / "corpus"
    report = build_corpus(out, sources, cfg, eval_voices=voices_dir)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["heldout"]["persons"] == ["allison-smith"] and manifest["heldout"]["why"]
    speakers = manifest["speakers"]
    assert speakers["voice-en_allison"]["split"] == "heldout"
    assert speakers["voice-en_allison"]["licence"] == "CC-BY-SA-3.0"
    assert speakers["voice-en_slt"]["split"] == "train" and "BSD" in speakers["voice-en_slt"]["licence"]
    assert speakers["fake-a"]["utterances"] == 1  # eval sentence, duplicate and too-short one dropped
    assert report.rejected == {"eval_sentence": 1, "duplicate": 1, "too_short": 1}
    for source in manifest["sources"]:
        assert source["licence"] and source["attribution"]
    assert (out / "LICENSES" / "asterisk-core-sounds.copyright").is_file()

    train = parse_list_file(out / "train.list")
    heldout = parse_list_file(out / "heldout.list")
    train_speakers = {line.split("|")[1] for line in (out / "train.list").read_text().splitlines()}
    heldout_speakers = {line.split("|")[1] for line in (out / "heldout.list").read_text().splitlines()}
    assert heldout_speakers == {"voice-en_allison"}
    assert {"voice-en_slt", "fake-a"} <= train_speakers and "voice-en_allison" not in train_speakers
    assert len(train) + len(heldout) == len(report.utterances) == len(corpus_audio(out)) + len(heldout)
    if ESPEAK:
        assert "espeak-ng-en-us-f2" in train_speakers
        assert manifest["sources"][-1]["licence"].startswith("GPL-3.0")
    for entry in train + heldout:
        info = sf.info(out / entry.audio)
        assert info.channels == 1 and info.samplerate <= 32000 and 0.6 <= info.duration <= 15.0
        assert entry.text.strip()


def test_build_refuses_to_clobber(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="not empty"):
        build_corpus(tmp_path / "corpus", [_FakeSource([("Hello there.", _tone(1.0))])])
    with pytest.raises(CorpusError, match="not a corpus folder"):
        build_corpus(tmp_path / "corpus", [_FakeSource([("Hello there.", _tone(1.0))])], overwrite=True)


def _skip_unless(source) -> None:  # noqa: ANN001 - any corpus source
    why = source.missing()
    if why is not None:
        pytest.skip(why)


def test_asterisk_prompts_decode_with_transcripts() -> None:
    source = AsteriskSource("en")
    _skip_unless(source)
    speaker = source.speakers()[0]
    assert speaker.person == "allison-smith"
    utt = next(source.utterances(speaker, seed=0))
    wav, sr = utt.load()
    assert sr == 16000 and len(wav) > 1600 and np.abs(wav).max() > 0.01
    assert utt.text and utt.origin.endswith(".g722")


def test_gcin_renders_sentences_from_syllables() -> None:
    source = GcinSource(texts=["你好，我们走吧。"])
    _skip_unless(source)
    speakers = {s.id: s for s in source.speakers()}
    assert speakers["gcin-5"].licence == "CC-BY-3.0"
    utt = next(source.utterances(speakers["gcin-5"], seed=0))
    wav, sr = utt.load()
    assert sr == 32000 and 1.0 < len(wav) / sr < 4.0


@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng not installed (apt-get install -y espeak-ng)")
def test_espeak_render_is_speech_length() -> None:
    source = EspeakSource(voices=(SynthVoice("en-us+m3", "espeak-en-us-m3", "en", "m"),))
    wav, sr = source.render(source.voices[0], "The train to the airport leaves from platform four.")
    assert sr == 22050 and 1.5 < len(wav) / sr < 6.0


def test_cli_lists_sources_builds_and_trains_the_encoder(tmp_path: Path, voices_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from scripts import corpus_cmds
    from training.content_encoder import open_content_encoder

    parser = argparse.ArgumentParser()
    corpus_cmds.register(parser.add_subparsers())

    def run(*argv: str) -> int:
        args = parser.parse_args(["corpus", *argv])
        return args.func(args)

    assert run("sources", "--voices", str(voices_dir)) == 0
    listing = capsys.readouterr().out
    assert "asterisk-en" in listing and "voice-en_slt" in listing
    if shutil.which("flite") is None:
        assert "apt-get install -y flite" in listing

    out = tmp_path / "corpus"
    assert run("build", "--out", str(out), "--voices", str(voices_dir), "--source", "voices",
               "--heldout", "allison-smith", "--max-utts", "3", "--heldout-utts", "1") == 0
    assert "train: 3 utterances, 1 speakers" in capsys.readouterr().out
    with pytest.raises(CorpusError, match="unknown source"):
        run("build", "--out", str(tmp_path / "x"), "--source", "nonsense")

    enc = tmp_path / "enc"
    assert run("train-encoder", "--corpus", str(out), "--out", str(enc), "--hidden", "16", "--layers", "1",
               "--heads", "2", "--steps", "2", "--clusters", "4", "--batch-size", "2", "--crop-seconds", "0.5",
               "--device", "cpu") == 0
    extractor = open_content_encoder(enc)
    assert extractor.hidden_size == 16 and (enc / "targets.safetensors").is_file()
