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
# mx.erf's. Why not mx.erf: on the CPU backend it is a scalar loop, much slower than these
# dozen vectorised multiply-adds, and it dominated a transformer layer's time (timings:
# docs/performance.md, "CPU kernels and JIT flags").
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

# CPU element-wise kernels. MLX's CPU backend runs its transcendental ops (exp, erf, tanh) as
# scalar loops with libm calls (floor, fma) per element. ``mx.compile`` generates C++ that
# g++ -O3 auto-vectorises (SSE, 4 lanes), but only when the generated loop
#   * reads contiguous arrays (a broadcast operand or ``shapeless=True`` gives a strided loop),
#   * fuses into one kernel: MLX stops fusing at a dependency depth of 11 ops (every extra
#     kernel writes and re-reads an intermediate array), so polynomials are evaluated in
#     Estrin's scheme (depth ~2 log2(degree)) instead of Horner's (depth 2 x degree), and
#   * has no branch: ``maximum`` / ``minimum`` carry a NaN test, and a ``where`` with a literal
#     constant arm lets g++ fold the following arithmetic into the arms; both leave a scalar
#     loop. Clamps are therefore ``where`` against bounds passed in as arrays (:data:`_BOUNDS`).
# Timings against mx.exp and the unfused GELU: docs/performance.md, "CPU kernels and JIT flags".
# A bitcast (``mx.view``) cannot be fused, so ``exp2_fast`` is two kernels.


def _estrin(w: mx.array, coeffs: tuple[float, ...]) -> mx.array:
    """``sum_k coeffs[k] * w**k`` by Estrin's scheme (pairs, then pairs of pairs, ...)."""
    terms = [coeffs[i] + coeffs[i + 1] * w if i + 1 < len(coeffs) else coeffs[i]
             for i in range(0, len(coeffs), 2)]
    power = w * w
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] * power if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
        if len(terms) > 1:
            power = power * power
    return terms[0]


class _PerShape:
    """``mx.compile(fn)`` specialised per input shapes and dtypes, at most ``size`` kept (LRU).

    Shape-specialised kernels are the vectorised ones (see above); the generated source does
    not depend on the shape, so a new shape costs a retrace, not a C++ compile. The bound keeps
    streaming (many chunk lengths) from growing MLX's compile cache without limit.
    """

    def __init__(self, fn: Callable[..., mx.array], size: int = 64) -> None:
        self._fn, self._size = fn, size
        self._cache: dict[tuple, Callable[..., mx.array]] = {}

    def __call__(self, *args: mx.array) -> mx.array:
        key = tuple((a.shape, a.dtype) for a in args)
        fn = self._cache.pop(key, None)
        if fn is None:
            fn = mx.compile(self._fn)
            if len(self._cache) >= self._size:
                self._cache.pop(next(iter(self._cache)))  # least recently used
        self._cache[key] = fn
        return fn(*args)


# 1.5 * 2**23 and a neighbouring even integer: (y + M) - M rounds y (|y| < 2**22) to the
# nearest integer, ties to even, in plain float arithmetic (no libm call). Two different
# constants so that MLX's common-subexpression pass keeps one copy in each of the two exp2
# kernels (they round the same y, and both give the same integer).
_ROUND_M1 = 12582912.0
_ROUND_M2 = 12582914.0
_BOUNDS: dict[str, mx.array] = {}


def _bound(name: str, value: float) -> mx.array:
    """A float32 scalar passed into a kernel as a clamp bound (see the notes above).

    Made by a reduction of a stored 1-element array on every call, not the stored array itself:
    inside an outer ``mx.compile`` (the trainer's compiled value-and-grad) the kernels above run
    inline, and a captured scalar would be written into the fused kernel as a literal, which
    turns the clamp back into a scalar loop (several times slower; docs/performance.md, "CPU
    kernels and JIT flags"); a computed scalar stays a runtime input. The reduction (not
    fusable) costs one tiny op per call.
    """
    b = _BOUNDS.get(name)
    if b is None:
        b = _BOUNDS[name] = mx.array([value], dtype=mx.float32)
    return mx.max(b)


def _pow2_bits(y: mx.array) -> mx.array:
    """``2**n`` as int32 float bits, ``n = round(y)`` for ``y >= -127``: exponent field ``n + 127``."""
    return mx.left_shift(((y + _ROUND_M2) - (_ROUND_M2 - 127.0)).astype(mx.int32), 23)


