"""Attention with an additive score bias, for the SSL encoders' relative position schemes (MLX).

The shared :func:`mlx_speech.layers.attention.scaled_dot_product_attention` takes boolean masks
only; WavLM (gated bucket bias) and w2v-BERT (Shaw / Transformer-XL terms) add a float bias to
the scores, so this model-local kernel computes ``softmax(q k^T * scale + gate * bias) v`` with
an optional boolean key mask. It follows the shared kernel's CPU recipe (matmul, float32
softmax through an ``exp_fast``-style polynomial, normalising after the product)
and fuses the element-wise passes over the ``(B, H, T, S)`` scores into two compiled kernels
(bias add; subtract-max + exp): on the CPU backend every separate pass over those scores costs
about as much as the ``q k^T`` product itself. On a GPU it calls
``mx.fast.scaled_dot_product_attention`` with the bias as an additive mask.
"""

from __future__ import annotations

import mlx.core as mx

from mlx_speech.layers.activations import _EXP2_C, _LOG2E

_NEG = -1e30  # finite fill: a row without any visible key stays finite

_add = mx.compile(lambda s, b: s + b, shapeless=True)
_add_gated = mx.compile(lambda s, g, b: s + g * b, shapeless=True)


def _exp_below(z: mx.array, m: mx.array) -> mx.array:
    """``exp(z - m)`` for ``z <= m``, float32, as accurate as ``exp_fast`` (~6e-8 absolute).

    The same ``2**n * poly(f)`` as :func:`mlx_speech.layers.activations.exp_fast`, written for
    MLX's CPU code generator: a select instead of ``maximum`` (no NaN branch) and truncation of
    ``y - 0.5`` instead of ``round`` (no libm call), ~1.5x faster per element. Results below
    ``2**-125`` are clamped to ~``2**-125`` instead of underflowing to 0 (harmless in a softmax,
    and never a denormal, which would slow the following GEMM down).
    """
    t = (z - m) * _LOG2E
    y = mx.where(t < -125.0, -125.0, t)
    n = (y - 0.5).astype(mx.int32)  # round to nearest for y <= 0
    f = y - n.astype(mx.float32)
    p = _EXP2_C[-1]
    for c in reversed(_EXP2_C[:-1]):
        p = p * f + c
    return p * mx.view(mx.left_shift(n + 127, 23), mx.float32)


# not shapeless: the exponent bits go through a view, which shapeless tracing rejects; a new
# (B, H, T, S) retraces (cheap: the generated kernel source is cached)
_exp_kernel = mx.compile(_exp_below)


@mx.custom_function
def _exp_shifted(z: mx.array, m: mx.array) -> mx.array:
    return _exp_kernel(z, m)


@_exp_shifted.vjp
def _exp_shifted_vjp(primals, cotangent, output):
    g = cotangent * output  # d exp(z - m) = exp(z - m) (dz - dm); the bit cast has no gradient
    return g, -mx.sum(g, axis=-1, keepdims=True)


def attend(q: mx.array, k: mx.array, v: mx.array, *, scale: float,
           bias: mx.array | None = None, gate: mx.array | None = None,
           key_mask: mx.array | None = None) -> mx.array:
    """``softmax(q k^T * scale + gate * bias) v``.

    ``q, k, v``: ``(B, H, T, Dh)`` / ``(B, H, S, Dh)``; ``bias`` broadcastable to
    ``(B, H, T, S)``; ``gate`` (optional, needs ``bias``) broadcastable likewise, e.g.
    ``(B, H, T, 1)``; ``key_mask`` ``(B, S)`` bool, True = real key. Returns ``(B, H, T, Dh)``.
    Queries whose keys are all masked get the mean of the values (no such row arises from a
    padding mask that keeps at least one frame).
    """
    if gate is not None and bias is None:
        raise ValueError("attend: a gate needs a bias to scale")
    gpu = mx.default_device().type == mx.DeviceType.gpu
    if gate is not None and (key_mask is not None or gpu):
        bias, gate = gate * bias, None  # fold the gate into one additive bias
    if key_mask is not None:
        keep = key_mask[:, None, None, :]
        fill = mx.where(keep, mx.array(0.0, dtype=mx.float32), mx.array(_NEG, dtype=mx.float32))
        bias = fill if bias is None else bias.astype(mx.float32) + fill
    if gpu:
        mask = None if bias is None else bias.astype(q.dtype)
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    scores = ((q * mx.array(scale, dtype=q.dtype)) @ k.swapaxes(-1, -2)).astype(mx.float32)
    if gate is not None:
        scores = _add_gated(scores, gate.astype(mx.float32), bias.astype(mx.float32))
    elif bias is not None:
        scores = _add(scores, bias.astype(mx.float32))
    weights = _exp_shifted(scores, mx.max(scores, axis=-1, keepdims=True))
    out = (weights.astype(v.dtype) @ v) * mx.reciprocal(
        mx.sum(weights, axis=-1, keepdims=True)).astype(v.dtype)
    return out


def split_heads(x: mx.array, num_heads: int) -> mx.array:
    """``(B, T, H*Dh)`` -> ``(B, H, T, Dh)``."""
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x: mx.array) -> mx.array:
    """``(B, H, T, Dh)`` -> ``(B, T, H*Dh)``."""
    B, H, T, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * Dh)
