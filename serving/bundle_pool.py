"""`BundlePool`: the base bundle plus an LRU of per-voice fine-tuned bundles derived from it.

Fine-tuned voices swap only their GPT and/or SoVITS (`ModelBundle.with_weights`), so the pool
shares the expensive feature extractors and loads each fine-tune once, however many workers ask
for it at the same time.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class BundlePool:
    """LRU pool of per-voice bundles derived from one base bundle (the base is always kept)."""

    def __init__(self, base: Any, capacity: int) -> None:
        self.base = base
        self.capacity = max(0, capacity)
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self.loads = 0

    def get(self, gpt: str | None, sovits: str | None) -> Any:
        if not gpt and not sovits:
            return self.base
        key = (gpt or "", sovits or "")
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one load per key even when several workers ask at once
            with self._lock:
                if key in self._items:
                    return self._items[key]
            bundle = self.base.with_weights(gpt or None, sovits or None)
            with self._lock:
                self.loads += 1
                self._items[key] = bundle
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
                self._loading.pop(key, None)
            return bundle

    def put(self, gpt: str | None, sovits: str | None, bundle: Any) -> None:
        """Adopt a bundle already loaded for these weight paths (an upload validated it by loading
        it), so the voice's first synthesis does not load the same files again."""
        if not gpt and not sovits or self.capacity == 0:
            return
        key = (gpt or "", sovits or "")
        with self._lock:
            self._items[key] = bundle
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def evict(self, gpt: str | None, sovits: str | None) -> bool:
        """Forget a fine-tuned bundle (its voice was deleted); True if it was loaded."""
        with self._lock:
            return self._items.pop((gpt or "", sovits or ""), None) is not None

    def __len__(self) -> int:
        return len(self._items)
