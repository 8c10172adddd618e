"""Reading Arabic numbers aloud in Mandarin: cardinals, decimals and digit strings.

These are the building blocks of the zh normaliser (``zh_normalize.py``). The readings follow the
usual TTS convention (and the PaddleSpeech normaliser GPT-SoVITS uses): ``二`` (never ``两``) before
units, ``十五`` rather than ``一十五`` at the start of a number, one ``零`` for each run of zeros.
"""
from __future__ import annotations

DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")  # positions inside a 4-digit group
_BIG_UNITS = ("", "万", "亿", "万亿")  # one per 4-digit group, from the right

#: Longest integer read as a cardinal; longer ones are read digit by digit.
MAX_CARDINAL_DIGITS = 16


def digits_to_zh(digits: str, alt_one: bool = False) -> str:
    """Read a digit string one digit at a time ("0571" -> "零五七一").

    ``alt_one`` reads 1 as ``幺`` the way phone and room numbers are usually spoken.
    """
    out = []
    for ch in digits:
        if ch.isdigit():
            word = DIGITS[int(ch)]
            out.append("幺" if alt_one and word == "一" else word)
    return "".join(out)


def _group_to_zh(group: str) -> str:
    """Read a group of up to 4 digits without its big unit ("0305" -> "零三百零五")."""
    group = group.rjust(4, "0")
    out: list[str] = []
    pending_zero = False
    for pos, ch in enumerate(group):
        value = int(ch)
        if value == 0:
            pending_zero = bool(out) or pending_zero
            continue
        if pending_zero or (not out and pos > 0):
            out.append("零")
        pending_zero = False
        out.append(DIGITS[value] + _SMALL_UNITS[3 - pos])
    return "".join(out)


def int_to_zh(number: str) -> str:
    """Read a non-negative integer string as a Mandarin cardinal ("2024" -> "二千零二十四").

    Strings longer than :data:`MAX_CARDINAL_DIGITS` are read digit by digit.
    """
    number = number.lstrip("0")
    if not number:
        return "零"
    if len(number) > MAX_CARDINAL_DIGITS:
        return digits_to_zh(number)
    groups = []
    while number:
        groups.insert(0, number[-4:])
        number = number[:-4]
    parts: list[str] = []
    need_zero = False
    for idx, group in enumerate(groups):
        unit = _BIG_UNITS[len(groups) - 1 - idx]
        if int(group) == 0:
            need_zero = bool(parts)
            continue
        text = _group_to_zh(group)
        if not parts:
            text = text.lstrip("零")
        elif need_zero and not text.startswith("零"):
            text = "零" + text
        parts.append(text + unit)
        need_zero = False
    text = "".join(parts)
    # "一十五" -> "十五" only at the very start (10..19, 10万.., ...).
    if text.startswith("一十"):
        text = text[1:]
    return text


def number_to_zh(number: str) -> str:
    """Read a signed integer or decimal string ("-3.05" -> "负三点零五")."""
    number = number.replace(",", "")
    sign = ""
    if number.startswith(("-", "−")):
        sign, number = "负", number[1:]
    elif number.startswith("+"):
        number = number[1:]
    whole, _, frac = number.partition(".")
    text = int_to_zh(whole) if whole else "零"
    if frac:
        text += "点" + digits_to_zh(frac)
    return sign + text