def _pow2_scaled(y: mx.array, two_n: mx.array) -> mx.array:
    """``2**f * two_n`` with ``f = y - round(y)`` in [-1/2, 1/2] (Taylor, degree 7)."""
    return _estrin(y - ((y + _ROUND_M1) - _ROUND_M1), _EXP2_C) * two_n


def _exp2_bits(t: mx.array, lo: mx.array) -> mx.array:
    """``2**n`` as int32 float bits, ``n = round(max(t, -127))``."""
    return _pow2_bits(mx.where(t < lo, lo, t))


def _exp2_mantissa(t: mx.array, two_n: mx.array, lo: mx.array) -> mx.array:
    """``2**f * 2**n`` with ``f = y - n`` in [-1/2, 1/2], ``y = max(t, -127)``."""
    return _pow2_scaled(mx.where(t < lo, lo, t), two_n)


_exp2_bits_k = _PerShape(_exp2_bits)
_exp2_mantissa_k = _PerShape(_exp2_mantissa)


def _fence(y: mx.array) -> mx.array:
    """``y`` itself, as a boundary that an outer ``mx.compile`` does not fuse across.

    Inside the trainer's compiled value-and-grad the kernels here are inlined and MLX re-fuses
    them with their neighbours; past its fusion depth (11 ops) it splits the result at other
    places and writes the intermediates (Estrin powers, partial polynomials) to memory, which
    is slower than running the kernels one by one (docs/performance.md, "CPU kernels and JIT
    flags"). ``mx.contiguous`` is not fusable, and on an array that is already row-contiguous
    (every kernel output is) it shares the buffer instead of copying.
    """
    return mx.contiguous(y)


def _on_cpu() -> bool:
    return mx.default_device().type == mx.DeviceType.cpu


@mx.custom_function
def exp2_fast(t: mx.array) -> mx.array:
    """``2**t`` for float32 ``t <= 0``, relative error ~2e-7 (mx.exp: ~1e-7); CPU kernels.

    ``2**n`` with ``n = round(t)`` is written straight into the float exponent bits and
    ``2**(t - n)`` is a polynomial. ``t < -126.5`` (and ``-inf``) gives exactly 0, NaN gives NaN;
    ``t > 0`` is outside the contract (``+inf`` gives NaN). On a GPU it is ``exp(t ln 2)``.
    The gradient is ``ln 2 * 2**t`` (the bit cast has none).
    """
    if not _on_cpu():
        return mx.exp(t * math.log(2.0))
    t = mx.contiguous(t.astype(mx.float32))
    lo = _bound("exp2_lo", -127.0)
    two_n = mx.view(_exp2_bits_k(t, lo), mx.float32)
    return _exp2_mantissa_k(t, two_n, lo)


@exp2_fast.vjp
def _exp2_fast_vjp(primals, cotangent, output):
    return cotangent * (output * math.log(2.0)).astype(cotangent.dtype)


@mx.custom_function
def exp_fast(x: mx.array) -> mx.array:
    """``exp(x)`` for float32 ``x <= 0`` (softmax after max subtraction): :func:`exp2_fast` of
    ``x log2 e`` on the CPU (results below ``2**-126.5``, and ``-inf``, give exactly 0),
    ``mx.exp`` on a GPU. The gradient is the exact ``d exp = exp``.
    """
    if not _on_cpu():
        return mx.exp(x)
    return exp2_fast(x.astype(mx.float32) * _LOG2E)


@exp_fast.vjp
def _exp_fast_vjp(primals, cotangent, output):
    return cotangent * output


def gelu(x: mx.array) -> mx.array:
    """Exact GELU, ``x * Phi(x)`` with the erf form (torch ``F.gelu``); float32 inside."""
    xf = x.astype(mx.float32)
    return (0.5 * xf * (1.0 + erf(xf * _SQRT_HALF))).astype(x.dtype)


def _erf_arg(x: mx.array, lo: mx.array, hi: mx.array) -> mx.array:
    u = x * _SQRT_HALF
    return mx.where(u < lo, lo, mx.where(u > hi, hi, u))


