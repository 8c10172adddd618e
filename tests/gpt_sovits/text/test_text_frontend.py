"""TextFrontend: sentences -> segments with phone ids, BERT matrices and input checks."""
from __future__ import annotations

import re

import pytest
import torch

from gpt_sovits.text import (
    BertFeatureError,
    EmptyTextError,
    FrontendError,
    LanguageNotInstalledError,
    Segment,
    TextFrontend,
    TextTooLongError,
    UnknownLanguageError,
    UnknownSplitMethodError,
    UnknownVersionError,
)

UNK_ID = 86


@pytest.fixture(scope="module")
def frontend() -> TextFrontend:
    return TextFrontend("v2")


def fake_bert(norm_text: str, word2ph: list[int]) -> torch.Tensor:
    """Row i of the per-char features is i+1, expanded to phones like the real BERT path."""
    per_char = torch.arange(1, len(norm_text) + 1, dtype=torch.float32)
    per_phone = per_char.repeat_interleave(torch.tensor(word2ph))
    return per_phone.unsqueeze(0).expand(1024, -1).clone()


def test_official_zh_example_through_frontend(frontend: TextFrontend) -> None:
    ids = [227, 167, 158, 119, 1, 316, 232, 251, 214, 317, 188, 225, 202, 3]
    seg = frontend.sentence("你好，我是小明。", "zh")
    assert seg.norm_text == "你好,我是小明."
    assert seg.phone_ids == ids
    assert seg.word2ph == [2, 2, 1, 2, 2, 2, 2, 1]
    assert seg.lang == "zh" and len(seg.runs) == 1
    # Through process(), pre-segmentation puts 。 before a first clause shorter than 4 chars.
    (cut,) = frontend.process("你好，我是小明。", "zh", "cut0")
    assert cut.norm_text == "." + seg.norm_text and cut.phone_ids == [3] + ids


def test_english_ids_are_valid(frontend: TextFrontend) -> None:
    segs = frontend.process("The weather is lovely today. Shall we walk to the park?", "en", "cut4")
    assert len(segs) == 2
    for seg in segs:
        assert seg.lang == "en" and seg.word2ph is None
        assert all(0 <= i < 732 for i in seg.phone_ids) and UNK_ID not in seg.phone_ids
        assert len(seg.phone_ids) == len(seg.phones)


def test_mixed_zh_en_sentence(frontend: TextFrontend) -> None:
    (seg,) = frontend.process("我今天用Python写了一个program，很开心。", "zh", "cut0")
    assert seg.lang == "mixed" and seg.word2ph is None
    assert [r.lang for r in seg.runs] == ["zh", "en", "zh", "en", "zh"]
    assert UNK_ID not in seg.phone_ids and max(seg.phone_ids) < 732
    assert seg.phones == [p for r in seg.runs for p in r.phones]
    assert seg.norm_text == "".join(r.norm_text for r in seg.runs)


def test_numbers_are_read_out(frontend: TextFrontend) -> None:
    (zh,) = frontend.process("会议在2024年3月5日14:30开始，预算增加了12.5%，约$300。", "zh", "cut0")
    assert zh.norm_text == "会议在二零二四年三月五日十四点半开始,预算增加了百分之十二点五,约三百美元."
    (en,) = frontend.process("On March 5th at 2:30 pm, 12.5% of $300 is $37.50.", "en", "cut0")
    assert not re.search(r"\d", en.norm_text)
    assert "fifth" in en.norm_text and "thirty seven dollars fifty cents" in en.norm_text


def test_short_sentence_gets_leading_period(frontend: TextFrontend) -> None:
    seg = frontend.sentence("好。", "zh")
    assert seg.phones == [".", "h", "ao3", "."]
    assert frontend.sentence("Yes.", "en").phones[0] == "."


def test_split_methods_change_segmentation(frontend: TextFrontend) -> None:
    text = "今天天气很好。我们去公园散步吧！你觉得怎么样？明天可能会下雨。"
    assert len(frontend.process(text, "zh", "none")) == 1
    assert len(frontend.process(text, "zh", "cut5")) == 4
    assert len(frontend.process(text, "zh", "zh_period")) == 2  # 。 only (！？ stay inside)


