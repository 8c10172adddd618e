"""English G2P: CMU dictionary lookups and the fallbacks for unknown words."""
from __future__ import annotations

import pytest

from gpt_sovits.text.en_g2p import EnglishG2P, letter_to_sound, spell_out
from gpt_sovits.text.lang import get_g2p
from gpt_sovits.text.symbols import is_known_phone

VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")


@pytest.fixture(scope="module")
def en() -> EnglishG2P:
    return get_g2p("en")  # type: ignore[return-value]


def test_dictionary_words(en: EnglishG2P) -> None:
    phones, word2ph = en.g2p("Hello world.")
    assert phones == ["HH", "AH0", "L", "OW1", "W", "ER1", "L", "D", "."]
    assert word2ph is None
    assert en.word_phones("don't") == ["D", "OW1", "N", "T"]


def test_single_letters(en: EnglishG2P) -> None:
    assert en.word_phones("a") == ["AH0"]  # the article
    assert en.word_phones("A") == ["EY1"]  # the letter
    assert en.word_phones("I") == ["AY1"]


@pytest.mark.parametrize(
    ("word", "base", "suffix"),
    [("laptop's", "laptop", ["S"]), ("banana's", "banana", ["Z"]),
     ("quiz's", "quiz", ["AH0", "Z"]), ("crutch's", "crutch", ["AH0", "Z"])],
)
def test_possessive(en: EnglishG2P, word: str, base: str, suffix: list[str]) -> None:
    assert en.word_phones(word) == en.word_phones(base) + suffix


def test_acronyms_and_short_unknown_words_are_spelled(en: EnglishG2P) -> None:
    assert en.word_phones("GPT") == ["JH", "IY1", "P", "IY1", "T", "IY1"]
    assert en.word_phones("qzx") == spell_out("qzx")


def test_compound_split_into_dictionary_words(en: EnglishG2P) -> None:
    assert en.word_phones("helloworld") == en.word_phones("hello") + en.word_phones("world")


def test_letter_to_sound_fallback(en: EnglishG2P) -> None:
    phones = en.word_phones("zorblax")
    assert phones and all(is_known_phone(p) for p in phones)
    assert letter_to_sound("ship") == ["SH", "IH1", "P"]
    assert letter_to_sound("cake") == ["K", "AE1", "K"]  # silent final e


def test_punctuation_apostrophe_and_short_padding(en: EnglishG2P) -> None:
    phones, _ = en.g2p("dogs ' bone, ok?")
    assert "-" in phones and "," in phones and phones[-1] == "?"
    assert en.g2p("OK")[0] == [",", "OW1", "K", "EY1"]  # fewer than 4 phones: leading ","


def test_sentence_phones_are_valid_with_stress(en: EnglishG2P) -> None:
    assert en.word_phones("ChatGPT") == en.word_phones("chat") + spell_out("GPT")
    text = en.normalize("The quick brown fox jumps over 13 lazy dogs; YouTube & ChatGPT rock!")
    phones, _ = en.g2p(text)
    assert all(is_known_phone(p) for p in phones), phones
    vowels = [p for p in phones if p.rstrip("012") in VOWELS]
    assert vowels and all(p[-1] in "012" for p in vowels)
