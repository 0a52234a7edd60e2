"""External key/value cache for incremental (streaming) attention (MLX).

One :class:`KVCache` per attention layer, made by ``MultiHeadAttention.make_cache()`` or, for
a stack, ``Transformer.make_cache()`` (a list, one per layer). The cache is state, not a
parameter: it lives outside the module tree, so a model can serve several streams at once and
its weights stay immutable.

Layout: keys and values are ``(B, H_kv, S, Dh)``, keys stored *after* RoPE (a key's rotation
depends only on its own absolute position, so it never has to be recomputed).

``offset`` counts every position ever appended: the next query sits at absolute position
``offset``. After ``update_and_fetch`` returns ``S`` keys, they are the positions
``offset - S ... offset - 1`` (``key_start``).

Bounded context (sliding window, Mimi: ``context=250``): a query at position ``p`` sees keys
``p - context < q <= p``. Between calls the cache keeps only the last ``context`` positions,
which covers every key a future query can see (``context - 1`` would suffice; one spare row
is masked out by the window). Within one call the returned keys are the kept ones plus the
whole new chunk, so a chunk of any length attends exactly as the full masked pass.
Unbounded context (``context=None``): keys are kept in a buffer grown in steps of
``step`` positions and written in place, so a long decode does not copy the history at
every step.

Cross-attention (:class:`CrossKVCache`): the keys and values of a fixed memory (an encoder's
output) do not grow; they are projected once per memory, on the first call, and reused by
every later query.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np


class KVCache:
    """Keys/values of one attention layer across calls; see the module docstring.

    Args:
        context: keep only the last ``context`` positions (sliding window); None keeps all.
        step: growth of the unbounded buffer, in positions.
    """

    def __init__(self, *, context: int | None = None, step: int = 256) -> None:
        if context is not None and (not isinstance(context, int) or context <= 0):
            raise ValueError(f"KVCache: context must be a positive int or None, got {context!r}")
        if not isinstance(step, int) or step <= 0:
            raise ValueError(f"KVCache: step must be a positive int, got {step!r}")
        self.context = context
        self.step = step
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new stream starts at position 0)."""
        self.offset = 0
        self._keys: mx.array | None = None
        self._values: mx.array | None = None
        self._length = 0  # valid rows in the buffers

    @property
    def length(self) -> int:
        """Number of positions currently held (before the next update)."""
        return self._length

    @property
    def key_start(self) -> int:
        """Absolute position of the first held key."""
        return self.offset - self._length

    def update_and_fetch(self, k: mx.array, v: mx.array) -> tuple[mx.array, mx.array]:
        """Append ``k, v`` ``(B, H_kv, T, Dh)``; return every key/value a query of this chunk
        may attend to, ``(B, H_kv, S, Dh)``, ending with the new chunk."""
        self._check(k, v)
        T = k.shape[2]
        if self.context is None:
            keys, values = self._append_unbounded(k, v)
        else:
            keys, values = self._append_window(k, v)
        self.offset += T
        return keys, values

    def _check(self, k: mx.array, v: mx.array) -> None:
        if k.ndim != 4 or k.shape != v.shape:
            raise ValueError(
                f"KVCache expects k and v of the same shape (B, H, T, Dh), got {k.shape} "
                f"and {v.shape}")
        if self._keys is not None:
            held = self._keys.shape
            if (held[0], held[1], held[3]) != (k.shape[0], k.shape[1], k.shape[3]):
                raise ValueError(
                    f"KVCache holds (B, H, Dh) = {(held[0], held[1], held[3])} but got "
                    f"{(k.shape[0], k.shape[1], k.shape[3])}; call reset() for a new stream")

    def _append_window(self, k: mx.array, v: mx.array) -> tuple[mx.array, mx.array]:
        if self._keys is None:
            keys, values = k, v
        else:
            keys = mx.concatenate([self._keys, k], axis=2)
            values = mx.concatenate([self._values, v], axis=2)
        keep = min(keys.shape[2], self.context)
        self._keys = keys[:, :, keys.shape[2] - keep:]
        self._values = values[:, :, values.shape[2] - keep:]
        self._length = keep
        return keys, values

    def _append_unbounded(self, k: mx.array, v: mx.array) -> tuple[mx.array, mx.array]:
        B, H, T, Dh = k.shape
        end = self._length + T
        if self._keys is None or end > self._keys.shape[2]:
            capacity = ((end + self.step - 1) // self.step) * self.step
            grown_k = mx.zeros((B, H, capacity, Dh), dtype=k.dtype)
            grown_v = mx.zeros((B, H, capacity, Dh), dtype=v.dtype)
            if self._keys is not None and self._length:
                grown_k[:, :, : self._length] = self._keys[:, :, : self._length]
                grown_v[:, :, : self._length] = self._values[:, :, : self._length]
            self._keys, self._values = grown_k, grown_v
        self._keys[:, :, self._length: end] = k
        self._values[:, :, self._length: end] = v
        self._length = end
        return self._keys[:, :, :end], self._values[:, :, :end]


class CrossKVCache:
    """Keys/values of one cross-attention layer over one memory, ``(B, H_kv, S, Dh)`` each:
    empty until :class:`~mlx_speech.layers.attention.CrossAttention` fills it on its first
    call, then read as they are (the memory is fixed, so they never change). ``reset()`` before
    a new memory (a new utterance)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.keys: mx.array | None = None
        self.values: mx.array | None = None

    @property
    def filled(self) -> bool:
        return self.keys is not None

    def set(self, k: mx.array, v: mx.array) -> None:
        if k.ndim != 4 or k.shape != v.shape:
            raise ValueError(
                f"CrossKVCache expects k and v of the same shape (B, H, S, Dh), got {k.shape} "
                f"and {v.shape}")
        self.keys, self.values = k, v


class RingKVCache:
    """Keys/values of every layer of a stack in fixed-size rings, for a compiled streaming step
    (:meth:`mlx_speech.layers.transformer.Transformer.step`); sliding-window stacks only.

    Each layer's keys (after RoPE) and values are ``(B, H_kv, W, Dh)`` with ``W >= context + T``
    for chunks of ``T`` positions: absolute position ``p`` lives in slot ``p % W``, so a step
    writes its ``T`` new rows in place and every array keeps its shape from the first chunk on
    (``mx.compile`` replays one graph; the list cache above grows until the window is full,
    which for Mimi at 25 Hz takes 10 s). Slot ``s`` then holds position
    ``last - ((last - s) mod W)`` (``last`` = newest position); slots never written or outside a
    query's window are masked, so attention sees what the list cache returns, in slot order.
    """

    def __init__(self, *, context: int, num_layers: int) -> None:
        if not isinstance(context, int) or context <= 0:
            raise ValueError(f"RingKVCache: context must be a positive int, got {context!r}")
        self.context = context
        self.num_layers = num_layers
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new stream starts at position 0)."""
        self.offset = 0
        self.keys: list[mx.array] | None = None
        self.values: list[mx.array] | None = None

    @property
    def capacity(self) -> int:
        return 0 if self.keys is None else self.keys[0].shape[2]

    def prepare(self, batch: int, kv_heads: int, head_dim: int, chunk: int, dtype: mx.Dtype) -> None:
        """Make the rings fit a chunk of ``chunk`` positions (allocate, or re-lay the held
        positions into larger rings when a longer chunk arrives)."""
        need = self.context + chunk
        if self.keys is not None:
            held = self.keys[0].shape
            if (held[0], held[1], held[3]) != (batch, kv_heads, head_dim):
                raise ValueError(
                    f"RingKVCache holds (B, H, Dh) = {(held[0], held[1], held[3])} but got "
                    f"{(batch, kv_heads, head_dim)}; call reset() for a new stream")
            if self.capacity >= need:
                return
        shape = (batch, kv_heads, need, head_dim)
        if self.keys is None or self.offset == 0:
            self.keys = [mx.zeros(shape, dtype=dtype) for _ in range(self.num_layers)]
            self.values = [mx.zeros(shape, dtype=dtype) for _ in range(self.num_layers)]
            return
        old, last = self.capacity, self.offset - 1
        # every position a later query can see is held: move each to its slot in the new ring
        pos = np.arange(max(0, last - old + 1), last + 1)
        take = np.zeros(need, dtype=np.int32)
        take[pos % need] = pos % old
        idx = mx.array(take)
        self.keys = [mx.take(k, idx, axis=2) for k in self.keys]
        self.values = [mx.take(v, idx, axis=2) for v in self.values]


class RingView:
    """One layer's ring inside :class:`RingKVCache`'s compiled step, seen through the cache
    interface :class:`~mlx_speech.layers.attention.MultiHeadAttention` uses: ``offset`` (an
    int32 array: the chunk's first position), ``update_and_fetch`` (writes the chunk's rows into
    their slots and returns the whole ring) and ``visible``, the ``(1, 1, T, W)`` attention mask
    that replaces the window mask (slots are not in time order). Made by :func:`ring_views`.
    """

    def __init__(self, keys: mx.array, values: mx.array, offset: mx.array, slots: mx.array,
                 visible: mx.array) -> None:
        self.keys, self.values, self.offset = keys, values, offset
        self._slots, self.visible = slots, visible

    def update_and_fetch(self, k: mx.array, v: mx.array) -> tuple[mx.array, mx.array]:
        where = mx.broadcast_to(self._slots[None, None, :, None], k.shape)
        self.keys = mx.put_along_axis(self.keys, where, k, axis=2)
        self.values = mx.put_along_axis(self.values, where, v, axis=2)
        return self.keys, self.values


def ring_views(keys: list[mx.array], values: list[mx.array], offset: mx.array, chunk: int,
               context: int) -> list[RingView]:
    """A :class:`RingView` per layer for a chunk of ``chunk`` positions starting at ``offset``;
    the slot layout and the mask are computed once and shared."""
    W = keys[0].shape[2]
    last = offset + chunk - 1
    held = last - mx.remainder(last - mx.arange(W), W)  # absolute position in each slot
    query = offset + mx.arange(chunk)
    visible = ((held[None, :] >= 0) & (held[None, :] <= query[:, None])
               & (query[:, None] - held[None, :] < context))[None, None]
    slots = mx.remainder(query, W)
    return [RingView(k, v, offset, slots, visible) for k, v in zip(keys, values)]
