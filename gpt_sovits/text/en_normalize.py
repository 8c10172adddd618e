"""English text normalisation: numbers, money, times, units and punctuation read out as words.

Numbers are spelled with ``inflect`` (imported on first use; it is slow to import). Years in
1001..2999 are read in pairs ("1999" -> "nineteen ninety nine"), like the official frontend.
The result keeps only ``A-Za-z'.,?!-`` and single spaces, with runs of punctuation collapsed.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from .zh_normalize import to_half_width

_NUM = r"\d+(?:\.\d+)?"
MAX_CARDINAL_DIGITS = 15

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‛": "'", "′": "'", "“": '"', "”": '"', "„": '"'})
_CJK_PUNCT = {"。": ".", "，": ",", "、": ",", "；": ",", "：": ",", "！": "!", "？": "?",
              "—": " - ", "–": " - ", "…": ".", "~": "-", "～": "-"}
_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "st": "saint", "jr": "junior",
    "sr": "senior", "prof": "professor", "vs": "versus", "etc": "et cetera", "no": "number",
}
_ABBREV_RE = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.(?=\s|$)", re.IGNORECASE)
_CURRENCY = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent"),
             "¥": ("yen", None)}
_SCALES = "thousand|million|billion|trillion"
# unit -> (singular, plural) reading
_UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "m/s": ("meter per second", "meters per second"),
    "km": ("kilometer", "kilometers"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "m": ("meter", "meters"),
    "kg": ("kilogram", "kilograms"), "mg": ("milligram", "milligrams"), "g": ("gram", "grams"),
    "lbs": ("pound", "pounds"), "lb": ("pound", "pounds"),
    "ml": ("milliliter", "milliliters"), "l": ("liter", "liters"),
    "ms": ("millisecond", "milliseconds"), "min": ("minute", "minutes"),
    "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"), "Hz": ("hertz", "hertz"),
    "KB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"),
    "°C": ("degree Celsius", "degrees Celsius"), "℃": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "℉": ("degree Fahrenheit", "degrees Fahrenheit"),
}
_UNIT_RE = re.compile(
    rf"((?<!\d)-)?({_NUM})\s*("
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![A-Za-z0-9])"
)
_CURRENCY_RE = re.compile(rf"([$£€¥])\s*(\d[\d,]*(?:\.\d+)?)(?:\s*({_SCALES})\b)?", re.I)
_PERCENT_RE = re.compile(rf"({_NUM})\s*%")
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b(?:\s*([AaPp])(?:\.[Mm]\.|[Mm]\b))?")
_HOUR_AMPM_RE = re.compile(r"\b(\d{1,2})\s*([AaPp])(?:\.[Mm]\.|[Mm]\b)")
_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I)
_PHONE_RE = re.compile(r"(?<![\d-])(?:(\d{3})-)?(\d{3})-(\d{4})(?![\d-])")
_FRACTION_RE = re.compile(r"(?<![\d/])(\d{1,3})/(\d{1,3})(?![\d/])")
_RANGE_RE = re.compile(rf"(?<![\d.])({_NUM})\s*[-~]\s*(?=\d)")
_GROUPED_RE = re.compile(r"(?<!\d)\d{1,3}(?:,\d{3})+(?![\d,])")
_NEGATIVE_RE = re.compile(rf"(?<![\w.])-({_NUM})")
_DECIMAL_RE = re.compile(r"(\d+)\.(\d+)")
_INTEGER_RE = re.compile(r"\d+")


@lru_cache(maxsize=1)
def _inflect() -> Any:
    import inflect

    return inflect.engine()


def _words(text: str) -> str:
    """inflect output without commas and hyphens ("twenty-one" -> "twenty one")."""
    return re.sub(r"\s+", " ", text.replace(",", " ").replace("-", " ")).strip()


def say_digits(digits: str) -> str:
    """Read a digit string digit by digit ("042" -> "zero four two")."""
    return " ".join(_words(_inflect().number_to_words(int(d))) for d in digits if d.isdigit())


def say_cardinal(number: str) -> str:
    """Read an integer string as a plain cardinal ("1234" -> "one thousand two hundred ...")."""
    number = number.replace(",", "")
    if len(number) > MAX_CARDINAL_DIGITS:
        return say_digits(number)
    return _words(_inflect().number_to_words(int(number), andword=""))


def say_integer(number: str) -> str:
    """Read an integer; 4-digit numbers in 1001..2999 read like years ("1999" -> "nineteen
    ninety nine"), everything else as a cardinal ("42" -> "forty two")."""
    value = int(number) if number.isdigit() else -1
    eng = _inflect()
    if 1000 < value < 3000 and len(number) == 4:
        if value % 1000 == 0:
            return _words(eng.number_to_words(value))
        if 2000 < value < 2010:
            return "two thousand " + _words(eng.number_to_words(value % 100))
        if value % 100 == 0:
            return _words(eng.number_to_words(value // 100)) + " hundred"
        return _words(eng.number_to_words(value, andword="", zero="oh", group=2))
    return say_cardinal(number)


def say_number(number: str) -> str:
    """Read an integer or decimal ("3.14" -> "three point one four")."""
    whole, _, frac = number.replace(",", "").partition(".")
    text = say_integer(whole or "0")
    return text + (" point " + say_digits(frac) if frac else "")


def _plural(unit: str, amount: str) -> str:
    return unit if amount in ("1", "one") else unit + "s"


def _read_currency(m: re.Match[str]) -> str:
    unit, sub_unit = _CURRENCY[m.group(1)]
    amount, scale = m.group(2).replace(",", ""), m.group(3)
    if scale:
        return f"{say_number(amount)} {scale.lower()} {unit}s"
    whole, _, frac = amount.partition(".")
    cents = int((frac + "00")[:2]) if frac and sub_unit else 0
    if sub_unit is None and frac:
        return f"{say_number(amount)} {unit}"
    parts = []
    if int(whole or "0") or not cents:
        parts.append(f"{say_integer(whole or '0')} {_plural(unit, whole or '0')}")
    if cents:
        name = "pence" if sub_unit == "penny" and cents != 1 else _plural(sub_unit or "", str(cents))
        parts.append(f"{say_integer(str(cents))} {name}")
    return " ".join(parts)


def _read_time(m: re.Match[str]) -> str:
    hour, minute, ampm = int(m.group(1)), int(m.group(2)), m.group(3)
    if hour > 24 or minute > 59:
        return m.group(0)
    text = say_integer(str(hour))
    if minute == 0:
        text += "" if ampm else " o'clock"
    elif minute < 10:
        text += " oh " + say_integer(str(minute))
    else:
        text += " " + say_integer(str(minute))
    return text + (f" {ampm.lower()} m" if ampm else "")


def _read_fraction(m: re.Match[str]) -> str:
    num, den = int(m.group(1)), int(m.group(2))
    if den == 0 or den > 10:
        return f"{say_integer(m.group(1))} over {say_integer(m.group(2))}"
    if den == 1:
        return say_integer(m.group(1))
    if den == 2:
        name = "half" if num == 1 else "halves"
    elif den == 4:
        name = "quarter" if num == 1 else "quarters"
    else:
        name = _words(_inflect().ordinal(_inflect().number_to_words(den)))
        name += "" if num == 1 else "s"
    return f"{say_integer(m.group(1))} {name}"


def _read_unit(m: re.Match[str]) -> str:
    sign, amount = ("minus " if m.group(1) else ""), m.group(2)
    singular, plural = _UNITS[m.group(3)]
    return f"{sign}{say_number(amount)} {singular if amount == '1' else plural}"


def _spaced(text: str) -> str:
    return f" {text} "


_RULES: tuple[tuple[re.Pattern[str], Any], ...] = (
    (_CURRENCY_RE, lambda m: _spaced(_read_currency(m))),
    (_PERCENT_RE, lambda m: _spaced(say_number(m.group(1)) + " percent")),
    (_TIME_RE, lambda m: _spaced(_read_time(m))),
    (_HOUR_AMPM_RE, lambda m: _spaced(f"{say_integer(m.group(1))} {m.group(2).lower()} m")),
    (_ORDINAL_RE, lambda m: _spaced(_words(_inflect().ordinal(_inflect().number_to_words(int(m.group(1))))))),
    (_UNIT_RE, lambda m: _spaced(_read_unit(m))),
    (_PHONE_RE, lambda m: _spaced(", ".join(say_digits(g) for g in m.groups() if g))),
    (_FRACTION_RE, lambda m: _spaced(_read_fraction(m))),
    (_GROUPED_RE, lambda m: _spaced(say_cardinal(m.group(0)))),
    (_RANGE_RE, lambda m: f"{m.group(1)} to "),
    (_NEGATIVE_RE, lambda m: _spaced("minus " + say_number(m.group(1)))),
    (_DECIMAL_RE, lambda m: _spaced(say_number(m.group(0)))),
    (_INTEGER_RE, lambda m: _spaced(say_integer(m.group(0)))),
)


def verbalize_en(text: str) -> str:
    """Spell out numbers, money, percentages, times, ordinals, units and abbreviations."""
    text = to_half_width(text).translate(_QUOTES)
    text = re.sub(r"\b(i)\.e\.", "that is", text, flags=re.I)
    text = re.sub(r"\b(e)\.g\.", "for example", text, flags=re.I)
    text = _ABBREV_RE.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)
    for pattern, reader in _RULES:
        text = pattern.sub(reader, text)
    return text


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def clean_en_punctuation(text: str) -> str:
    """Map punctuation to ``. , ? ! - '``, drop other symbols, collapse runs, squeeze spaces."""
    for src, dst in _CJK_PUNCT.items():
        text = text.replace(src, dst)
    text = text.replace("&", " and ").replace("%", " percent ").replace("+", " plus ")
    text = text.replace("@", " at ").replace(";", ",").replace(":", ",")
    text = re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])", " ", text)  # well-known -> well known
    text = re.sub(r"[^A-Za-z'.,?!\- ]+", " ", _strip_accents(text))
    text = re.sub(r"\s+([.,?!])", r"\1", text)
    text = re.sub(r"([.,?!\-])[.,?!\-\s]*[.,?!\-]", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def normalize_en(text: str) -> str:
    """Full en normalisation: verbalise, then keep only ``A-Za-z'.,?!-`` and spaces."""
    return clean_en_punctuation(verbalize_en(text))