def _gelu_from_arg(x: mx.array, u: mx.array) -> mx.array:
    w = u * u
    return (0.5 * x) * (1.0 + (u * _estrin(w, _ERF_P)) / _estrin(w, _ERF_Q))


# d gelu / dx = Phi(x) + x phi(x): Phi from the same rational (0.5 folded into P), phi through
# exp2_fast of -x**2 log2(e) / 2.
_ERF_P_HALF = tuple(0.5 * c for c in _ERF_P)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _neg_half_sq(x: mx.array) -> mx.array:
    return (x * x) * (-0.5 * _LOG2E)


_neg_half_sq_k = _PerShape(_neg_half_sq)


def _gelu_grad(x: mx.array, u: mx.array, e: mx.array, cotangent: mx.array) -> mx.array:
    w = u * u
    phi_cdf = (0.5 + (u * _estrin(w, _ERF_P_HALF)) / _estrin(w, _ERF_Q))
    return cotangent * (phi_cdf + (x * e) * _INV_SQRT_2PI)


_erf_arg_k = _PerShape(_erf_arg)
_gelu_from_arg_k = _PerShape(_gelu_from_arg)
_gelu_grad_k = _PerShape(_gelu_grad)


def _erf_arg_fenced(xf: mx.array) -> mx.array:
    """The clamped erf argument of float32 ``xf`` (forward and gradient both start from it)."""
    return _fence(_erf_arg_k(xf, _bound("erf_lo", -4.0), _bound("erf_hi", 4.0)))


@mx.custom_function
def gelu_cpu(x: mx.array) -> mx.array:
    """:func:`gelu` as two vectorised CPU kernels (clamp, then the rational erf in Estrin form);
    same formula and accuracy (max abs error vs float64 ~1e-6 for |x| <= 12, exactly 0 / x
    beyond +-5.66). Float32 inside. The gradient ``Phi(x) + x phi(x)`` is a vectorised kernel
    too (autodiff through the forward kernels gave ~60 ops of scalar, unfused passes)."""
    xf = mx.contiguous(x.astype(mx.float32))
    u = _erf_arg_fenced(xf)
    return _fence(_gelu_from_arg_k(xf, u)).astype(x.dtype)


@gelu_cpu.vjp
def _gelu_cpu_vjp(primals, cotangent, output):
    x = primals[0] if isinstance(primals, (list, tuple)) else primals
    xf = mx.contiguous(x.astype(mx.float32))
    u = _erf_arg_fenced(xf)
    e = _fence(exp2_fast(_fence(_neg_half_sq_k(xf))))
    g = _fence(_gelu_grad_k(xf, u, e, mx.contiguous(cotangent.astype(mx.float32))))
    return g.astype(cotangent.dtype)


def gelu_auto(x: mx.array) -> mx.array:
    """Exact GELU by device: :func:`gelu_cpu` on the CPU, the fused ``gelu`` on a GPU."""
    return gelu_cpu(x) if _on_cpu() else gelu_fused(x)


