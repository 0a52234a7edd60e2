"""Rotary position embedding (RoPE, Su et al. 2021) in both feature conventions (MLX).

A head vector ``x`` of size ``Dh`` is split into ``Dh / 2`` pairs; pair ``i`` at position ``t``
is rotated by the angle ``t / period_i`` with ``period_i = max_period ** (2 i / Dh)``.
Which features form pair ``i`` is the convention:

* interleaved (moshi, ``mx.fast.rope(traditional=True)``): pair ``i`` is ``(x[2i], x[2i+1])``;
* rotate-half (HF transformers, GPT-NeoX): pair ``i`` is ``(x[i], x[i + Dh/2])``.

Both rotate ``(a, b) -> (a cos - b sin, a sin + b cos)``. They are the same map up to a fixed
permutation of the head features, see :func:`interleaved_to_rotate_half_perm`.

Periods are computed once in float64 and rounded to float32 (:func:`rope_periods`); MLX and
torch_ref both take ``angle = position * (1 / period)`` in float32, so the two agree to
rounding at any position (a differently derived inverse frequency differs by an ulp, which at
position 5000 is already ~1e-3 in the output).

CPU path of :class:`RotaryEmbedding` (when MLX's default device is the CPU, the offset a Python
int and ``x`` float32): ``mx.fast.rope`` has no CPU kernel, and its fallback takes ``cos`` and
``sin`` of every angle on every call, scalar loops that cost more than the rest of the rotation.
There the layers keep one table (shared by head size and period) of ``cos`` / ``sin`` per
position (same float32 angles, the trigonometry in float64 rounded to float32, i.e. within an
ulp of MLX's own), grown by doubling, and rotate with one compiled elementwise kernel per shape. Same maths, outputs equal the
fused op to float32 rounding; a GPU, a traced (array) offset or another dtype takes
``mx.fast.rope``.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.layers.activations import _on_cpu, _PerShape
from mlx_speech.weights.rope_perm import (  # noqa: F401  (re-exported)
    interleaved_to_rotate_half_perm, permute_head_rows, rotate_half_to_interleaved_perm)
from mlx_speech.weights.rope_perm import check_rope_args as _check


def rope_periods(head_dim: int, max_period: float) -> np.ndarray:
    """``(Dh/2,)`` float32 periods ``max_period ** (2 i / Dh)``, computed in float64."""
    _check(head_dim, max_period)
    return (float(max_period) ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
            ).astype(np.float32)


def apply_rope(x: mx.array, *, offset: int = 0, max_period: float = 10000.0,
               interleaved: bool = True) -> mx.array:
    """Rotate ``x`` of shape ``(B, H, T, Dh)``; position of ``x[:, :, t]`` is ``offset + t``."""
    periods = mx.array(rope_periods(x.shape[-1], max_period))
    return _rope(x, periods, offset, interleaved)


def _rope(x: mx.array, periods: mx.array, offset: int, interleaved: bool) -> mx.array:
    # freqs= takes periods; the kernel uses 1 / period, as rope_periods documents.
    return mx.fast.rope(x, x.shape[-1], traditional=interleaved, base=None, scale=1.0,
                        offset=offset, freqs=periods)


def _rotate_interleaved(x: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
    a, b = x[..., 0::2], x[..., 1::2]
    return mx.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(x.shape)


def _rotate_half(x: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return mx.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


_rotate_interleaved_k = _PerShape(_rotate_interleaved)
_rotate_half_k = _PerShape(_rotate_half)
_TABLE_MIN = 256  # positions in the first table
_TABLES: dict[tuple[int, float], tuple[mx.array, mx.array]] = {}  # (Dh, max_period) -> cos, sin


def rope_table(periods: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``cos``, ``sin`` ``(n, Dh/2)`` float32 of positions ``0 .. n-1``: the float32 angle
    ``t * (1 / period)`` of ``mx.fast.rope``, its cosine and sine in float64."""
    inv = np.float32(1.0) / periods.astype(np.float32)
    theta = (np.arange(n, dtype=np.float32)[:, None] * inv[None]).astype(np.float64)
    return np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)


class RotaryEmbedding(nn.Module):
    """RoPE on ``(B, H, T, Dh)`` queries or keys; no parameters.

    Args:
        head_dim: features per head ``Dh`` (even).
        max_period: longest period (moshi / Mimi: 10000).
        interleaved: True for moshi's pair layout, False for HF's rotate-half.
    """

    def __init__(self, *, head_dim: int, max_period: float = 10000.0,
                 interleaved: bool = True) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.max_period = float(max_period)
        self.interleaved = bool(interleaved)
        self._periods = mx.array(rope_periods(head_dim, max_period))

    def _extra_repr(self) -> str:
        return (f"head_dim={self.head_dim}, max_period={self.max_period}, "
                f"interleaved={self.interleaved}")

    def __call__(self, x: mx.array, *, offset: int = 0) -> mx.array:
        """``x``: ``(B, H, T, Dh)``; row ``t`` sits at absolute position ``offset + t``."""
        if x.ndim != 4 or x.shape[-1] != self.head_dim:
            raise ValueError(
                f"RotaryEmbedding expects (B, H, T, {self.head_dim}), got shape {x.shape}")
        if isinstance(offset, int) and x.dtype == mx.float32 and _on_cpu():
            cos, sin = self._rows(offset, x.shape[2])
            rotate = _rotate_interleaved_k if self.interleaved else _rotate_half_k
            return rotate(x, cos, sin)
        return _rope(x, self._periods, offset, self.interleaved)

    def _rows(self, offset: int, n: int) -> tuple[mx.array, mx.array]:
        """Rows ``offset .. offset + n - 1`` of the cos / sin table, grown as needed."""
        end, key = offset + n, (self.head_dim, self.max_period)
        table = _TABLES.get(key)
        if table is None or table[0].shape[0] < end:
            size = max(_TABLE_MIN, 1 << (end - 1).bit_length())
            cos, sin = rope_table(rope_periods(self.head_dim, self.max_period), size)
            table = _TABLES[key] = (mx.array(cos), mx.array(sin))
        cos, sin = table
        return cos[offset:end], sin[offset:end]
