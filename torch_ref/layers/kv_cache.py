"""External key/value cache for incremental (streaming) attention (torch mirror).

Same API and semantics as ``mlx_speech/layers/kv_cache.py`` (see its docstring): keys and
values ``(B, H_kv, S, Dh)``, keys stored after RoPE; ``offset`` counts every position ever
appended; with ``context`` the cache keeps the last ``context`` positions between calls and
returns those plus the whole new chunk. :class:`CrossKVCache` holds a cross-attention's memory
keys and values, projected once.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys/values of one attention layer across calls.

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
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None
        self._length = 0

    @property
    def length(self) -> int:
        """Number of positions currently held (before the next update)."""
        return self._length

    @property
    def key_start(self) -> int:
        """Absolute position of the first held key."""
        return self.offset - self._length

    def update_and_fetch(self, k: torch.Tensor,
                         v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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

    def _check(self, k: torch.Tensor, v: torch.Tensor) -> None:
        if k.dim() != 4 or k.shape != v.shape:
            raise ValueError(
                f"KVCache expects k and v of the same shape (B, H, T, Dh), got "
                f"{tuple(k.shape)} and {tuple(v.shape)}")
        if self._keys is not None:
            held = self._keys.shape
            if (held[0], held[1], held[3]) != (k.shape[0], k.shape[1], k.shape[3]):
                raise ValueError(
                    f"KVCache holds (B, H, Dh) = {(held[0], held[1], held[3])} but got "
                    f"{(k.shape[0], k.shape[1], k.shape[3])}; call reset() for a new stream")

    def _append_window(self, k: torch.Tensor,
                       v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._keys is None:
            keys, values = k, v
        else:
            keys = torch.cat([self._keys, k], dim=2)
            values = torch.cat([self._values, v], dim=2)
        keep = min(keys.shape[2], self.context)
        self._keys = keys[:, :, keys.shape[2] - keep:]
        self._values = values[:, :, values.shape[2] - keep:]
        self._length = keep
        return keys, values

    def _append_unbounded(self, k: torch.Tensor,
                          v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, H, T, Dh = k.shape
        end = self._length + T
        if self._keys is None or end > self._keys.shape[2]:
            capacity = ((end + self.step - 1) // self.step) * self.step
            grown_k = k.new_zeros((B, H, capacity, Dh))
            grown_v = v.new_zeros((B, H, capacity, Dh))
            if self._keys is not None and self._length:
                grown_k[:, :, : self._length] = self._keys[:, :, : self._length]
                grown_v[:, :, : self._length] = self._values[:, :, : self._length]
            self._keys, self._values = grown_k, grown_v
        # Written in place: a cache is for inference (autograd would see a modified buffer).
        self._keys[:, :, self._length: end] = k
        self._values[:, :, self._length: end] = v
        self._length = end
        return self._keys[:, :, :end], self._values[:, :, :end]


class CrossKVCache:
    """Keys/values of one cross-attention layer over one memory (mirror of
    ``mlx_speech.layers.kv_cache.CrossKVCache``): filled on the first call, then reused."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    @property
    def filled(self) -> bool:
        return self.keys is not None

    def set(self, k: torch.Tensor, v: torch.Tensor) -> None:
        if k.dim() != 4 or k.shape != v.shape:
            raise ValueError(
                f"CrossKVCache expects k and v of the same shape (B, H, S, Dh), got "
                f"{tuple(k.shape)} and {tuple(v.shape)}")
        self.keys, self.values = k, v