def gelu_tanh(x: mx.array) -> mx.array:
    """GELU with the tanh approximation (torch ``F.gelu(approximate="tanh")``).

    Not ``nn.gelu_approx``: MLX's approximation is a different (sigmoid) formula.
    """
    return 0.5 * x * (1.0 + mx.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


# ELU (alpha 1) as the two exp2_fast kernels with the clamp and the relu folded in:
# y = min(x, 0) log2 e = (x - |x|) / 2 log2 e (no min/max, whose NaN checks stop g++
# vectorising); head -> y and the exponent bits of 2**round(y); tail -> relu(x) + (2**y - 1).
# ``p - 1`` is exactly 0 for x >= 0 (y = 0 gives p = 1), so positive inputs come back
# bit-exact. Faster than the expm1 doubling kernel this replaces (split into several kernels by
# the depth limit) and than exp + where (docs/performance.md, "CPU kernels and JIT flags").
def _elu_head(x: mx.array, lo: mx.array) -> tuple[mx.array, mx.array]:
    y = (x - mx.abs(x)) * (0.5 * _LOG2E)
    y = mx.where(y < lo, lo, y)
    return y, _pow2_bits(y)


def _elu_tail(x: mx.array, y: mx.array, two_n: mx.array) -> mx.array:
    return (x + mx.abs(x)) * 0.5 + (_pow2_scaled(y, two_n) - 1.0)


def _elu_grad(x: mx.array, out: mx.array, cotangent: mx.array) -> mx.array:
    # d elu / dx = exp(min(x, 0)) = out - relu(x) + 1: exactly 1 where x > 0 (out == x there)
    return cotangent * ((out - (x + mx.abs(x)) * 0.5) + 1.0)


_elu_head_k = _PerShape(_elu_head)
_elu_tail_k = _PerShape(_elu_tail)
_elu_grad_k = _PerShape(_elu_grad)


@mx.custom_function
def elu_cpu(x: mx.array) -> mx.array:
    """ELU (alpha 1) of a finite float ``x`` as two vectorised CPU kernels; within ~2e-7 of the
    exact value, positive inputs returned exactly, NaN gives NaN (``+-inf`` outside the
    contract). Float32 inside; the gradient ``exp(min(x, 0))`` is one kernel too."""
    if x.size == 0:
        return x
    xf = mx.contiguous(x.astype(mx.float32))
    y, bits = _elu_head_k(xf, _bound("exp2_lo", -127.0))
    return _elu_tail_k(xf, y, mx.view(bits, mx.float32)).astype(x.dtype)


@elu_cpu.vjp
def _elu_cpu_vjp(primals, cotangent, output):
    x = primals[0] if isinstance(primals, (list, tuple)) else primals
    if x.size == 0:
        return cotangent
    g = _elu_grad_k(mx.contiguous(x.astype(mx.float32)),
                    mx.contiguous(output.astype(mx.float32)),
                    mx.contiguous(cotangent.astype(mx.float32)))
    return g.astype(cotangent.dtype)


def elu(x: mx.array, alpha: float = 1.0) -> mx.array:
    """ELU: ``x`` for ``x > 0`` else ``alpha * (exp(x) - 1)``; :func:`elu_cpu` on the CPU
    for ``alpha == 1`` (SEANet's), the plain formula otherwise."""
    if alpha == 1.0 and _on_cpu():
        return elu_cpu(x)
    return mx.where(x > 0, x, alpha * (mx.exp(mx.minimum(x, 0.0)) - 1.0))


# Sigmoid as the two exp2_fast kernels with the sign folded in: p = exp(-|x|) <= 1 (never
# overflows), then sigmoid = (x < 0 ? p : 1) / (1 + p). ``one`` is a bound array, not a literal
# arm of the ``where`` (see the notes above). NaN stays NaN, +-inf give exactly 1 / 0.
def _sigmoid_head(x: mx.array, lo: mx.array) -> tuple[mx.array, mx.array]:
    y = mx.abs(x) * -_LOG2E
    y = mx.where(y < lo, lo, y)
    return y, _pow2_bits(y)


def _sigmoid_tail(x: mx.array, y: mx.array, two_n: mx.array, one: mx.array) -> mx.array:
    p = _pow2_scaled(y, two_n)
    return mx.where(x < 0, p, one) / (1.0 + p)


def _sigmoid_grad(out: mx.array, cotangent: mx.array) -> mx.array:
    return cotangent * (out * (1.0 - out))


_sigmoid_head_k = _PerShape(_sigmoid_head)
_sigmoid_tail_k = _PerShape(_sigmoid_tail)
_sigmoid_grad_k = _PerShape(_sigmoid_grad)


@mx.custom_function
def sigmoid_cpu(x: mx.array) -> mx.array:
    """The logistic sigmoid of a float ``x`` as two vectorised CPU kernels, within ~1e-7 of
    the exact value (``mx.sigmoid`` is a scalar libm loop on the CPU backend: docs/performance.md,
    "CPU kernels and JIT flags"). Float32 inside; the gradient ``s (1 - s)`` is one kernel."""
    if x.size == 0:
        return x
    xf = mx.contiguous(x.astype(mx.float32))
    y, bits = _sigmoid_head_k(xf, _bound("exp2_lo", -127.0))
    return _sigmoid_tail_k(xf, y, mx.view(bits, mx.float32), _bound("one", 1.0)).astype(x.dtype)


@sigmoid_cpu.vjp
def _sigmoid_cpu_vjp(primals, cotangent, output):
    if output.size == 0:
        return cotangent
    g = _sigmoid_grad_k(mx.contiguous(output.astype(mx.float32)),
                        mx.contiguous(cotangent.astype(mx.float32)))
    return g.astype(cotangent.dtype)


def sigmoid(x: mx.array) -> mx.array:
    """Logistic sigmoid by device: :func:`sigmoid_cpu` on the CPU, ``mx.sigmoid`` on a GPU."""
    return sigmoid_cpu(x) if _on_cpu() else mx.sigmoid(x)


def silu(x: mx.array) -> mx.array:
    """SiLU / swish, ``x * sigmoid(x)``."""
    return x * sigmoid(x)


def relu(x: mx.array) -> mx.array:
    return mx.maximum(x, 0.0)


def identity(x: mx.array) -> mx.array:
    return x


# One fused elementwise kernel for the ~20 passes of gelu; shapeless, so new sequence lengths do
# not recompile (GPU path of gelu_auto).
gelu_fused = mx.compile(gelu, shapeless=True)

ACTIVATIONS: dict[str, Callable[[mx.array], mx.array]] = {
    "gelu": gelu_auto,
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

# sin(r) = r * P(r^2) on [-pi/2, pi/2]: Taylor to r^13, |error| < 1e-9 there (float32 rounding
# dominates). u = alpha x is reduced by n = round(u / pi) (sin(u)^2 = sin(u - n pi)^2) with pi in
# two parts (Cody-Waite), exact for |n| < 2**12, ~1e-7 relative beyond.
_SIN_C = (1.0, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880, -1.0 / 39916800,
          1.0 / 6227020800)
_PI_HI = 3.140625
_PI_LO = math.pi - _PI_HI


def _snake_reduce(x: mx.array, alpha: mx.array) -> mx.array:
    u = alpha * x
    n = (u * (1.0 / math.pi) + _ROUND_M1) - _ROUND_M1
    return (u - n * _PI_HI) - n * _PI_LO


def _sin_reduced(r: mx.array) -> mx.array:
    return r * _estrin(r * r, _SIN_C)


def _snake_out(x: mx.array, s: mx.array, inv_alpha: mx.array) -> mx.array:
    return x + inv_alpha * (s * s)


# Three kernels, not one: fused into one (~23 ops) MLX splits the graph past its fusion depth
# and the result ran 2.4x slower than these three (docs/performance.md, "CPU kernels").
_snake_reduce_k = _PerShape(_snake_reduce)
_sin_reduced_k = _PerShape(_sin_reduced)
_snake_out_k = _PerShape(_snake_out)


@mx.custom_function
def snake_cpu(x: mx.array, alpha: mx.array) -> mx.array:
    """:func:`snake` as three vectorised CPU kernels: ``sin`` is a polynomial after range
    reduction (max abs error vs float64 ~1e-7 for ``|alpha x| < 1e4``). Why: MLX's CPU ``sin``
    is a scalar libm loop, three times torch's Snake on DAC's activations. Float32 inside; the
    gradient is the exact one (``mx.sin`` / ``mx.cos``), so training is unchanged."""
    xf = mx.contiguous(x.astype(mx.float32))
    a = alpha.astype(mx.float32)
    sin_u = _fence(_sin_reduced_k(_fence(_snake_reduce_k(xf, a))))
    return _snake_out_k(xf, sin_u, mx.reciprocal(a + SNAKE_EPS)).astype(x.dtype)


@snake_cpu.vjp
def _snake_cpu_vjp(primals, cotangent, output):
    x, alpha = primals
    xf, a = x.astype(mx.float32), alpha.astype(mx.float32)
    inv = mx.reciprocal(a + SNAKE_EPS)
    u = a * xf
    s, c = mx.sin(u), mx.cos(u)
    g = cotangent.astype(mx.float32)
    dx = g * (1.0 + 2.0 * s * c)  # d/dx: 1 + inv * 2 s c * a, with a * inv = 1 to 1e-9
    da = g * (2.0 * s * c * xf * inv - inv * inv * s * s)
    da = da.reshape(-1, da.shape[-1]).sum(axis=0)
    return dx.astype(x.dtype), da.astype(alpha.dtype)


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
        if _on_cpu():
            return snake_cpu(x, self.alpha)
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
        return gelu_tanh(x) if self.approximate == "tanh" else gelu_auto(x)
