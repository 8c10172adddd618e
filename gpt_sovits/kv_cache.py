"""Preallocated key/value cache for the text->semantic transformer, plus the attention mask rule.

Layout. Every row of a batch is one sequence `[text | audio]` laid out on a shared slot axis and
*left-padded*, so that all rows end on the same slot and each decoding step writes one new slot
at the same index for every row. Per row we keep two numbers:

- `pad[b]`: the first valid slot (slots before it are padding and are never attended to);
- `prefix_end[b]`: the first audio slot (slots in `[pad, prefix_end)` hold text).

Attention rule (the official GPT-SoVITS mask, restated per slot): a query at slot i may look at a
key at slot j iff j is valid and (j <= i or j is text). Text is a bidirectional prefix and audio is
causal; text queries never see audio because audio slots come after all text slots. The same
function builds the mask for teacher-forced training and for cached decoding, so the two paths
cannot drift apart.

Buffers. Keys and values are stored projected and *head-major*
(`[n_layer, B, n_head, max_len, head_dim]`), written in place at the current slot: no `torch.cat`
per step. Head-major because a decoding step is bound by reading the cache: attention walks each
head's keys, and with the unsplit `[max_len, hidden]` rows every head read 128-byte pieces 2 KB
apart (v2 INT8 on CPU: ~220 us per layer over 260 slots vs ~150 us head-major, 24 layers a step).
`update` hands the slots back as a `[B, L, n_head, head_dim]` view, which the attention splits
like unsplit K/V; `k`/`v` give an unsplit copy for inspection. Two modes share the same model code:

- dynamic (default): the write index is a host integer and attention reads `[:length]`; cheapest
  on CPU because a step only touches the slots filled so far.
- static: the write index is a device tensor, attention always reads all `max_len` slots and the
  mask hides the unwritten ones. Every step then has the same shapes and launches the same
  kernels, which is what CUDA-graph capture or a fixed-shape ONNX step needs.
"""
from __future__ import annotations

import threading

import torch
from torch import Tensor

from gpt_sovits.config import GPTConfig


class KVCacheError(RuntimeError):
    """Misuse of a KVCache (overflow, layout set twice, wrong batch size)."""


def attention_mask(
    query_slots: Tensor, key_slots: Tensor, prefix_end: Tensor, key_valid: Tensor
) -> Tensor:
    """Boolean mask `[B, 1, S, L]`, True where a query may attend to a key.

    Args:
        query_slots: `[S]` slot index of each query.
        key_slots: `[L]` slot index of each key.
        prefix_end: `[B]` first audio slot per row (keys before it are text, visible to all).
        key_valid: `[B, L]` False for padding keys.
    """
    causal = key_slots.unsqueeze(0) <= query_slots.unsqueeze(1)  # [S, L]
    in_text = key_slots.unsqueeze(0) < prefix_end.unsqueeze(1)  # [B, L]
    allowed = causal.unsqueeze(0) | in_text.unsqueeze(1)  # [B, S, L]
    return (allowed & key_valid.unsqueeze(1)).unsqueeze(1)


