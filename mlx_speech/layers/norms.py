"""Normalisation layers and the per-channel residual scale (MLX, channels-last).

Parameter names follow torch (``weight``, ``bias``, ``scale``, ``running_mean``,
``running_var``) so the torch_ref twins in ``torch_ref/layers/norms.py`` share state-dict keys;
every parameter here is "plain" (same layout on both sides). All layers normalise / scale the
last axis: ``(..., D) -> (..., D)``.

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


class _Buffers(set):
    """``Module._no_grad`` of a module with buffers: ``trainable_parameters`` asks ``key in
    module._no_grad``, and the buffers answer yes whatever ``freeze`` / ``unfreeze`` (which
    mutate this set in place, also when called on a parent) did since."""

    def __init__(self, buffers: tuple[str, ...]) -> None:
        super().__init__(buffers)
        self._buffers = frozenset(buffers)

    def __contains__(self, key: object) -> bool:
        return key in self._buffers or set.__contains__(self, key)


class BatchNorm(nn.Module):
    """Batch normalisation over the last (channel) axis, ``(..., C) -> (..., C)``; the maths
    of ``torch.nn.BatchNorm1d`` with the channels last.

    Training mode normalises with the statistics of the batch (every axis but the last; the
    biased variance) and updates ``running_mean`` / ``running_var`` by ``momentum`` with the
    *unbiased* variance, as torch does; eval mode normalises with the running statistics. Those
    two are buffers: public arrays, so ``parameters()`` and checkpoints carry them, kept frozen
    for good (even after ``unfreeze()`` on a parent), so gradients and optimisers never see
    them; a training-mode call replaces them (the MLX trainer adopts the new arrays). There is
    no ``num_batches_tracked``: the momentum is fixed. Statistics are float32.
    """

    BUFFERS = ("running_mean", "running_var")
    GRAPH_BUFFERS = True  # the update is array maths: a compiled training step returns it

    def __init__(self, *, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        _check_dim("BatchNorm", dim)
        _check_eps("BatchNorm", eps)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1], got {momentum!r}")
        self.dim = dim
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.weight = mx.ones((dim,))
        self.bias = mx.zeros((dim,))
        self.running_mean = mx.zeros((dim,))
        self.running_var = mx.ones((dim,))
        self._no_grad = _Buffers(self.BUFFERS)  # frozen for good (see _Buffers)

    def _extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}, momentum={self.momentum}"

    def __call__(self, x: mx.array) -> mx.array:
        if x.shape[-1] != self.dim:
            raise ValueError(f"BatchNorm expects last axis {self.dim}, got shape {x.shape}")
        xf = x.astype(mx.float32)
        if self.training:
            n = x.size // self.dim
            if n < 2:
                raise ValueError(f"BatchNorm: training needs more than one value per channel, "
                                 f"got shape {x.shape}")
            axes = tuple(range(x.ndim - 1))
            mean = xf.mean(axis=axes)
            var = mx.square(xf - mean).mean(axis=axes)
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mx.stop_gradient(mean)
            self.running_var = ((1 - m) * self.running_var
                                + (m * n / (n - 1)) * mx.stop_gradient(var))
        else:
            mean, var = self.running_mean, self.running_var
        y = (xf - mean) * mx.rsqrt(var + self.eps) * self.weight + self.bias
        return y.astype(x.dtype)


def make_norm(kind: str, *, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """``"layer"`` -> :class:`LayerNorm`, ``"rms"`` -> :class:`RMSNorm` (``bias`` ignored)."""
    if kind == "layer":
        return LayerNorm(dim=dim, eps=eps, bias=bias)
    if kind == "rms":
        return RMSNorm(dim=dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; expected 'layer' or 'rms'")
