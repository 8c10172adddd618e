"""GPT-SoVITS phone tables (v1: 322 symbols, v2: 732 symbols) and phone -> id mapping.

The tables are data, not code: they live in ``symbols.json`` next to this file, copied byte-exact
from the official ``text/symbols.py`` / ``text/symbols2.py``. A phone id is the index in the list,
so the order must never change; v1 is a prefix of v2, so v1 ids are valid v2 ids.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Iterable

from .errors import UnknownVersionError

UNK = "UNK"
PAD = "_"
#: Punctuation phones shared by every language (ids 0..4 and 321, plus "-").
PUNCTUATION: tuple[str, ...] = ("!", "?", "…", ",", ".", "-")

# Model versions -> phone table. Every version after v1 uses the v2 table.
_VERSION_TABLE = {
    "v1": "v1",
    "v2": "v2",
    "v2Pro": "v2",
    "v2ProPlus": "v2",
    "v3": "v2",
    "v4": "v2",
}


def _table_name(version: str) -> str:
    try:
        return _VERSION_TABLE[version]
    except KeyError:
        known = ", ".join(_VERSION_TABLE)
        raise UnknownVersionError(
            f"unknown model version {version!r}: use one of {known}"
        ) from None


@lru_cache(maxsize=None)
def _load_tables() -> dict[str, tuple[str, ...]]:
    raw = resources.files(__package__).joinpath("symbols.json").read_text(encoding="utf-8")
    data = json.loads(raw)
    return {"v1": tuple(data["v1"]), "v2": tuple(data["v2"])}


@lru_cache(maxsize=None)
def _id_map(table: str) -> dict[str, int]:
    return {sym: i for i, sym in enumerate(_load_tables()[table])}


def symbols(version: str = "v2") -> list[str]:
    """Return the phone table for ``version`` (a fresh list; index = phone id)."""
    return list(_load_tables()[_table_name(version)])


def vocab_size(version: str = "v2") -> int:
    """Number of phone symbols for ``version`` (322 for v1, 732 otherwise)."""
    return len(_load_tables()[_table_name(version)])


def symbol_to_id(version: str = "v2") -> dict[str, int]:
    """Return a copy of the phone -> id mapping for ``version``."""
    return dict(_id_map(_table_name(version)))


def is_known_phone(phone: str, version: str = "v2") -> bool:
    """True when ``phone`` is in the table of ``version``."""
    return phone in _id_map(_table_name(version))


def phones_to_ids(phones: Iterable[str], version: str = "v2") -> list[int]:
    """Map phones to ids; a phone missing from the table maps to the id of ``UNK``."""
    table = _id_map(_table_name(version))
    unk = table[UNK]
    return [table.get(p, unk) for p in phones]
