"""Cut methods cut0..cut5 and the sentence pre-segmentation."""
from __future__ import annotations

import pytest

from gpt_sovits.text.cut import (
    ALIASES,
    MAX_SENTENCE_CHARS,
    cut,
    cut0,
    cut1,
    cut2,
    cut3,
    cut4,
    cut5,
    merge_short_lines,
    pre_segment,
    split_clauses,
    split_long_text,
)
from gpt_sovits.text.errors import FrontendError, UnknownSplitMethodError

SIX = "第一句，第二句。第三句！第四句？第五句，第六句。"


def test_split_clauses_keeps_marks_and_tail() -> None:
    assert split_clauses("甲，乙。丙") == ["甲，", "乙。", "丙"]
    assert split_clauses("甲……乙——丙") == ["甲。", "乙，", "丙"]


def test_cut0_is_no_cut() -> None:
    assert cut0(SIX) == [SIX]
    assert cut0("!? ...") == [] and cut0("...") == []


def test_cut1_groups_four_clauses() -> None:
    assert cut1(SIX) == ["第一句，第二句。第三句！第四句？", "第五句，第六句。"]
    assert cut1("短，句。") == ["短，句。"]


def test_cut2_about_fifty_chars() -> None:
    clause = "这是一个用来测试的比较长的分句，"  # 16 chars
    text = clause * 10
    pieces = cut2(text)
    assert "".join(pieces) == text
    assert all(len(p) > 50 for p in pieces)
    assert len(pieces) == 2  # 4+4 clauses, then a short tail of 2 merged into the last piece
    assert cut2("一句话") == ["一句话"]


def test_cut3_and_cut4_split_on_periods() -> None:
    assert cut3("你好。我是小明。再见") == ["你好", "我是小明", "再见"]
    assert cut4("Pi is 3.14. It is nice. Bye.") == ["Pi is 3.14", " It is nice", " Bye"]


def test_cut5_splits_after_any_punctuation_but_not_decimals() -> None:
    assert cut5("价格3.5元，好吗？好！") == ["价格3.5元，", "好吗？", "好！"]
    assert cut5("One, two; three.") == ["One,", " two;", " three."]
    assert cut5("，。") == []


def test_names_and_aliases() -> None:
    assert ALIASES == {"none": "cut0", "four_sentences": "cut1", "fifty_chars": "cut2",
                       "zh_period": "cut3", "en_period": "cut4", "punctuation": "cut5"}
    for alias, name in ALIASES.items():
        assert cut(SIX, alias) == cut(SIX, name)
    with pytest.raises(UnknownSplitMethodError, match="cut9") as info:
        cut(SIX, "cut9")
    assert isinstance(info.value, FrontendError)


def test_merge_short_lines() -> None:
    assert merge_short_lines(["好。", "你好吗？", "我很好，谢谢。"]) == ["好。你好吗？", "我很好，谢谢。"]
    assert merge_short_lines(["很长的一句话。", "短"]) == ["很长的一句话。短"]


def test_split_long_text_respects_limit() -> None:
    text = ("这是一个分句，" * 200) + "x" * 700
    pieces = split_long_text(text)
    assert "".join(pieces) == text
    assert all(len(p) <= MAX_SENTENCE_CHARS for p in pieces)


def test_pre_segment_steps() -> None:
    # Short first clause -> a leading 。 is added, then dropped as a symbol-only piece.
    assert pre_segment("你好，今天天气很好，我们去公园吧", "zh", "cut5") == [
        "你好，今天天气很好，", "我们去公园吧。"]
    assert pre_segment("Hi there, how are you", "en", "cut0") == ["Hi there, how are you."]
    assert pre_segment("第一行文字\n第二行文字", "zh", "cut0") == ["第一行文字。", "第二行文字。"]
    assert pre_segment("。。。\n！！", "zh", "cut0") == []
    long = pre_segment("字" * 1200, "zh", "cut0")
    assert len(long) == 3 and all(len(s) <= MAX_SENTENCE_CHARS for s in long)
