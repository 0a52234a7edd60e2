"""Normalisation layers and the per-channel residual scale (torch mirror of mlx_speech).

Same class names, arguments and parameter names (``weight``, ``bias``, ``scale``,
``running_mean``, ``running_var``) as ``mlx_speech/layers/norms.py``. All layers act on the last axis: ``(..., D) -> (..., D)``.
Statistics are taken in float32 whatever the input dtype; the output has the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_dim(name: str, dim: int) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise ValueError(f"{name}: dim must be a positive int, got {dim!r}")


def _check_eps(name: str, eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"{name}: eps must be > 0, got {eps!r}")


class LayerNorm(nn.Module):
    """Layer normalisation over the last axis, ``(..., D) -> (..., D)``.

    ``affine=False`` drops both ``weight`` and ``bias``; ``bias=False`` keeps only ``weight``.
    """

    def __init__(self, *, dim: int, eps: float = 1e-5, affine: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        _check_dim("LayerNorm", dim)
        _check_eps("LayerNorm", eps)
        self.dim = dim
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine and bias else None

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"LayerNorm expects last axis {self.dim}, got shape {tuple(x.shape)}")
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), (self.dim,), w, b, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last axis, ``(..., D) -> (..., D)``.

    ``y = x / sqrt(mean(x**2) + eps) * weight`` (torch ``nn.RMSNorm``).
    """

    def __init__(self, *, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        _check_dim("RMSNorm", dim)
        _check_eps("RMSNorm", eps)
        self.dim = dim
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"RMSNorm expects last axis {self.dim}, got shape {tuple(x.shape)}")
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


class LayerScale(nn.Module):
    """Learnt per-channel scale of a residual branch (Touvron et al. 2021), ``(..., D)``."""

    def __init__(self, *, dim: int, init: float = 1e-4) -> None:
        super().__init__()
        _check_dim("LayerScale", dim)
        self.dim = dim
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class BatchNorm(nn.Module):
    """Batch normalisation over the last (channel) axis, ``(..., C) -> (..., C)``: the maths of
    ``torch.nn.BatchNorm1d`` with the channels last (see the MLX twin). ``running_mean`` /
    ``running_var`` are registered buffers, updated in training mode by ``momentum`` with the
    unbiased variance; no ``num_batches_tracked`` (the MLX twin has none, and the momentum is
    fixed), which is why this is not ``nn.BatchNorm1d`` itself."""

    def __init__(self, *, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        _check_dim("BatchNorm", dim)
        _check_eps("BatchNorm", eps)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1], got {momentum!r}")
        self.dim = dim
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"BatchNorm expects last axis {self.dim}, got shape {tuple(x.shape)}")
        xf = x.float()
        if self.training:
            n = x.numel() // self.dim
            if n < 2:
                raise ValueError(f"BatchNorm: training needs more than one value per channel, "
                                 f"got shape {tuple(x.shape)}")
            dims = tuple(range(x.dim() - 1))
            mean = xf.mean(dim=dims)
            var = (xf - mean).square().mean(dim=dims)
            with torch.no_grad():
                m = self.momentum
                self.running_mean.copy_((1 - m) * self.running_mean + m * mean)
                self.running_var.copy_((1 - m) * self.running_var + (m * n / (n - 1)) * var)
        else:
            mean, var = self.running_mean, self.running_var
        y = (xf - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return y.to(x.dtype)


def make_norm(kind: str, *, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """``"layer"`` -> :class:`LayerNorm`, ``"rms"`` -> :class:`RMSNorm` (``bias`` ignored)."""
    if kind == "layer":
        return LayerNorm(dim=dim, eps=eps, bias=bias)
    if kind == "rms":
        return RMSNorm(dim=dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; expected 'layer' or 'rms'")
