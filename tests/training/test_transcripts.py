from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.transcripts import (
    TranscriptError,
    collect_sources,
    normalise_lang,
    parse_list_file,
    sources_from_list,
)

EN_SLT = Path(__file__).resolve().parents[1] / "data" / "voices" / "en_slt"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_official_list_with_foreign_absolute_paths_resolves_by_file_name(tmp_path: Path) -> None:
    lst = _write(tmp_path / "v.list", "D:\\data\\slt\\001.flac|slt|EN|Hello there.\n/home/x/002.flac|slt|en|Second.\n")
    sources = sources_from_list(lst, [EN_SLT / "utts"])
    assert [s.path.name for s in sources] == ["001.flac", "002.flac"]
    assert [s.lang for s in sources] == ["en", "en"]
    assert sources[0].text == "Hello there."


def test_bad_list_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    lst = _write(tmp_path / "v.list", "utts/001.flac|slt|en|ok\nonly|three|fields\nutts/002.flac|slt|xx|bad lang\n")
    with pytest.raises(TranscriptError) as err:
        parse_list_file(lst)
    assert err.value.code == "bad_list_file"
    assert "line 2" in str(err.value) and "line 3" in str(err.value)


def test_list_naming_missing_audio_is_an_error(tmp_path: Path) -> None:
    lst = _write(tmp_path / "v.list", "nowhere/404.flac|slt|en|Missing file.\n")
    with pytest.raises(TranscriptError) as err:
        sources_from_list(lst, [EN_SLT / "utts"])
    assert err.value.code == "list_audio_missing" and "404.flac" in str(err.value)


def test_explicit_audio_without_a_list_line_is_an_error(tmp_path: Path) -> None:
    lst = _write(tmp_path / "v.list", f"{EN_SLT / 'utts' / '001.flac'}|slt|en|One.\n")
    with pytest.raises(TranscriptError) as err:
        sources_from_list(lst, [EN_SLT / "utts" / "002.flac"])
    assert err.value.code == "audio_not_in_list"


def test_folder_with_one_list_file_uses_it() -> None:
    sources = collect_sources([EN_SLT])
    assert len(sources) == 15
    assert all(s.path.parent.name == "utts" for s in sources)


def test_sidecar_txt_and_transcript_folder(tmp_path: Path) -> None:
    audio = tmp_path / "a"
    audio.mkdir()
    shutil.copy(EN_SLT / "utts" / "001.flac", audio / "x.flac")
    shutil.copy(EN_SLT / "utts" / "002.flac", audio / "y.flac")
    _write(audio / "x.txt", "Beside the audio.")
    sources = collect_sources([audio], lang="en")
    by_name = {s.path.name: s for s in sources}
    assert by_name["x.flac"].text == "Beside the audio." and by_name["y.flac"].text is None
    texts = tmp_path / "t"
    texts.mkdir()
    _write(texts / "y.txt", "From the folder.\nSecond line.")
    sources = collect_sources([audio], transcripts_dir=texts, lang="en")
    assert {s.path.name: s.text for s in sources}["y.flac"] == "From the folder.\nSecond line."


def test_language_tags() -> None:
    assert normalise_lang("JP") == "ja" and normalise_lang("ZH") == "zh"
    with pytest.raises(TranscriptError):
        normalise_lang("klingon")


def test_missing_inputs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TranscriptError) as err:
        collect_sources([tmp_path / "nope"])
    assert err.value.code == "input_not_found"
    with pytest.raises(TranscriptError) as err:
        collect_sources([tmp_path])
    assert err.value.code == "no_audio"