def test_bert_features_zh_and_zeros_elsewhere() -> None:
    fe = TextFrontend("v2", bert=fake_bert)
    (seg,) = fe.process("我喜欢Python和你。", "zh", "cut0")
    feats = fe.bert_features(seg)
    assert feats.shape == (1024, len(seg.phones))
    zh_run, en_run, tail = seg.runs
    assert torch.equal(feats[0, :6], torch.tensor([1.0, 1, 2, 2, 3, 3]))
    assert torch.count_nonzero(feats[:, 6 : 6 + len(en_run.phones)]) == 0
    assert torch.count_nonzero(feats[:, -len(tail.phones):]) == 1024 * len(tail.phones)


def test_bert_features_without_model_are_zeros(frontend: TextFrontend) -> None:
    (seg,) = frontend.process("你好，世界。", "zh", "cut0")
    feats = frontend.bert_features(seg)
    assert feats.shape == (1024, len(seg.phones)) and torch.count_nonzero(feats) == 0
    assert seg.bert_features(None, bert_dim=8).shape == (8, len(seg.phones))


def test_bert_dtype_is_kept_and_bad_shapes_rejected() -> None:
    half = TextFrontend(bert=lambda t, w: fake_bert(t, w).half())
    (seg,) = half.process("Hello 你好世界。", "zh", "cut0")
    assert half.bert_features(seg).dtype == torch.float16
    broken = TextFrontend(bert=lambda t, w: torch.zeros(1024, 1))
    with pytest.raises(BertFeatureError, match="expected"):
        broken.bert_features(broken.process("你好世界。", "zh", "cut0")[0])


def test_prompt_text_adds_final_punctuation(frontend: TextFrontend) -> None:
    seg = frontend.prompt_text("我是小明", "zh")
    assert isinstance(seg, Segment) and seg.norm_text.endswith(".") and seg.phones[-1] == "."
    assert frontend.prompt_text("I am here", "en").norm_text == "I am here."
    assert frontend.prompt_text("我是小明！", "zh").phones[-1] == "!"


def test_v1_ids_equal_v2_ids_for_zh_and_en() -> None:
    text = "你好，hello world。"
    v1 = TextFrontend("v1").process(text, "zh", "cut0")[0]
    v2 = TextFrontend("v2").process(text, "zh", "cut0")[0]
    assert v1.phone_ids == v2.phone_ids and max(v1.phone_ids) < 322


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_empty_text(frontend: TextFrontend, text: str) -> None:
    with pytest.raises(EmptyTextError, match="empty"):
        frontend.process(text, "zh")
    with pytest.raises(EmptyTextError):
        frontend.prompt_text(text, "zh")


def test_text_with_nothing_to_speak(frontend: TextFrontend) -> None:
    with pytest.raises(EmptyTextError, match="nothing to speak"):
        frontend.process("。。。！！！", "zh")
    with pytest.raises(EmptyTextError):
        frontend.process("😀😀", "zh")


def test_text_too_long() -> None:
    fe = TextFrontend(max_chars=100)
    assert fe.process("好" * 100, "zh", "cut0")
    with pytest.raises(TextTooLongError, match="101 characters"):
        fe.process("好" * 101, "zh")


def test_language_and_option_errors(frontend: TextFrontend) -> None:
    with pytest.raises(LanguageNotInstalledError, match="language 'ja' is not installed"):
        frontend.process("こんにちは", "ja")
    with pytest.raises(LanguageNotInstalledError, match="language 'ja' is not installed"):
        frontend.process("こんにちは、世界", "auto")
    with pytest.raises(UnknownLanguageError):
        frontend.process("hello", "fr")
    with pytest.raises(UnknownSplitMethodError):
        frontend.process("hello", "en", "cut7")
    with pytest.raises(UnknownVersionError):
        TextFrontend("v9")
    with pytest.raises(FrontendError, match="must be a str"):
        frontend.process(b"bytes", "en")  # type: ignore[arg-type]
    for exc in (EmptyTextError, TextTooLongError, LanguageNotInstalledError, UnknownLanguageError):
        assert issubclass(exc, FrontendError) and issubclass(exc, ValueError)
