"""Normalisation layers and the per-channel residual scale (MLX, channels-last).

Parameter names follow torch (``weight``, ``bias``, ``scale``) so the torch_ref twins in
``torch_ref/layers/norms.py`` share state-dict keys; every parameter here is "plain" (same
layout on both sides). All layers normalise / scale the last axis: ``(..., D) -> (..., D)``.

The statistics are taken in float32 whatever the input dtype (``mx.fast.layer_norm`` and
``mx.fast.rms_norm`` accumulate in float32); the output has the input's dtype.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def _check_dim(name: str, dim: int) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise ValueError(f"{name}: dim must be a positive int, got {dim!r}")


def _check_eps(name: str, eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"{name}: eps must be > 0, got {eps!r}")


class LayerNorm(nn.Module):
    """Layer normalisation over the last axis, ``(..., D) -> (..., D)``.

    ``affine=False`` drops both ``weight`` and ``bias``; ``bias=False`` keeps only ``weight``
    (as torch's ``nn.LayerNorm(bias=False)``).
    """

    def __init__(self, *, dim: int, eps: float = 1e-5, affine: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        _check_dim("LayerNorm", dim)
        _check_eps("LayerNorm", eps)
        self.dim = dim
        self.eps = float(eps)
        if affine:
            self.weight = mx.ones((dim,))
            if bias:
                self.bias = mx.zeros((dim,))

    def _extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"

    def __call__(self, x: mx.array) -> mx.array:
        if x.shape[-1] != self.dim:
            raise ValueError(f"LayerNorm expects last axis {self.dim}, got shape {x.shape}")
        weight = self["weight"] if "weight" in self else None
        bias = self["bias"] if "bias" in self else None
        return mx.fast.layer_norm(x, weight, bias, self.eps)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last axis, ``(..., D) -> (..., D)``.

    ``y = x / sqrt(mean(x**2) + eps) * weight`` (torch ``nn.RMSNorm``). moshi stores the same
    gain as ``alpha`` of shape ``(1, 1, D)``: an upstream converter reshapes it to ``weight``.
    """

    def __init__(self, *, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        _check_dim("RMSNorm", dim)
        _check_eps("RMSNorm", eps)
        self.dim = dim
        self.eps = float(eps)
        self.weight = mx.ones((dim,))

    def _extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"

    def __call__(self, x: mx.array) -> mx.array:
        if x.shape[-1] != self.dim:
            raise ValueError(f"RMSNorm expects last axis {self.dim}, got shape {x.shape}")
        return mx.fast.rms_norm(x, self.weight, self.eps)


class LayerScale(nn.Module):
    """Learnt per-channel scale of a residual branch (Touvron et al. 2021), ``(..., D)``.

    Starts small (``init``) so a deep stack begins close to the identity. The parameter is
    ``scale`` of shape ``(D,)``, as moshi's ``layer_scale_1.scale``.
    """

    def __init__(self, *, dim: int, init: float = 1e-4) -> None:
        super().__init__()
        _check_dim("LayerScale", dim)
        self.dim = dim
        self.scale = mx.full((dim,), float(init))

    def _extra_repr(self) -> str:
        return f"dim={self.dim}"

    def __call__(self, x: mx.array) -> mx.array:
        return x * self.scale


def make_norm(kind: str, *, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """``"layer"`` -> :class:`LayerNorm`, ``"rms"`` -> :class:`RMSNorm` (``bias`` ignored)."""
    if kind == "layer":
        return LayerNorm(dim=dim, eps=eps, bias=bias)
    if kind == "rms":
        return RMSNorm(dim=dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; expected 'layer' or 'rms'")
