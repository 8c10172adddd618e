"""`gsv synth` end to end on tiny random models, and its errors."""
from __future__ import annotations

import soundfile as sf

from scripts.cli import main


def test_synth_random_tiny_writes_audio(tmp_path, voices_dir, capsys):
    out = tmp_path / "out.wav"
    ref = voices_dir / "en_slt" / "ref.flac"
    code = main([
        "synth", "--random-tiny", "--ref", str(ref), "--ref-text", (voices_dir / "en_slt" / "ref.txt").read_text(),
        "--ref-lang", "en", "--text", "Good morning.", "--lang", "en", "--seed", "3", "--top-k", "1", "-o", str(out),
    ])
    assert code == 0
    audio, sr = sf.read(out)
    assert sr == 32000 and len(audio) > 0 and len(audio) % 1280 == 0
    assert "RTF" in capsys.readouterr().out


def test_synth_streaming_flag_gives_the_same_length(tmp_path, voices_dir):
    ref = voices_dir / "en_slt" / "ref.flac"
    common = ["synth", "--random-tiny", "--ref", str(ref), "--text", "Good morning.", "--lang", "en",
              "--seed", "3", "--top-k", "1"]
    assert main(common + ["-o", str(tmp_path / "a.wav")]) == 0
    assert main(common + ["--stream", "-o", str(tmp_path / "b.wav")]) == 0
    assert len(sf.read(tmp_path / "a.wav")[0]) == len(sf.read(tmp_path / "b.wav")[0])


def test_synth_without_weights_says_what_is_missing(tmp_path, voices_dir, capsys):
    code = main(["synth", "--ref", str(voices_dir / "en_slt" / "ref.flac"), "--text", "hi", "-o", str(tmp_path / "x.wav")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--gpt" in err and "--sovits" in err and "--hubert" in err and "model_not_found" in err


def test_synth_rejects_a_one_second_reference(tmp_path, voices_dir, capsys):
    audio, sr = sf.read(voices_dir / "en_slt" / "ref.flac")
    short = tmp_path / "short.wav"
    sf.write(short, audio[:sr], sr)
    code = main(["synth", "--random-tiny", "--ref", str(short), "--text", "hi there", "-o", str(tmp_path / "x.wav")])
    assert code == 2
    assert "reference_too_short" in capsys.readouterr().err
