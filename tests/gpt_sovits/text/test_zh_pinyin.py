"""Pinyin -> (initial, final) mapping (opencpop-strict conventions)."""
from __future__ import annotations

import pytest

from gpt_sovits.text.symbols import is_known_phone
from gpt_sovits.text.zh_pinyin import respell, split_syllable, syllable_phones


@pytest.mark.parametrize(
    ("syllable", "expected"),
    [
        ("shi", ("sh", "ir")), ("zhi", ("zh", "ir")), ("ri", ("r", "ir")), ("zi", ("z", "i0")),
        ("ci", ("c", "i0")), ("xi", ("x", "i")), ("a", ("AA", "a")), ("ang", ("AA", "ang")),
        ("e", ("EE", "e")), ("er", ("EE", "er")), ("o", ("OO", "o")), ("ou", ("OO", "ou")),
        ("yi", ("y", "i")), ("ya", ("y", "a")), ("yan", ("y", "En")), ("ye", ("y", "E")),
        ("you", ("y", "ou")), ("yong", ("y", "ong")), ("yu", ("y", "v")), ("yuan", ("y", "van")),
        ("yue", ("y", "ve")), ("yun", ("y", "vn")), ("wu", ("w", "u")), ("wei", ("w", "ei")),
        ("ju", ("j", "v")), ("quan", ("q", "van")), ("xue", ("x", "ve")), ("lv", ("l", "v")),
        ("nve", ("n", "ve")), ("gui", ("g", "ui")), ("liu", ("l", "iu")), ("dun", ("d", "un")),
        ("zhuang", ("zh", "uang")),
    ],
)
def test_split_syllable(syllable: str, expected: tuple[str, str]) -> None:
    assert split_syllable(syllable) == expected


@pytest.mark.parametrize(
    ("initial", "final", "expected"),
    [
        ("", "iou", "you"), ("g", "uei", "gui"), ("d", "uen", "dun"), ("j", "iou", "jiu"),
        ("", "v", "yu"), ("", "van", "yuan"), ("", "ve", "yue"), ("", "i", "yi"),
        ("", "ing", "ying"), ("", "ia", "ya"), ("", "uo", "wo"), ("", "uei", "wei"),
        ("", "u", "wu"), ("", "er", "er"), ("", "ao", "ao"),
    ],
)
def test_respell_from_pypinyin_strict_parts(initial: str, final: str, expected: str) -> None:
    assert respell(initial, final) == expected


def test_syllable_phones_keeps_tone() -> None:
    assert syllable_phones("sh", "i4") == ["sh", "ir4"]
    assert syllable_phones("", "uen1") == ["w", "en1"]
    assert syllable_phones("h", "") == ["h", "en5"]  # pypinyin gives no final for 噷


def test_every_pypinyin_reading_maps_into_the_phone_table() -> None:
    from pypinyin.contrib.tone_convert import to_finals_tone3, to_initials
    from pypinyin.pinyin_dict import pinyin_dict

    readings = {r for cp, s in pinyin_dict.items() if 0x4E00 <= cp <= 0x9FA5 for r in s.split(",")}
    assert len(readings) > 1000
    for reading in readings:
        initial = to_initials(reading, strict=True)
        final = to_finals_tone3(reading, strict=True, neutral_tone_with_five=True)
        phones = syllable_phones(initial, final)
        assert all(is_known_phone(p) for p in phones), (reading, phones)
