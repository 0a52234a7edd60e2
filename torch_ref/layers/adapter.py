"""Parallel adapter, as used by Miipher-2 to adapt a frozen SSL encoder (torch mirror).

Mirror of ``mlx_speech/layers/adapter.py`` (see its docstring)::

    h = frozen_layer(x) + adapter(x)
    adapter(x) = scale * up(act(down(norm(x))))

with ``up`` zero-initialised so an untrained adapter contributes exactly nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from torch_ref.layers.activations import get_activation
from torch_ref.layers.norms import LayerNorm


class ParallelAdapter(nn.Module):
    """Bottleneck adapter added beside a frozen layer, ``(..., D) -> (..., D)``.

    Args: as ``mlx_speech.layers.adapter.ParallelAdapter``.
    """

    def __init__(self, *, dim: int, bottleneck: int, scale: float = 1.0,
                 activation: str = "gelu", norm_eps: float = 1e-5, bias: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("bottleneck", bottleneck)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ParallelAdapter: {name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ParallelAdapter: dropout must be in [0, 1), got {dropout!r}")
        self.dim = dim
        self.bottleneck = bottleneck
        self.scale = float(scale)
        self.activation = activation
        self._act = get_activation(activation)
        self.norm = LayerNorm(dim=dim, eps=norm_eps)
        self.down = nn.Linear(dim, bottleneck, bias=bias)
        self.up = nn.Linear(bottleneck, dim, bias=bias)
        nn.init.zeros_(self.up.weight)
        if bias:
            nn.init.zeros_(self.up.bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def extra_repr(self) -> str:
        return f"dim={self.dim}, bottleneck={self.bottleneck}, scale={self.scale}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: the frozen layer's input ``(..., D)``; returns the term to add to its output."""
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"ParallelAdapter expects last axis {self.dim}, got shape {tuple(x.shape)}")
        h = self._act(self.down(self.norm(x)))
        if self.dropout is not None:
            h = self.dropout(h)
        return self.up(h) * self.scale
