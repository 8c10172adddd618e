"""Mandarin normalisation: numbers, dates, times, units, money, phones and punctuation."""
from __future__ import annotations

import re

import pytest

from gpt_sovits.text.zh_normalize import normalize_zh, to_half_width, verbalize_zh
from gpt_sovits.text.zh_numbers import digits_to_zh, int_to_zh, number_to_zh


@pytest.mark.parametrize(
    ("number", "reading"),
    [
        ("0", "零"), ("7", "七"), ("10", "十"), ("15", "十五"), ("25", "二十五"), ("101", "一百零一"),
        ("110", "一百一十"), ("1001", "一千零一"), ("1500", "一千五百"), ("2024", "二千零二十四"),
        ("10000", "一万"), ("20005", "二万零五"), ("100010", "十万零一十"),
        ("120000000", "一亿二千万"), ("100000001", "一亿零一"),
    ],
)
def test_cardinals(number: str, reading: str) -> None:
    assert int_to_zh(number) == reading


def test_decimals_negatives_and_digit_strings() -> None:
    assert number_to_zh("3.14") == "三点一四"
    assert number_to_zh("-0.5") == "负零点五"
    assert digits_to_zh("0571") == "零五七一"
    assert digits_to_zh("110", alt_one=True) == "幺幺零"
    assert int_to_zh("1" * 20) == "一" * 20  # too long for a cardinal: digit by digit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今天是2024年3月5日", "今天是二零二四年三月五日"),
        ("会议在2024-03-05举行", "会议在二零二四年三月五日举行"),
        ("现在是14:30", "现在是十四点半"),
        ("现在是08:05", "现在是八点零五分"),
        ("计时10:30:15", "计时十点三十分十五秒"),
        ("增长了12.5%", "增长了百分之十二点五"),
        ("下降-3%", "下降负百分之三"),
        ("气温-3℃", "气温零下三度"),
        ("花了$100", "花了一百美元"),
        ("只要￥50", "只要五十元"),
        ("重5kg，时速100km/h", "重五千克,时速一百千米每小时"),
        ("拨打13812345678", "拨打幺三八,幺二三四,五六七八"),
        ("座机010-12345678", "座机零幺零,幺二三四五六七八"),
        ("占3/4", "占四分之三"),
        ("1-5个", "一到五个"),
        ("共1,000,000人", "共一百万人"),
        ("第3名得了1500分", "第三名得了一千五百分"),
        ("编号007", "编号零零七"),
        ("温度是-5度", "温度是负五度"),
    ],
)
def test_verbalize(text: str, expected: str) -> None:
    assert normalize_zh(text) == expected


def test_full_width_forms() -> None:
    assert to_half_width("ＡＢＣ１２３！　") == "ABC123! "
    assert verbalize_zh("ＡＢＣ１２３") == "ABC一百二十三"
    assert normalize_zh("ＡＢＣ１２３") == "一百二十三"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好：世界；再见、朋友", "你好,世界,再见,朋友"),
        ("真的吗？？！", "真的吗?"),
        ("好的。。。", "好的."),
        ("等等...", "等等…"),
        ("啊~", "啊…"),
        ("他——走了", "他-走了"),
        ("嗯，呣", "恩,母"),
        ("《书名》（注释）“引号”", "书名注释引号"),
        ("中文abc混合", "中文混合"),
    ],
)
def test_punctuation(text: str, expected: str) -> None:
    assert normalize_zh(text) == expected


def test_output_alphabet() -> None:
    out = normalize_zh("Hello！今天（周一）@#$%^&*气温25°C，风力3级~~ 😀")
    assert re.fullmatch(r"[\u4e00-\u9fa5!?…,.\-]*", out), out
    assert "二十五度" in out
