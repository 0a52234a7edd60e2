"""``Linear``: ``mlx.nn.Linear`` (same parameters, names and maths) with a CPU path for a few rows.

Why: a streaming step pushes 1-4 rows through each projection (Mimi's transformers see two
25 Hz positions per 80 ms frame). For ``x (2, 512) @ W.T`` with ``W (2048, 512)`` OpenBLAS's
general sgemm repacks the whole weight on every call, and the packing is most of the call. Seen
as a batch of ``N / 128`` products against 128-row slices of ``W`` (a free reshape), each
product is small enough for OpenBLAS's small-matrix kernel, which reads ``W`` in place and is
faster (bench/blas.py; docs/performance.md, "BLAS and few-row products").

Where MLX's BLAS is our own few-row ``cblas_sgemm`` (Linux x86-64 with a C compiler, see
:mod:`mlx_speech._blas`), the plain call is already faster than the chunked path and this path
is off; it stays for the other CPU BLAS builds.

When: MLX's device is the CPU, our few-row sgemm is not in use, at most :data:`FEW_ROWS` rows,
``rows * N * K > 2**19`` (up to that the plain call is as fast or faster) and ``N`` a multiple
of :data:`CHUNK`. Anything else, and every GPU call, is ``mlx.nn.Linear``'s own. Results equal
the plain call to float32 rounding (another summation order); gradients flow through both paths.

Training on the CPU (more rows): the weight gradient of ``x @ W.T`` comes out of MLX's autodiff
as the transpose of ``x.T @ dy``, a strided view; the optimiser then reads it column by column
(or copies it first, a cost on every step; docs/performance.md, "Training").
:func:`linear` has its own gradient that computes ``dW = dy.T @ x`` directly, row-major, with
the same GEMM work (``dx = dy @ W``, ``db = sum(dy)``): the values are those of autodiff.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech._blas import few_rows_kernel
from mlx_speech.layers.activations import _on_cpu

FEW_ROWS = 4
CHUNK = 128
_MIN_WORK = 1 << 19  # (2, 512) @ (512, 512): the plain call is faster
# The small kernel keeps the rows of x in L1: up to 28 KB of them it reads the weight fast, past
# that (2 x 4096, 4 x 2048) it is slower than the plain call on 2 threads (docs/performance.md).
FEW_ROWS_MAX_INPUT = 7168


def few_rows_applies(rows: int, out_features: int, in_features: int) -> bool:
    """Whether :class:`Linear` takes the chunked CPU path for this call (device aside)."""
    return (not few_rows_kernel() and 0 < rows <= FEW_ROWS and out_features % CHUNK == 0
            and rows * in_features <= FEW_ROWS_MAX_INPUT
            and rows * out_features * in_features > _MIN_WORK)


def few_rows_matmul(x: mx.array, weight: mx.array) -> mx.array:
    """``x @ weight.T`` for ``x (..., K)`` with few rows, as a batch over 128-row weight slices."""
    N, K = weight.shape
    rows = x.size // K
    y = x.reshape(1, rows, K) @ weight.reshape(N // CHUNK, CHUNK, K).swapaxes(-1, -2)
    return y.transpose(1, 0, 2).reshape(*x.shape[:-1], N)


def _rows(cotangent: mx.array, x: mx.array, weight: mx.array) -> tuple[mx.array, mx.array]:
    """``dy (rows, N)`` and ``x (rows, K)``: every product below is one 2-D GEMM."""
    N, K = weight.shape
    return cotangent.reshape(-1, N), x.reshape(-1, K)


@mx.custom_function
def _linear_bias(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    return mx.addmm(bias, x, weight.T)


@_linear_bias.vjp
def _linear_bias_vjp(primals, cotangent, output):
    x, weight, _ = primals
    dy, xr = _rows(cotangent, x, weight)
    return (dy @ weight).reshape(x.shape), dy.T @ xr, dy.sum(axis=0)


@mx.custom_function
def _linear_nobias(x: mx.array, weight: mx.array) -> mx.array:
    return x @ weight.T


@_linear_nobias.vjp
def _linear_nobias_vjp(primals, cotangent, output):
    x, weight = primals
    dy, xr = _rows(cotangent, x, weight)
    return (dy @ weight).reshape(x.shape), dy.T @ xr


def linear(x: mx.array, weight: mx.array, bias: mx.array | None = None) -> mx.array:
    """``x @ weight.T + bias`` whose weight gradient is row-major (see the module docstring);
    ``x (..., K)``, ``weight (N, K)`` and ``bias (N,)`` of one dtype."""
    return _linear_nobias(x, weight) if bias is None else _linear_bias(x, weight, bias)


class Linear(nn.Linear):
    """Drop-in ``mlx.nn.Linear(input_dims, output_dims, bias=True)``; see the module docstring."""

    def __call__(self, x: mx.array) -> mx.array:
        w = self["weight"]
        N, K = w.shape
        bias = self["bias"] if "bias" in self else None
        plain = (x.ndim >= 1 and x.shape[-1] == K and x.dtype == w.dtype
                 and (bias is None or bias.dtype == w.dtype))
        if not (plain and _on_cpu()):
            return super().__call__(x)
        if few_rows_applies(x.size // K if K else 0, N, K):
            y = few_rows_matmul(x, w)
            return y + bias if bias is not None else y
        return linear(x, w, bias)
