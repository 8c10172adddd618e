"""Mandarin text normalisation: numbers, dates, times, units, phone numbers and punctuation.

Two stages, as in the official frontend:

1. :func:`verbalize_zh` rewrites non-standard words written with digits into Chinese characters.
   It leaves every other character alone, so it can run on mixed zh/en text.
2. :func:`normalize_zh` additionally maps punctuation to the small ASCII set the phone table knows
   (``! ? … , . -``), deletes everything that is not a CJK ideograph or one of those marks, and
   collapses runs of punctuation to their first mark.

Bare integers are read as cardinals ("1500" -> "一千五百"); numbers with a leading zero or more
than 16 digits are read digit by digit. Years before 年, phone numbers and codes are read digit by
digit as well.
"""
from __future__ import annotations

import re

from .zh_numbers import digits_to_zh, int_to_zh, number_to_zh

_NUM = r"\d+(?:\.\d+)?"

# Full-width ASCII block (！..～) and the ideographic space become their ASCII twins.
_FULL_TO_HALF = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULL_TO_HALF[0x3000] = 0x20
_FULL_TO_HALF[0xFFE5] = ord("¥")  # full-width yen sign

_CURRENCY = {"$": "美元", "¥": "元", "€": "欧元", "£": "英镑", "₩": "韩元"}

# Unit abbreviations read after a number. Longest first so "km/h" wins over "km" and "m".
_UNITS = {
    "km/h": "千米每小时", "m/s": "米每秒", "mAh": "毫安时",
    "km²": "平方千米", "m²": "平方米", "cm²": "平方厘米", "m³": "立方米", "cm³": "立方厘米",
    "km2": "平方千米", "m2": "平方米", "cm2": "平方厘米", "m3": "立方米", "㎡": "平方米",
    "km": "千米", "cm": "厘米", "mm": "毫米", "nm": "纳米", "m": "米",
    "kg": "千克", "mg": "毫克", "g": "克", "t": "吨",
    "ml": "毫升", "mL": "毫升", "L": "升", "l": "升",
    "ms": "毫秒", "min": "分钟", "s": "秒", "h": "小时",
    "kHz": "千赫兹", "MHz": "兆赫兹", "GHz": "吉赫兹", "Hz": "赫兹",
    "KB": "千字节", "MB": "兆字节", "GB": "吉字节", "TB": "太字节",
    "kW": "千瓦", "W": "瓦", "V": "伏", "dB": "分贝",
}
_UNIT_RE = re.compile(
    rf"({_NUM})\s*("
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![A-Za-z0-9])"
)

