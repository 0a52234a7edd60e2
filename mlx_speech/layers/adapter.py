"""Parallel adapter, as used by Miipher-2 to adapt a frozen SSL encoder (MLX).

Miipher-2 keeps its speech encoder frozen and trains small bottleneck modules that run *beside*
each frozen layer: the adapter reads the layer's input and its output is added to the frozen
layer's output (He et al. 2022, "Towards a Unified View of Parameter-Efficient Transfer
Learning", parallel adapter)::

    h = frozen_layer(x) + adapter(x)
    adapter(x) = scale * up(act(down(norm(x))))

``up`` starts at zero (weight and bias), so an untrained adapter contributes exactly nothing
and the adapted encoder starts as the frozen one; gradients still reach ``up`` (its input is
not zero) and from there the rest. Tensors are ``(..., D)``, e.g. ``(B, T, D)``; names
``norm``, ``down``, ``up`` are shared with the torch_ref twin.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import get_activation
from mlx_speech.layers.norms import LayerNorm


class ParallelAdapter(nn.Module):
    """Bottleneck adapter added beside a frozen layer, ``(..., D) -> (..., D)``.

    Args:
        dim: width ``D`` of the frozen layer's input and output.
        bottleneck: hidden width of the adapter (``< D`` in practice).
        scale: constant multiplier of the adapter's output.
        activation: name from :mod:`mlx_speech.layers.activations` (default ``"gelu"``).
        norm_eps: epsilon of the input LayerNorm.
        bias: biases on ``down`` and ``up``.
        dropout: dropout after the activation (training only).
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
        self.up.weight = mx.zeros_like(self.up.weight)
        if bias:
            self.up.bias = mx.zeros_like(self.up.bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def _extra_repr(self) -> str:
        return f"dim={self.dim}, bottleneck={self.bottleneck}, scale={self.scale}"

    def __call__(self, x: mx.array) -> mx.array:
        """``x``: the frozen layer's input ``(..., D)``; returns the term to add to its output."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"ParallelAdapter expects last axis {self.dim}, got shape {x.shape}")
        h = self._act(self.down(self.norm(x)))
        if self.dropout is not None:
            h = self.dropout(h)
        return self.up(h) * self.scale
