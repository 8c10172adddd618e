"""English normalisation: numbers read out with inflect, punctuation cleaned."""
from __future__ import annotations

import re

import pytest

from gpt_sovits.text.en_normalize import normalize_en


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I have 3 apples.", "I have three apples."),
        ("It has 1,234 pages", "It has one thousand two hundred thirty four pages"),
        ("Born in 1999", "Born in nineteen ninety nine"),
        ("In 2005", "In two thousand five"),
        ("In 2000", "In two thousand"),
        ("Since 1900", "Since nineteen hundred"),
        ("The 21st century", "The twenty first century"),
        ("Pi is 3.14", "Pi is three point one four"),
        ("It costs $5.50", "It costs five dollars fifty cents"),
        ("Only $1", "Only one dollar"),
        ("Only $0.99", "Only ninety nine cents"),
        ("About £3", "About three pounds"),
        ("Raised $1.5 million", "Raised one point five million dollars"),
        ("Meet at 3:30 pm", "Meet at three thirty p m"),
        ("At 3:00", "At three o'clock"),
        ("At 10:05", "At ten oh five"),
        ("Wake at 7am", "Wake at seven a m"),
        ("Up 50%", "Up fifty percent"),
        ("It is -5 outside", "It is minus five outside"),
        ("It weighs 1kg", "It weighs one kilogram"),
        ("Ran 5 km", "Ran five kilometers"),
        ("Eat 3/4 of it", "Eat three quarters of it"),
        ("Pages 5-10", "Pages five to ten"),
        ("Call 555-1234", "Call five five five, one two three four"),
        ("Mr. Smith", "mister Smith"),
        ("GPT4", "GPT four"),
    ],
)
def test_numbers_read_out(text: str, expected: str) -> None:
    assert normalize_en(text) == expected


def test_quotes_punctuation_and_alphabet() -> None:
    assert normalize_en("Don’t say “hello”!!") == "Don't say hello!"
    assert normalize_en("A well-known fact; really?!") == "A well known fact, really?"
    assert normalize_en("café naïve") == "cafe naive"
    out = normalize_en("Hi… (test) #1 & you @ home: 100%!")
    assert re.fullmatch(r"[A-Za-z'.,?!\- ]*", out), out
    assert "and" in out and "one hundred percent" in out