_DATE_ISO_RE = re.compile(r"(?<!\d)(\d{4})\s*[-/.]\s*(\d{1,2})\s*[-/.]\s*(\d{1,2})(?!\d)")
_YEAR_RE = re.compile(r"(?<!\d)(\d{2,4})(?=\s*年)")
_TIME_RE = re.compile(r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?(?!\d)")
_TEMPERATURE_RE = re.compile(rf"(-?)({_NUM})\s*(°C|°c|℃|°F|℉)")
_PERCENT_RE = re.compile(rf"(-?)({_NUM})\s*%")
_CURRENCY_RE = re.compile(rf"([$¥€£₩])\s*({_NUM})")
_FRACTION_RE = re.compile(r"(?<![\d/])(\d+)/(\d+)(?![\d/])")
_MOBILE_RE = re.compile(r"(?<![\d+])(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
_LANDLINE_RE = re.compile(r"(?<!\d)(0\d{2,3})-(\d{7,8})(?!\d)")
_SERVICE_RE = re.compile(r"(?<!\d)([48]00)-?(\d{3})-?(\d{4})(?!\d)")
_RANGE_RE = re.compile(rf"({_NUM})\s*[-~～]\s*(?=\d)")
_GROUPED_RE = re.compile(r"(?<!\d)\d{1,3}(?:,\d{3})+(?![\d,])")
_NEGATIVE_RE = re.compile(rf"(?<![\dA-Za-z])-({_NUM})")
_NUMBER_RE = re.compile(_NUM)


def _read_date(m: re.Match[str]) -> str:
    year, month, day = m.group(1), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return f"{digits_to_zh(year)}年{int_to_zh(str(month))}月{int_to_zh(str(day))}日"


def _read_time(m: re.Match[str]) -> str:
    hour, minute, second = int(m.group(1)), int(m.group(2)), m.group(3)
    if hour > 24 or minute > 59 or (second is not None and int(second) > 59):
        return m.group(0)
    text = int_to_zh(str(hour)) + "点"
    if second is None and minute == 30:
        return text + "半"
    if minute or second:
        text += ("零" if minute < 10 else "") + int_to_zh(str(minute)) + "分"
    if second is not None and int(second):
        text += int_to_zh(second) + "秒"
    return text


def _read_temperature(m: re.Match[str]) -> str:
    sign, value, unit = m.group(1), m.group(2), m.group(3)
    prefix = "零下" if sign else ""
    scale = "华氏" if unit in ("°F", "℉") else ""
    return f"{scale}{prefix}{number_to_zh(value)}度"


def _read_percent(m: re.Match[str]) -> str:
    sign = "负" if m.group(1) else ""
    return f"{sign}百分之{number_to_zh(m.group(2))}"


def _read_mobile(m: re.Match[str]) -> str:
    return ",".join(digits_to_zh(g, alt_one=True) for g in m.groups())


def _read_phone(m: re.Match[str]) -> str:
    return ",".join(digits_to_zh(g, alt_one=True) for g in m.groups())


def _read_integer(text: str) -> str:
    if len(text) > 1 and text.startswith("0"):
        return digits_to_zh(text)
    return int_to_zh(text)


def _read_number(m: re.Match[str]) -> str:
    whole, _, frac = m.group(0).partition(".")
    text = _read_integer(whole)
    return text + ("点" + digits_to_zh(frac) if frac else "")


_RULES: tuple[tuple[re.Pattern[str], object], ...] = (
    (_DATE_ISO_RE, _read_date),
    (_YEAR_RE, lambda m: digits_to_zh(m.group(1))),
    (_TIME_RE, _read_time),
    (_TEMPERATURE_RE, _read_temperature),
    (_PERCENT_RE, _read_percent),
    (_CURRENCY_RE, lambda m: number_to_zh(m.group(2)) + _CURRENCY[m.group(1)]),
    (_UNIT_RE, lambda m: number_to_zh(m.group(1)) + _UNITS[m.group(2)]),
    (_MOBILE_RE, _read_mobile),
    (_SERVICE_RE, _read_phone),
    (_LANDLINE_RE, _read_phone),
    (_FRACTION_RE, lambda m: f"{int_to_zh(m.group(2))}分之{int_to_zh(m.group(1))}"),
    (_GROUPED_RE, lambda m: m.group(0).replace(",", "")),
    (_RANGE_RE, lambda m: m.group(1) + "到"),
    (_NEGATIVE_RE, lambda m: "负" + m.group(1)),
    (_NUMBER_RE, _read_number),
)


def to_half_width(text: str) -> str:
    """Turn full-width ASCII forms (``ＡＢＣ１２３！``) and the ideographic space into ASCII."""
    return text.translate(_FULL_TO_HALF)


def verbalize_zh(text: str) -> str:
    """Rewrite digits, dates, times, units, money, percentages and phone numbers as Chinese.

    Characters that are not part of such an expression are kept unchanged.
    """
    text = to_half_width(text)
    for pattern, reader in _RULES:
        text = pattern.sub(reader, text)  # type: ignore[arg-type]
    return text


# Punctuation mapping onto the phone table's marks. Multi-char keys come first in the regex.
_PUNCT_MAP = {
    "...": "…", "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "、": ",",
    "·": ",", "/": ",", ":": ",", ";": ",", "\n": ".", "$": ".", "—": "-", "~": "…", "～": "…",
}
_PUNCT_RE = re.compile("|".join(re.escape(k) for k in sorted(_PUNCT_MAP, key=len, reverse=True)))
_NOT_KEPT_RE = re.compile(r"[^\u4e00-\u9fa5!?…,.\-]+")
_REPEATED_PUNCT_RE = re.compile(r"([!?…,.\-])[!?…,.\-]+")


def collapse_punctuation(text: str) -> str:
    """Collapse a run of the marks ``! ? … , . -`` to its first mark ("!?。" style runs)."""
    return _REPEATED_PUNCT_RE.sub(r"\1", text)


def map_zh_punctuation(text: str) -> str:
    """Map punctuation to ``! ? … , . -``, drop every non-CJK character, collapse runs."""
    text = text.replace("嗯", "恩").replace("呣", "母")
    text = _PUNCT_RE.sub(lambda m: _PUNCT_MAP[m.group(0)], text)
    text = _NOT_KEPT_RE.sub("", text)
    return collapse_punctuation(text)


def normalize_zh(text: str) -> str:
    """Full zh normalisation: the result holds only CJK ideographs and ``! ? … , . -``."""
    return map_zh_punctuation(verbalize_zh(text))
