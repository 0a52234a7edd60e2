"""Attention with an additive score bias, for the SSL encoders' relative position schemes (torch
mirror of ``mlx_speech/models/ssl/attention.py``).

WavLM (gated bucket bias) and w2v-BERT (Shaw / Transformer-XL terms) add a float bias to the
scores, which the shared :class:`torch_ref.layers.attention.MultiHeadAttention` does not take;
:func:`attend` computes ``softmax(q k^T * scale + gate * bias) v`` with an optional boolean key
mask through ``F.scaled_dot_product_attention`` with the bias as its float ``attn_mask``.
Masked keys get the same finite fill as the MLX side, so a row without any visible key gives
the mean of the values in both frameworks rather than NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_NEG = -1e30  # finite fill, as the MLX twin


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float,
           bias: torch.Tensor | None = None, gate: torch.Tensor | None = None,
           key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T * scale + gate * bias) v``.

    ``q, k, v``: ``(B, H, T, Dh)`` / ``(B, H, S, Dh)``; ``bias`` broadcastable to
    ``(B, H, T, S)``; ``gate`` (optional, needs ``bias``) broadcastable likewise, e.g.
    ``(B, H, T, 1)``; ``key_mask`` ``(B, S)`` bool, True = real key. Returns ``(B, H, T, Dh)``.
    """
    if gate is not None and bias is None:
        raise ValueError("attend: a gate needs a bias to scale")
    if gate is not None:
        bias = gate * bias
    if key_mask is not None:
        fill = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device)
        fill = fill.masked_fill(~key_mask, _NEG)[:, None, None, :]
        bias = fill if bias is None else bias + fill
    if bias is not None:
        B, H, T, _ = q.shape
        bias = bias.to(q.dtype).expand(B, H, T, k.shape[2])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, T, H*Dh)`` -> ``(B, H, T, Dh)``."""
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, Dh)`` -> ``(B, T, H*Dh)``."""
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)
