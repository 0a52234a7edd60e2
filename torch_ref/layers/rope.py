"""Rotary position embedding (RoPE) in both feature conventions (torch mirror, explicit).

Mirror of ``mlx_speech/layers/rope.py``; see its docstring for the two conventions and the
feature permutation between them. A head vector of size ``Dh`` is split into ``Dh / 2`` pairs;
pair ``i`` at position ``t`` is rotated by ``t * (1 / period_i)`` (float32), with
``period_i = max_period ** (2 i / Dh)`` computed in float64 and rounded to float32:

* interleaved (moshi): pair ``i`` is ``(x[2i], x[2i+1])``;
* rotate-half (HF transformers): pair ``i`` is ``(x[i], x[i + Dh/2])``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mlx_speech.weights.rope_perm import (  # noqa: F401  (re-exported)
    interleaved_to_rotate_half_perm, permute_head_rows, rotate_half_to_interleaved_perm)
from mlx_speech.weights.rope_perm import check_rope_args as _check


def rope_periods(head_dim: int, max_period: float) -> np.ndarray:
    """``(Dh/2,)`` float32 periods ``max_period ** (2 i / Dh)``, computed in float64."""
    _check(head_dim, max_period)
    return (float(max_period) ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
            ).astype(np.float32)


def _rope(x: torch.Tensor, periods: torch.Tensor, offset: int, interleaved: bool) -> torch.Tensor:
    T, D = x.shape[-2], x.shape[-1]
    inv = torch.reciprocal(periods.to(device=x.device, dtype=torch.float32))
    pos = torch.arange(offset, offset + T, device=x.device, dtype=torch.float32)
    angle = pos[:, None] * inv[None, :]  # (T, Dh/2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    xf = x.float()
    if interleaved:
        a, b = xf[..., 0::2], xf[..., 1::2]
        out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)
    else:
        a, b = xf[..., : D // 2], xf[..., D // 2:]
        out = torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return out.to(x.dtype)


def apply_rope(x: torch.Tensor, *, offset: int = 0, max_period: float = 10000.0,
               interleaved: bool = True) -> torch.Tensor:
    """Rotate ``x`` of shape ``(B, H, T, Dh)``; position of ``x[:, :, t]`` is ``offset + t``."""
    periods = torch.from_numpy(rope_periods(x.shape[-1], max_period))
    return _rope(x, periods, offset, interleaved)


class RotaryEmbedding(nn.Module):
    """RoPE on ``(B, H, T, Dh)`` queries or keys; no parameters and no state-dict entries.

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
        # A plain attribute, not a buffer: module.to(bfloat16) must not round the periods.
        self._periods = torch.from_numpy(rope_periods(head_dim, max_period))

    def extra_repr(self) -> str:
        return (f"head_dim={self.head_dim}, max_period={self.max_period}, "
                f"interleaved={self.interleaved}")

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        """``x``: ``(B, H, T, Dh)``; row ``t`` sits at absolute position ``offset + t``."""
        if x.dim() != 4 or x.shape[-1] != self.head_dim:
            raise ValueError(
                f"RotaryEmbedding expects (B, H, T, {self.head_dim}), got shape {tuple(x.shape)}")
        return _rope(x, self._periods, offset, self.interleaved)
