"""WavLM's gated relative position bias attention (MLX).

WavLM (Chen et al. 2022) replaces nothing in the wav2vec 2.0 layout but the attention: the
scores get a learnt bias per (head, bucketed relative distance), scaled per query by a gate
computed from that query's input.

Upstream quirks this module matches (transformers ``modeling_wavlm``):

* Only layer 0 owns the bucket table (``rel_attn_embed``, ``num_buckets x H``). It computes the
  *ungated* bias ``(H, T, T)`` once and every later layer receives that same tensor and gates it
  with its own gate; the layer passes the ungated bias on, not its gated version.
* Buckets (T5-style, bidirectional): relative position ``key - query``; half the buckets for
  positive offsets; offsets below ``num_buckets / 4`` exact, larger ones log-spaced up to
  ``max_bucket_distance``. Upstream computes the log-spacing in float32 and truncates toward
  zero; :func:`~mlx_speech.models.ssl.tables.relative_position_buckets` does the same
  arithmetic in float32 numpy (framework-free, shared with torch_ref), so bucket boundaries
  agree (a test checks every offset up to +-3000 against transformers).
* The gate reads the attention *input* split into heads (``(B, H, T, Dh)``), projects each head
  with the shared ``gru_rel_pos_linear`` (``Dh -> 8``), sums the 8 outputs in two groups of 4,
  and with ``a, b = sigmoid(...)`` uses ``gate = a * (b * gru_rel_pos_const - 1) + 2``.
* Scores are ``(q * Dh**-0.5) k^T + gate * bias`` (torch ``multi_head_attention_forward`` with a
  float ``attn_mask``); q/k/v/out projections all have biases.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.models.ssl.attention import attend, merge_heads, split_heads
from mlx_speech.models.ssl.tables import relative_position_buckets

__all__ = ["WavLMAttention", "relative_position_buckets"]


class WavLMAttention(nn.Module):
    """Self-attention with WavLM's gated relative position bias, ``(B, T, D) -> (B, T, D)``.

    ``__call__(x, position_bias)`` returns ``(out, position_bias)``: layer 0 (the one built with
    ``has_relative_position_bias=True``) computes the ungated bias ``(H, T, T)`` when given None;
    later layers must receive it.
    """

    def __init__(self, *, dim: int, num_heads: int, num_buckets: int = 320,
                 max_distance: int = 800, has_relative_position_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"WavLM attention: dim {dim} is not divisible by {num_heads} heads")
        self.dim, self.num_heads = dim, num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gru_rel_pos_const = mx.ones((1, num_heads, 1, 1))
        self.gru_rel_pos_linear = nn.Linear(self.head_dim, 8)
        if has_relative_position_bias:
            self.rel_attn_embed = nn.Embedding(num_buckets, num_heads)
        self._buckets: dict[int, mx.array] = {}

    def compute_bias(self, length: int) -> mx.array:
        """The ungated bias ``(H, T, T)`` for ``T = length`` (layer 0 only)."""
        if "rel_attn_embed" not in self:
            raise ValueError("WavLM attention: only the first layer holds the bucket table; "
                             "pass it the position bias computed by layer 0")
        idx = self._buckets.get(length)
        if idx is None:
            idx = mx.array(relative_position_buckets(length, length, num_buckets=self.num_buckets,
                                                     max_distance=self.max_distance))
            self._buckets = {length: idx}  # keep one length: batches rarely change it
        # contiguous once here: every layer's bias kernel reads it (a strided read is ~2x slower)
        return mx.contiguous(self.rel_attn_embed(idx).transpose(2, 0, 1))

    def gate(self, x: mx.array) -> mx.array:
        """Per-query, per-head gate ``(B, H, T, 1)`` from the attention input ``(B, T, D)``."""
        B, T, _ = x.shape
        g = self.gru_rel_pos_linear(x.reshape(B, T, self.num_heads, self.head_dim))
        g = mx.sigmoid(g.reshape(B, T, self.num_heads, 2, 4).sum(axis=-1))  # (B, T, H, 2)
        const = self.gru_rel_pos_const.reshape(self.num_heads)
        gate = g[..., 0] * (g[..., 1] * const - 1.0) + 2.0  # (B, T, H)
        return gate.transpose(0, 2, 1)[..., None]

    def __call__(self, x: mx.array, position_bias: mx.array | None = None,
                 key_mask: mx.array | None = None) -> tuple[mx.array, mx.array]:
        """``x``: ``(B, T, D)``; ``position_bias``: ``(H, T, T)`` or None (layer 0);
        ``key_mask``: ``(B, T)`` bool, True = real frame. Returns ``(out, position_bias)``."""
        if position_bias is None:
            position_bias = self.compute_bias(x.shape[1])
        q = split_heads(self.q_proj(x), self.num_heads)
        k = split_heads(self.k_proj(x), self.num_heads)
        v = split_heads(self.v_proj(x), self.num_heads)
        o = attend(q, k, v, scale=self.scale, bias=position_bias[None], gate=self.gate(x),
                   key_mask=key_mask)
        return self.out_proj(merge_heads(o)), position_bias