class KVCache:
    """Per-layer K/V buffers of fixed capacity, written in place one block of slots at a time.

    Protocol used by `T2SModel.forward`: `mask = cache.prepare(S)` once, then
    `k, v = cache.update(layer, k_new, v_new)` in every layer, then `cache.advance()`.
    """

    def __init__(
        self,
        n_layer: int,
        batch: int,
        max_len: int,
        hidden: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        static: bool = False,
        n_head: int = 1,
    ) -> None:
        if min(n_layer, batch, max_len, hidden, n_head) < 1 or hidden % n_head:
            raise KVCacheError(
                f"KVCache sizes must be positive, got n_layer={n_layer} batch={batch} "
                f"max_len={max_len} hidden={hidden} (a multiple of n_head={n_head})"
            )
        # Dynamic mode only ever reads slots it has written, so the buffers may start
        # uninitialised (no 100+ MB memset on the latency path). Static mode reads every slot:
        # masked keys get zero weight, but 0 * NaN garbage would still poison the output.
        alloc = torch.zeros if static else torch.empty
        shape = (n_layer, batch, n_head, max_len, hidden // n_head)
        self.key_heads = alloc(shape, device=device, dtype=dtype)
        self.value_heads = alloc(shape, device=device, dtype=dtype)
        self.n_head = n_head
        self.static = static
        self.capacity = batch
        self.max_len = max_len
        self._slots = torch.arange(max_len, device=self.key_heads.device)
        self._cursor = torch.zeros((), dtype=torch.long, device=self.key_heads.device)
        self.pad = torch.zeros(batch, dtype=torch.long, device=self.key_heads.device)
        self.prefix_end = torch.zeros(batch, dtype=torch.long, device=self.key_heads.device)
        self.batch = batch
        self.length = 0
        self._has_pad = False
        self._step = 0
        self._query_slots: Tensor | None = None
        self._write_index: Tensor | None = None

    @classmethod
    def for_config(
        cls,
        cfg: GPTConfig,
        batch: int,
        max_len: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        static: bool = False,
    ) -> "KVCache":
        """A cache sized for the model described by `cfg`."""
        return cls(
            cfg.n_layer, batch, max_len, cfg.hidden_dim, device=device, dtype=dtype, static=static,
            n_head=cfg.n_head,
        )

    @staticmethod
    def _unsplit(buf: Tensor) -> Tensor:
        n_layer, batch, n_head, max_len, head_dim = buf.shape
        return buf.transpose(2, 3).reshape(n_layer, batch, max_len, n_head * head_dim)

    @property
    def k(self) -> Tensor:
        """Keys as `[n_layer, B, max_len, hidden]` (a copy; for inspection and tests)."""
        return self._unsplit(self.key_heads)

    @property
    def v(self) -> Tensor:
        """Values as `[n_layer, B, max_len, hidden]` (a copy; for inspection and tests)."""
        return self._unsplit(self.value_heads)

    # ----------------------------------------------------------------------------- layout
    def set_layout(self, pad: Tensor, prefix_end: Tensor) -> None:
        """Declare per-row padding and text length before the first (prefill) write."""
        if self.length != 0:
            raise KVCacheError("set_layout must be called on an empty cache (call reset() first)")
        if pad.shape != (self.batch,) or prefix_end.shape != (self.batch,):
            raise KVCacheError(
                f"pad and prefix_end must have shape ({self.batch},), got "
                f"{tuple(pad.shape)} and {tuple(prefix_end.shape)}"
            )
        self.pad.copy_(pad)
        self.prefix_end.copy_(prefix_end)
        # One host read per layout (not per step): lets unpadded decoding skip the mask.
        self._has_pad = bool(pad.any())

    def reset(self) -> None:
        """Forget all content and layout; buffers are kept for the next sequence."""
        self.batch = self.capacity
        self.length = 0
        self._cursor.zero_()
        self.pad.zero_()
        self.prefix_end.zero_()
        self._has_pad = False
        self._query_slots = None
        self._write_index = None

    def keep_rows(self, index: Tensor) -> None:
        """Keep only the rows in `index` (in that order), compacting them to the front in place.

        Used when some sequences of a batch have finished, so they stop costing compute.
        """
        n = int(index.numel())
        if n < 1 or n > self.batch:
            raise KVCacheError(f"keep_rows needs 1..{self.batch} indices, got {n}")
        end = self.max_len if self.static else self.length
        for buf in (self.key_heads, self.value_heads):
            buf[:, :n, :, :end] = buf[:, : self.batch, :, :end].index_select(1, index)
        self.pad[:n] = self.pad[: self.batch].index_select(0, index)
        self.prefix_end[:n] = self.prefix_end[: self.batch].index_select(0, index)
        self.batch = n

    # ------------------------------------------------------------------ forward protocol
    def prepare(self, num_new: int) -> Tensor | None:
        """Reserve `num_new` slots for the coming forward and return its attention mask.

        Returns None when no mask is needed (one new slot, no padding, dynamic mode): the query
        is the newest slot and sees every key before it.
        """
        if self.length + num_new > self.max_len:
            raise KVCacheError(
                f"KVCache overflow: {self.length} + {num_new} slots > max_len {self.max_len}; "
                "allocate a larger cache"
            )
        if self.static:
            self._query_slots = self._cursor + self._slots[:num_new]
            self._write_index = self._query_slots
            key_slots = self._slots
        else:
            self._query_slots = self._slots[self.length : self.length + num_new]
            key_slots = self._slots[: self.length + num_new]
            if num_new == 1 and not self._has_pad:
                return None
        rows = slice(0, self.batch)
        key_valid = key_slots.unsqueeze(0) >= self.pad[rows].unsqueeze(1)
        return attention_mask(self._query_slots, key_slots, self.prefix_end[rows], key_valid)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write this forward's keys/values `[B, S, hidden]` for `layer`; return all readable ones
        as `[B, n_head, L, head_dim]` views of the head-major buffers (attention's own layout, so
        a decode step splits no heads; export caches return unsplit `[B, L, hidden]` instead)."""
        kb, vb = self.key_heads[layer, : self.batch], self.value_heads[layer, : self.batch]
        b, s, hidden = k.shape
        k = k.view(b, s, self.n_head, hidden // self.n_head).transpose(1, 2)
        v = v.view(b, s, self.n_head, hidden // self.n_head).transpose(1, 2)
        if self.static:
            assert self._write_index is not None, "prepare() must be called before update()"
            kb.index_copy_(2, self._write_index, k)
            vb.index_copy_(2, self._write_index, v)
            return kb, vb
        end = self.length + s
        kb[:, :, self.length : end] = k
        vb[:, :, self.length : end] = v
        return kb[:, :, :end], vb[:, :, :end]

    def advance(self) -> None:
        """Commit the slots reserved by `prepare`."""
        if self._query_slots is None:
            raise KVCacheError("advance() called without prepare()")
        n = int(self._query_slots.shape[0])
        self.length += n
        if self.static:
            self._cursor += n
        self._query_slots = None
        self._write_index = None

    def audio_positions(self, num_new: int) -> Tensor:
        """`[B, num_new]` audio position ids of the next slots (audio positions restart at 0)."""
        start = self._cursor if self.static else self.length
        slots = start + self._slots[:num_new]
        return slots.unsqueeze(0) - self.prefix_end[: self.batch].unsqueeze(1)


class SpareCaches:
    """Eager KV caches of finished sequences, kept for the next ones.

    A fresh cache is uninitialised memory that the prefill then faults in page by page (v2,
    ~250 prompt slots, 1,500-slot capacity: 10-20 ms of a 160 ms CPU prefill); a reused one is
    already resident. Capacities are rounded up to `bucket` slots so caches fit later requests.
    """

    def __init__(self, cfg: GPTConfig, device: torch.device, dtype: torch.dtype, keep: int,
                 bucket: int = 512) -> None:
        self.cfg, self.device, self.dtype, self.keep, self.bucket = cfg, device, dtype, keep, bucket
        self._free: list[KVCache] = []
        self._lock = threading.Lock()

    def take(self, slots: int) -> KVCache:
        with self._lock:
            fits = [c for c in self._free if c.max_len >= slots]
            if fits:
                cache = min(fits, key=lambda c: c.max_len)
                self._free.remove(cache)
                cache.reset()
                return cache
        size = min(-(-slots // self.bucket) * self.bucket, max(slots, self.cfg.max_positions))
        return KVCache.for_config(self.cfg, 1, size, device=self.device, dtype=self.dtype)

    def give(self, cache: KVCache) -> None:
        with self._lock:
            self._free.append(cache)
            self._free.sort(key=lambda c: c.max_len, reverse=True)
            del self._free[self.keep:]  # keep the largest: they fit every later request
