"""Similar-voice search over speaker embeddings: one exact faiss index per owner.

Embeddings are unit vectors (GE2E), so inner product equals cosine similarity and
`IndexFlatIP` gives exact answers. Owners rarely have more than thousands of voices, where a
flat scan takes microseconds; an approximate index would buy nothing. Indexes are per owner so
one customer's voices are never compared with (or revealed to) another's.

The index is a cache of the store: rebuilt from it at start-up, then updated on create/delete.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpt_sovits.errors import GSVError


class SimilarityError(GSVError, ValueError):
    """A query the index cannot answer (unknown voice, wrong embedding size)."""

    code = "invalid_similarity_query"


@dataclass(frozen=True)
class SimilarVoice:
    voice_id: str
    similarity: float
    """Cosine similarity in [-1, 1]; above about 0.85 usually means the same speaker (GE2E)."""


def normalize(embedding: np.ndarray) -> np.ndarray:
    """float32 unit vector; raises on zero or non-finite input."""
    v = np.asarray(embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise SimilarityError("speaker embedding is zero or not finite")
    return v / norm


class _OwnerIndex:
    """The voices of one owner: id order + vectors + a lazily rebuilt faiss index."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids: list[str] = []
        self.vectors: dict[str, np.ndarray] = {}
        self._index: Any = None

    def add(self, voice_id: str, vector: np.ndarray) -> None:
        if voice_id not in self.vectors:
            self.ids.append(voice_id)
        self.vectors[voice_id] = vector
        self._index = None

    def remove(self, voice_id: str) -> None:
        if self.vectors.pop(voice_id, None) is not None:
            self.ids.remove(voice_id)
            self._index = None

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        if not self.ids:
            return []
        if self._index is None:
            import faiss

            index = faiss.IndexFlatIP(self.dim)
            index.add(np.stack([self.vectors[i] for i in self.ids]))
            self._index = index
        scores, rows = self._index.search(query[None, :], min(k, len(self.ids)))
        return [(self.ids[r], float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]


class SimilarityIndex:
    """Per-owner nearest-neighbour search over unit speaker embeddings. Thread-safe."""

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self._owners: dict[str, _OwnerIndex] = {}
        self._owner_of: dict[str, str] = {}
        self._lock = threading.Lock()

    def rebuild(self, voices: Iterable[Any]) -> int:
        """Replace the contents with `voices` (records with id, owner, embedding); returns the count."""
        with self._lock:
            self._owners.clear()
            self._owner_of.clear()
        count = 0
        for record in voices:
            if record.embedding is not None:
                self.add(record.owner, record.id, record.embedding)
                count += 1
        return count

    def add(self, owner: str, voice_id: str, embedding: np.ndarray) -> None:
        vector = normalize(embedding)
        with self._lock:
            self._check_dim(vector)
            self._owners.setdefault(owner, _OwnerIndex(len(vector))).add(voice_id, vector)
            self._owner_of[voice_id] = owner

    def remove(self, voice_id: str) -> None:
        with self._lock:
            owner = self._owner_of.pop(voice_id, None)
            if owner is not None:
                self._owners[owner].remove(voice_id)

    def __contains__(self, voice_id: str) -> bool:
        return voice_id in self._owner_of

    def similar(self, owner: str, query: str | np.ndarray, k: int = 5) -> list[SimilarVoice]:
        """The `k` voices of `owner` most similar to a stored voice (by id) or to an embedding.

        A voice is never its own neighbour. Best first.
        """
        if k <= 0:
            return []
        with self._lock:
            index = self._owners.get(owner)
            if isinstance(query, str):
                if self._owner_of.get(query) != owner or index is None:
                    raise SimilarityError(f"Voice '{query}' has no speaker embedding in this index.",
                                          code="voice_not_found")
                vector, exclude = index.vectors[query], query
            else:
                vector, exclude = normalize(query), None
                self._check_dim(vector)
            if index is None:
                return []
            hits = index.search(vector, k + (1 if exclude else 0))
        return [SimilarVoice(vid, score) for vid, score in hits if vid != exclude][:k]

    def _check_dim(self, vector: np.ndarray) -> None:
        if self.dim is None:
            self.dim = len(vector)
        elif len(vector) != self.dim:
            raise SimilarityError(f"embedding has {len(vector)} values; this index holds {self.dim}")
