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
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

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
        return _rope(x, self._periods, offset, self.interleaved)
