"""SimilarityIndex: exact cosine ranking per owner, removal, rebuild, bad queries."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from serving.similarity import SimilarityError, SimilarityIndex


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_ranking_is_cosine_and_excludes_the_query() -> None:
    index = SimilarityIndex()
    index.add("o", "a", np.array([1, 0, 0], np.float32) * 5)  # stored normalised
    index.add("o", "b", _unit(1, 1, 0))
    index.add("o", "c", _unit(0, 0, 1))
    hits = index.similar("o", "a", k=5)
    assert [h.voice_id for h in hits] == ["b", "c"]
    assert hits[0].similarity == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert hits[1].similarity == pytest.approx(0.0, abs=1e-6)
    by_vector = index.similar("o", np.array([0, 0.1, 1], np.float32), k=1)
    assert [h.voice_id for h in by_vector] == ["c"]


def test_owners_are_separate_and_removal_works() -> None:
    index = SimilarityIndex()
    index.add("o1", "a", _unit(1, 0))
    index.add("o2", "b", _unit(1, 0))
    assert index.similar("o1", _unit(1, 0), k=3)[0].voice_id == "a"
    assert [h.voice_id for h in index.similar("o2", _unit(1, 0), k=3)] == ["b"]
    with pytest.raises(SimilarityError):
        index.similar("o2", "a")  # another owner's voice is unknown here
    index.remove("a")
    assert "a" not in index
    assert index.similar("o1", _unit(1, 0), k=3) == []
    assert index.similar("nobody", _unit(1, 0)) == []


def test_rebuild_and_bad_vectors() -> None:
    index = SimilarityIndex()
    records = [SimpleNamespace(id="a", owner="o", embedding=_unit(1, 0, 0)),
               SimpleNamespace(id="b", owner="o", embedding=None),
               SimpleNamespace(id="c", owner="o", embedding=_unit(0, 1, 0))]
    assert index.rebuild(records) == 2
    assert "b" not in index and [h.voice_id for h in index.similar("o", "a")] == ["c"]
    with pytest.raises(SimilarityError):
        index.add("o", "d", np.zeros(3, np.float32))
    with pytest.raises(SimilarityError):
        index.add("o", "e", np.ones(4, np.float32))  # wrong size
    with pytest.raises(SimilarityError):
        index.similar("o", np.array([np.nan, 0, 0], np.float32))
