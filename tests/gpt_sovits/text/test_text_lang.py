"""Language codes, script-based run splitting and the G2P backend registry."""
from __future__ import annotations

import pytest

from gpt_sovits.text.errors import FrontendError, LanguageNotInstalledError, UnknownLanguageError
from gpt_sovits.text.lang import (
    LANGUAGE_CODES,
    LangRun,
    check_language,
    get_g2p,
    installed_languages,
    register_g2p,
    segment_languages,
    split_by_script,
    unregister_g2p,
)


def runs(text: str, code: str) -> list[tuple[str, str]]:
    return [(r.lang, r.text) for r in segment_languages(text, code)]


def test_language_codes() -> None:
    assert set(LANGUAGE_CODES) == {"auto", "auto_yue", "en", "zh", "ja", "ko", "yue",
                                   "all_zh", "all_ja", "all_ko", "all_yue"}
    assert installed_languages() == ["en", "zh"]


def test_mixed_zh_en_runs() -> None:
    assert runs("我喜欢Python和C语言。", "zh") == [
        ("zh", "我喜欢"), ("en", "Python"), ("zh", "和"), ("en", "C"), ("zh", "语言。")]
    assert runs("Hello, 世界!", "auto") == [("en", "Hello, "), ("zh", "世界!")]


def test_digits_attach_to_neighbours() -> None:
    assert runs("版本2.0很好", "zh") == [("zh", "版本2.0很好")]
    assert runs("GPT4是模型", "zh") == [("en", "GPT4"), ("zh", "是模型")]
    assert runs("I have 3个苹果", "zh") == [("en", "I have "), ("zh", "3个苹果")]
    assert runs("2024年", "auto") == [("zh", "2024年")]
    assert runs("It is 25% off", "zh") == [("en", "It is 25% off")]
    assert runs("重5kg的箱子", "zh") == [("zh", "重5kg的箱子")]
    assert runs("123", "zh") == [("zh", "123")] and runs("123", "en") == [("en", "123")]


def test_script_detection() -> None:
    assert [r.lang for r in split_by_script("こんにちは世界안녕hi")] == ["ja", "zh", "ko", "en"]


def test_en_and_all_codes() -> None:
    assert runs("你好 world", "en") == [("en", "你好 world")]
    spelled = segment_languages("用GPT写", "all_zh")
    assert spelled == [LangRun("zh", "用"), LangRun("en", "GPT", spell=True), LangRun("zh", "写")]
    assert runs("a  b   c", "en") == [("en", "a b c")]  # repeated spaces squeezed


def test_user_language_codes_take_non_english_runs() -> None:
    assert runs("こんにちは hello", "ja") == [("ja", "こんにちは "), ("en", "hello")]
    assert runs("你好世界", "auto_yue") == [("yue", "你好世界")]


@pytest.mark.parametrize("code", ["ja", "ko", "yue", "all_ja", "all_ko", "all_yue", "auto_yue"])
def test_uninstalled_languages_raise(code: str) -> None:
    with pytest.raises(LanguageNotInstalledError, match=r"language '(ja|ko|yue)' is not installed"):
        check_language(code)


def test_unknown_code_raises() -> None:
    with pytest.raises(UnknownLanguageError, match="xx") as info:
        check_language("xx")
    assert isinstance(info.value, FrontendError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownLanguageError):
        segment_languages("hi", "english")


def test_register_custom_backend() -> None:
    class FakeJapanese:
        lang = "ja"

        def normalize(self, text: str) -> str:
            return text.strip()

        def g2p(self, norm_text: str) -> tuple[list[str], list[int] | None]:
            return ["k", "o", "N"], None

    register_g2p("ja", FakeJapanese)
    try:
        check_language("all_ja")
        assert get_g2p("ja").g2p("こ") == (["k", "o", "N"], None)
        assert "ja" in installed_languages()
    finally:
        unregister_g2p("ja")
    with pytest.raises(LanguageNotInstalledError):
        get_g2p("ja")
