"""Phone tables: sizes, order, fixed ids and the phone -> id mapping."""
from __future__ import annotations

import pytest

from gpt_sovits.text.errors import FrontendError, UnknownVersionError
from gpt_sovits.text.symbols import (
    UNK,
    is_known_phone,
    phones_to_ids,
    symbol_to_id,
    symbols,
    vocab_size,
)

# Ids listed in the reference notes (gptsovits-v2.md §1.3 and gptsovits-symbols.json).
KNOWN_IDS = {
    "!": 0, ",": 1, "-": 2, ".": 3, "?": 4, "AA": 5, "EE": 33, "OO": 66, "SP": 77, "SP2": 78,
    "SP3": 79, "UNK": 86, "_": 95, "…": 321, "[": 322, "]": 323, "停": 351, "空": 352,
}


def test_table_sizes() -> None:
    assert len(symbols("v2")) == vocab_size("v2") == 732
    assert len(symbols("v1")) == vocab_size("v1") == 322


def test_v1_is_prefix_of_v2() -> None:
    assert symbols("v2")[:322] == symbols("v1")


def test_fixed_ids() -> None:
    table = symbol_to_id("v2")
    for phone, idx in KNOWN_IDS.items():
        assert table[phone] == idx, phone


def test_table_order_follows_official_construction() -> None:
    v2 = symbols("v2")
    assert v2[:322] == sorted(v2[:322])  # sorted base set (code-point order)
    assert v2[322:324] == ["[", "]"]
    assert v2[324:353] == sorted(v2[324:353])  # korean
    assert v2[353:] == sorted(v2[353:]) and all(s.startswith("Y") for s in v2[353:])  # yue
    assert len(set(v2)) == 732


def test_later_versions_use_v2_table() -> None:
    for version in ("v2Pro", "v2ProPlus", "v3", "v4"):
        assert symbols(version) == symbols("v2")


def test_phones_to_ids_maps_unknown_to_unk() -> None:
    assert phones_to_ids(["n", "i2", "not-a-phone", "."]) == [227, 167, 86, 3]
    # "[" exists only in v2: v1 maps it to UNK, whose id is the same in both tables.
    assert phones_to_ids(["["], "v1") == [symbol_to_id("v1")[UNK]] == [86]
    assert phones_to_ids(["["], "v2") == [322]


def test_is_known_phone() -> None:
    assert is_known_phone("AH0") and is_known_phone("ir4")
    assert not is_known_phone("AH") and not is_known_phone("ㄱ", "v1")


def test_symbols_returns_a_copy() -> None:
    table = symbols("v2")
    table[0] = "changed"
    assert symbols("v2")[0] == "!"


def test_unknown_version() -> None:
    with pytest.raises(UnknownVersionError, match="v9") as info:
        symbols("v9")
    assert isinstance(info.value, FrontendError) and isinstance(info.value, ValueError)
