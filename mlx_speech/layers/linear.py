"""``Linear``: ``mlx.nn.Linear`` (same parameters, names and maths) with a CPU path for a few rows.

Why: a streaming step pushes 1-4 rows through each projection (Mimi's transformers see two
25 Hz positions per 80 ms frame). For ``x (2, 512) @ W.T`` with ``W (2048, 512)`` OpenBLAS's
general sgemm repacks the whole weight on every call: ~570 us here, ~70% of it packing. Seen as
a batch of ``N / 128`` products against 128-row slices of ``W`` (a free reshape), each product
is small enough for OpenBLAS's small-matrix kernel, which reads ``W`` in place: ~265 us.

When: MLX's device is the CPU, at most :data:`FEW_ROWS` rows, ``rows * N * K > 2**19`` (up to
that the plain call is as fast or faster) and ``N`` a multiple of :data:`CHUNK`. Anything else, and every
GPU call, is ``mlx.nn.Linear``'s own. Results equal the plain call to float32 rounding (another
summation order); gradients flow through both paths.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import _on_cpu

FEW_ROWS = 4
CHUNK = 128
_MIN_WORK = 1 << 19  # (2, 512) @ (512, 512): the plain call is faster


def few_rows_applies(rows: int, out_features: int, in_features: int) -> bool:
    """Whether :class:`Linear` takes the chunked CPU path for this call (device aside)."""
    return (0 < rows <= FEW_ROWS and out_features % CHUNK == 0
            and rows * out_features * in_features > _MIN_WORK)


def few_rows_matmul(x: mx.array, weight: mx.array) -> mx.array:
    """``x @ weight.T`` for ``x (..., K)`` with few rows, as a batch over 128-row weight slices."""
    N, K = weight.shape
    rows = x.size // K
    y = x.reshape(1, rows, K) @ weight.reshape(N // CHUNK, CHUNK, K).swapaxes(-1, -2)
    return y.transpose(1, 0, 2).reshape(*x.shape[:-1], N)


class Linear(nn.Linear):
    """Drop-in ``mlx.nn.Linear(input_dims, output_dims, bias=True)``; see the module docstring."""

    def __call__(self, x: mx.array) -> mx.array:
        w = self["weight"]
        N, K = w.shape
        if (x.ndim >= 1 and x.shape[-1] == K and x.dtype == w.dtype
                and few_rows_applies(x.size // K if K else 0, N, K) and _on_cpu()):
            y = few_rows_matmul(x, w)
            return y + self["bias"] if "bias" in self else y
        return super().__call__(x)
