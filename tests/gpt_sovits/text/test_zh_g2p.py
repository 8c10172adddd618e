"""Mandarin G2P: official examples, word2ph invariant, tone sandhi and erhua."""
from __future__ import annotations

import pytest

from gpt_sovits.text.lang import get_g2p
from gpt_sovits.text.symbols import is_known_phone, phones_to_ids
from gpt_sovits.text.tone_sandhi import ToneSandhi, ZhLexicon, bu_sandhi, yi_sandhi
from gpt_sovits.text.zh_g2p import ChineseG2P

# Output of the official frontend (clean_text(text, "zh", "v2"), pypinyin path), from
# gptsovits-g2p-zh-examples.json in the project reference notes.
OFFICIAL = {
    "你好，我是小明。": (
        "你好,我是小明.",
        "n i2 h ao3 , w o3 sh ir4 x iao3 m ing2 .",
        [2, 2, 1, 2, 2, 2, 2, 1],
        [227, 167, 158, 119, 1, 316, 232, 251, 214, 317, 188, 225, 202, 3],
    ),
    "今天是2024年3月5日，气温25度。": (
        "今天是二零二四年三月五日,气温二十五度.",
        "j in1 t ian1 sh ir4 EE er4 l ing2 EE er4 s i04 n ian2 s an1 y ve4 w u3 r ir4 , "
        "q i4 w en1 EE er4 sh ir2 w u3 d u4 .",
        [2] * 12 + [1] + [2] * 6 + [1],
        [221, 196, 252, 176, 251, 214, 33, 153, 224, 202, 33, 153, 250, 164, 227, 177, 250, 107,
         318, 309, 316, 257, 248, 214, 1, 247, 169, 316, 140, 33, 153, 251, 212, 316, 257, 127,
         258, 3],
    ),
    "一会儿我们去吃饭吧！": (
        "一会儿我们去吃饭吧!",
        "y i2 h ui4 EE er4 w o3 m en5 q v4 ch ir1 f an4 b a5 !",
        [2] * 9 + [1],
        [318, 167, 158, 283, 33, 153, 316, 232, 225, 144, 247, 299, 125, 211, 155, 110, 122, 101, 0],
    ),
}


@pytest.fixture(scope="module")
def zh() -> ChineseG2P:
    return get_g2p("zh")  # type: ignore[return-value]


def phones_of(zh: ChineseG2P, text: str) -> list[str]:
    return zh.g2p(zh.normalize(text))[0]


@pytest.mark.parametrize("text", list(OFFICIAL))
def test_official_examples_match_exactly(zh: ChineseG2P, text: str) -> None:
    norm_text, phones, word2ph, ids = OFFICIAL[text]
    assert zh.normalize(text) == norm_text
    got_phones, got_word2ph = zh.g2p(norm_text)
    assert got_phones == phones.split()
    assert got_word2ph == word2ph
    assert phones_to_ids(got_phones, "v2") == ids


@pytest.mark.parametrize(
    "text",
    [
        "我不知道你在说什么。", "看一看，听一听，第一名，一天一夜。", "孩子们在桌子上玩儿呢！",
        "老鼠很小，所有人都喜欢展览馆。", "他说：“你好！”……真的吗？？", "嗯，呣，好的——走吧。",
        "2024年10月1日下午3:30，温度-5℃，降水概率35%。", "电话13812345678，价格$99.5。",
    ],
)
def test_word2ph_matches_normalized_text(zh: ChineseG2P, text: str) -> None:
    norm = zh.normalize(text)
    phones, word2ph = zh.g2p(norm)
    assert len(word2ph) == len(norm)
    assert sum(word2ph) == len(phones)
    assert all(is_known_phone(p) for p in phones), phones
    for ch, n in zip(norm, word2ph):
        assert n == (1 if ch in "!?…,.-" else 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好", "n i2 h ao3"),  # third-tone sandhi
        ("展览馆", "zh an2 l an2 g uan3"),  # 3-3-3 split as 展览/馆
        ("不怕", "b u2 p a4"),  # 不 before 4th tone
        ("不好", "b u4 h ao3"),
        ("看不懂", "k an4 b u5 d ong3"),
        ("一天", "y i4 t ian1"),  # 一 before a non-4th tone
        ("一段", "y i2 d uan4"),  # 一 before a 4th tone
        ("看一看", "k an4 y i5 k an4"),
        ("第一", "d i4 y i1"),
        ("桌子", "zh uo1 z i05"),  # -子 suffix is neutral
        ("我们", "w o3 m en5"),
        ("一点儿", "y i4 d ian3 EE er3"),  # erhua: 儿 takes the tone before it
        ("女儿", "n v3 EE er2"),  # not erhua
    ],
)
def test_tone_sandhi_and_erhua(zh: ChineseG2P, text: str, expected: str) -> None:
    assert " ".join(phones_of(zh, text)) == expected


def _sandhi(finals: dict[str, str], lexicon: ZhLexicon | None = None) -> ToneSandhi:
    """ToneSandhi with per-char table pinyin and no jieba (search cut = the word itself)."""
    return ToneSandhi(lambda w: [finals[ch] for ch in w], lambda w: [w], lexicon or ZhLexicon())


def test_neutral_tone_lexicon_word() -> None:
    lexicon = ZhLexicon(neutral_tone_words=frozenset({"东西"}))
    sandhi = _sandhi({}, lexicon)
    assert sandhi.apply("东西", "n", ["ong1", "i1"]) == ["ong1", "i5"]
    assert sandhi.apply("中西", "n", ["ong1", "i1"]) == ["ong1", "i1"]


def test_neutral_tone_particles_and_reduplication() -> None:
    sandhi = _sandhi({})
    assert sandhi.apply("好吧", "y", ["ao3", "a1"]) == ["ao3", "a5"]
    assert sandhi.apply("奶奶", "n", ["ai3", "ai3"]) == ["ai3", "ai5"]
    assert sandhi.apply("上来", "v", ["ang4", "ai2"]) == ["ang4", "ai5"]
    assert sandhi.apply("三个", "m", ["an1", "e4"]) == ["an1", "e5"]


def test_bu_and_yi_rules() -> None:
    assert bu_sandhi("不对", ["u4", "uei4"]) == ["u2", "uei4"]
    assert bu_sandhi("来不及", ["ai2", "u4", "i2"]) == ["ai2", "u5", "i2"]
    assert yi_sandhi("一零零", ["i1", "ing2", "ing2"]) == ["i1", "ing2", "ing2"]
    assert yi_sandhi("一样", ["i1", "iang4"]) == ["i2", "iang4"]
    assert yi_sandhi("一起", ["i1", "i3"]) == ["i4", "i3"]


def test_pre_merge_units() -> None:
    finals = {"听": "ing1", "一": "i1", "不": "u4", "好": "ao3", "谢": "ie4", "儿": "er2",
              "玩": "uan2", "很": "en3", "你": "i3"}
    sandhi = _sandhi(finals)
    assert sandhi.pre_merge([("听", "v"), ("一", "m"), ("听", "v")]) == [("听一听", "v")]
    assert sandhi.pre_merge([("不", "d"), ("好", "a")]) == [("不好", "a")]
    assert sandhi.pre_merge([("谢", "v"), ("谢", "v")]) == [("谢谢", "v")]
    assert sandhi.pre_merge([("玩", "v"), ("儿", "n")]) == [("玩儿", "v")]
    assert sandhi.pre_merge([("很", "d"), ("你好", "l")]) == [("很你好", "d")]
    assert sandhi.pre_merge([("好", "a"), ("不", "d")]) == [("好", "a"), ("不", "d")]
