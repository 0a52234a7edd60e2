"""Attention with an additive score bias, for the SSL encoders' relative position schemes (MLX).

The shared :func:`mlx_speech.layers.attention.scaled_dot_product_attention` takes boolean masks
only; WavLM (gated bucket bias) and w2v-BERT (Shaw / Transformer-XL terms) add a float bias to
the scores, so this model-local kernel computes ``softmax(q k^T * scale + gate * bias) v`` with
an optional boolean key mask. It follows the shared kernel's CPU recipe (matmul, float32
softmax in log2 units through the vectorised :func:`~mlx_speech.layers.activations.exp2_fast`,
normalising after the product), with the gated bias added in one compiled pass. On a GPU it
calls ``mx.fast.scaled_dot_product_attention`` with the bias as an additive mask.
"""

from __future__ import annotations

import mlx.core as mx

from mlx_speech.layers.activations import _LOG2E, exp2_fast

_NEG = -1e30  # finite fill: a row without any visible key stays finite

# s + g * b with g broadcast per query row (or a scalar): strided whatever we do, so shapeless
_add_gated = mx.compile(lambda s, g, b: s + g * b, shapeless=True)


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
    # scores in log2 units (scale * log2 e folded into q and the bias gate): softmax by exp2_fast
    q = q * mx.array(scale * _LOG2E, dtype=q.dtype)
    scores = (q @ k.swapaxes(-1, -2)).astype(mx.float32)
    if bias is not None:
        g = mx.array(_LOG2E, dtype=mx.float32) if gate is None else gate.astype(mx.float32) * _LOG2E
        scores = _add_gated(scores, g, bias.astype(mx.float32))
    weights = exp2_fast(scores - mx.max(scores, axis=-1, keepdims=True))
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
