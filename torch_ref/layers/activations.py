"""Activations: Snake (per-channel, DAC / BigVGAN), ELU, GELU and a small registry (torch).

Mirror of ``mlx_speech/layers/activations.py``. Snake takes ``(B, C, T)`` here (torch's conv
layout) and ``(B, T, C)`` in MLX; ``alpha`` has shape ``(C,)`` on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Guards 1/alpha where a channel's alpha reached 0 (DAC uses the same constant).
SNAKE_EPS = 1e-9

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU (erf form)."""
    return F.gelu(x)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation."""
    return 0.5 * x * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def elu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """ELU: ``x`` for ``x > 0`` else ``alpha * (exp(x) - 1)``."""
    return F.elu(x, alpha=alpha)


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU / swish, ``x * sigmoid(x)``."""
    return x * torch.sigmoid(x)


def relu(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "silu": silu,
    "relu": relu,
    "elu": elu,
    "identity": identity,
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function called ``name``; a ValueError lists the known names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}") from None


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``x + 1 / (alpha + 1e-9) * sin(alpha * x) ** 2``; ``x (B, C, T)``, ``alpha (C,)``."""
    a = alpha[:, None]
    s = torch.sin(a * x)
    return x + torch.reciprocal(a + SNAKE_EPS) * (s * s)


class Snake(nn.Module):
    """Snake activation with a learnt per-channel frequency ``alpha`` (Ziyin et al. 2020).

    ``snake(x) = x + 1 / (alpha + 1e-9) * sin(alpha * x) ** 2``, as in DAC and BigVGAN.
    Input and output ``(B, C, T)``.
    """

    def __init__(self, *, channels: int, alpha_init: float = 1.0) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels <= 0:
            raise ValueError(f"Snake: channels must be a positive int, got {channels!r}")
        self.channels = channels
        self.alpha = nn.Parameter(torch.full((channels,), float(alpha_init)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-2] != self.channels:
            raise ValueError(
                f"Snake expects (B, {self.channels}, T) input, got shape {tuple(x.shape)}")
        return snake(x, self.alpha.to(x.dtype))


class ELU(nn.Module):
    """ELU as a module (no parameters)."""

    def __init__(self, *, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return elu(x, self.alpha)


class GELU(nn.Module):
    """GELU as a module: ``approximate="none"`` (erf) or ``"tanh"``."""

    def __init__(self, *, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_tanh(x) if self.approximate == "tanh" else gelu(x)
