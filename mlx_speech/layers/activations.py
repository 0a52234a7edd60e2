"""Activations: Snake (per-channel, DAC / BigVGAN), ELU, GELU and a small registry (MLX).

Snake is channels-last here, ``(B, T, C)``; its torch_ref twin takes ``(B, C, T)``. Its
parameter ``alpha`` has shape ``(C,)`` on both sides, so it stays a "plain" parameter; DAC
stores it as ``(1, C, 1)`` and its upstream converter reshapes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn

# Guards 1/alpha where a channel's alpha reached 0 (DAC uses the same constant).
SNAKE_EPS = 1e-9

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SQRT_HALF = math.sqrt(0.5)

# erf(x) ~= x * P(x^2) / Q(x^2) on [-4, 4] (erf is +-1 to float32 precision outside): the
# rational minimax form used by Eigen / XLA for float32, max abs error ~4e-7, the same as
# mx.erf's. Why not mx.erf: on the CPU backend it is a scalar loop, ~13x slower than these
# dozen vectorised multiply-adds, and it dominated a transformer layer's time.
_ERF_P = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04,
          -5.69250639462346e-05, -2.10102402082508e-06, 2.77068142495902e-08,
          -2.72614225801306e-10)
_ERF_Q = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03,
          -2.13374055278905e-04, -1.45660718464996e-05)


def erf(x: mx.array) -> mx.array:
    """Error function, accurate to ~4e-7 (rational approximation above); float32 inside."""
    dtype = x.dtype
    x = mx.clip(x.astype(mx.float32), -4.0, 4.0)
    x2 = x * x
    p = _ERF_P[-1]
    for c in reversed(_ERF_P[:-1]):
        p = p * x2 + c
    q = _ERF_Q[-1]
    for c in reversed(_ERF_Q[:-1]):
        q = q * x2 + c
    return (x * p / q).astype(dtype)


_LOG2E = 1.4426950408889634
# Taylor coefficients of 2**f = exp(f ln 2) for |f| <= 1/2: the degree-7 remainder is
# < 1e-8 relative, below float32 rounding (6e-8).
_EXP2_C = tuple(math.log(2.0) ** k / math.factorial(k) for k in range(8))


@mx.custom_function
def exp_fast(x: mx.array) -> mx.array:
    """``exp(x)`` for float32 ``x <= 0`` (softmax after max subtraction), as accurate as mx.exp.

    ``2 ** (n + f)`` with ``n = round(x log2 e)`` written straight into the float exponent
    bits and ``2 ** f`` as a polynomial; results below ``2 ** -126`` flush to exactly 0 (also for
    ``-inf``). Why: mx.exp on the CPU backend is a scalar loop, and the softmax of attention
    is its largest user. The gradient is the exact ``d exp = exp`` (the bit cast has none).
    """
    y = mx.maximum(x * _LOG2E, -127.0)
    n = mx.round(y)
    f = y - n
    p = _EXP2_C[-1]
    for c in reversed(_EXP2_C[:-1]):
        p = p * f + c
    # n = -127 gives exponent bits 0 and mantissa 0: exactly 0.0.
    two_n = mx.view(mx.left_shift(n.astype(mx.int32) + 127, 23), mx.float32)
    return p * two_n


@exp_fast.vjp
def _exp_fast_vjp(primals, cotangent, output):
    return cotangent * output


def gelu(x: mx.array) -> mx.array:
    """Exact GELU, ``x * Phi(x)`` with the erf form (torch ``F.gelu``); float32 inside."""
    xf = x.astype(mx.float32)
    return (0.5 * xf * (1.0 + erf(xf * _SQRT_HALF))).astype(x.dtype)


def gelu_tanh(x: mx.array) -> mx.array:
    """GELU with the tanh approximation (torch ``F.gelu(approximate="tanh")``).

    Not ``nn.gelu_approx``: MLX's approximation is a different (sigmoid) formula.
    """
    return 0.5 * x * (1.0 + mx.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def elu(x: mx.array, alpha: float = 1.0) -> mx.array:
    """ELU: ``x`` for ``x > 0`` else ``alpha * (exp(x) - 1)``."""
    return mx.where(x > 0, x, alpha * (mx.exp(mx.minimum(x, 0.0)) - 1.0))


def silu(x: mx.array) -> mx.array:
    """SiLU / swish, ``x * sigmoid(x)``."""
    return x * mx.sigmoid(x)


def relu(x: mx.array) -> mx.array:
    return mx.maximum(x, 0.0)


def identity(x: mx.array) -> mx.array:
    return x


# One fused elementwise kernel for the ~20 passes of gelu (2x faster on the CPU backend);
# shapeless, so new sequence lengths do not recompile.
gelu_fused = mx.compile(gelu, shapeless=True)

ACTIVATIONS: dict[str, Callable[[mx.array], mx.array]] = {
    "gelu": gelu_fused,
    "gelu_tanh": gelu_tanh,
    "silu": silu,
    "relu": relu,
    "elu": elu,
    "identity": identity,
}


def get_activation(name: str) -> Callable[[mx.array], mx.array]:
    """The activation function called ``name``; a ValueError lists the known names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}") from None


def snake(x: mx.array, alpha: mx.array) -> mx.array:
    """``x + 1 / (alpha + 1e-9) * sin(alpha * x) ** 2``, ``alpha`` broadcast on the last axis."""
    s = mx.sin(alpha * x)
    return x + mx.reciprocal(alpha + SNAKE_EPS) * (s * s)


# One fused elementwise kernel instead of five passes over the tensor; shapeless so streaming
# chunks of varying length do not recompile.
_snake_compiled = mx.compile(snake, shapeless=True)


class Snake(nn.Module):
    """Snake activation with a learnt per-channel frequency ``alpha`` (Ziyin et al. 2020).

    ``snake(x) = x + 1 / (alpha + 1e-9) * sin(alpha * x) ** 2``, as in DAC and BigVGAN.
    Input and output ``(..., C)`` (channels-last, e.g. ``(B, T, C)``).
    """

    def __init__(self, *, channels: int, alpha_init: float = 1.0) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels <= 0:
            raise ValueError(f"Snake: channels must be a positive int, got {channels!r}")
        self.channels = channels
        self.alpha = mx.full((channels,), float(alpha_init))

    def _extra_repr(self) -> str:
        return f"channels={self.channels}"

    def __call__(self, x: mx.array) -> mx.array:
        if x.shape[-1] != self.channels:
            raise ValueError(
                f"Snake expects {self.channels} channels on the last axis, got shape {x.shape}")
        return _snake_compiled(x, self.alpha.astype(x.dtype))


class ELU(nn.Module):
    """ELU as a module (no parameters), for places that hold activations as children."""

    def __init__(self, *, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def __call__(self, x: mx.array) -> mx.array:
        return elu(x, self.alpha)


class GELU(nn.Module):
    """GELU as a module: ``approximate="none"`` (erf) or ``"tanh"``, as torch ``nn.GELU``."""

    def __init__(self, *, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def __call__(self, x: mx.array) -> mx.array:
        return gelu_tanh(x) if self.approximate == "tanh" else gelu(x)
