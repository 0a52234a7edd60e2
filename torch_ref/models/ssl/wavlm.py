"""WavLM's gated relative position bias attention (torch mirror of
``mlx_speech/models/ssl/wavlm.py``; see its docstring for the upstream quirks matched here).

Only layer 0 owns the bucket table (``rel_attn_embed``); it computes the ungated bias
``(H, T, T)`` once and every later layer gates that same tensor with its own per-query gate.
The bucket indices are the framework-free
:func:`mlx_speech.models.ssl.tables.relative_position_buckets`, so both frameworks look up the
same rows of the table.
"""

from __future__ import annotations

import torch
from torch import nn

from mlx_speech.models.ssl.tables import relative_position_buckets
from torch_ref.models.ssl.attention import attend, merge_heads, split_heads

__all__ = ["WavLMAttention", "relative_position_buckets"]


class WavLMAttention(nn.Module):
    """Self-attention with WavLM's gated relative position bias, ``(B, T, D) -> (B, T, D)``.

    ``forward(x, position_bias)`` returns ``(out, position_bias)``: layer 0 (the one built with
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
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.gru_rel_pos_linear = nn.Linear(self.head_dim, 8)
        self.rel_attn_embed = (nn.Embedding(num_buckets, num_heads) if has_relative_position_bias
                               else None)
        self._buckets: dict[tuple[int, str], torch.Tensor] = {}

    def compute_bias(self, length: int, device: torch.device) -> torch.Tensor:
        """The ungated bias ``(H, T, T)`` for ``T = length`` (layer 0 only)."""
        if self.rel_attn_embed is None:
            raise ValueError("WavLM attention: only the first layer holds the bucket table; "
                             "pass it the position bias computed by layer 0")
        key = (length, str(device))
        idx = self._buckets.get(key)
        if idx is None:
            idx = torch.from_numpy(relative_position_buckets(
                length, length, num_buckets=self.num_buckets,
                max_distance=self.max_distance).astype("int64")).to(device)
            self._buckets = {key: idx}  # keep one length: batches rarely change it
        return self.rel_attn_embed(idx).permute(2, 0, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Per-query, per-head gate ``(B, H, T, 1)`` from the attention input ``(B, T, D)``."""
        B, T, _ = x.shape
        g = self.gru_rel_pos_linear(x.reshape(B, T, self.num_heads, self.head_dim))
        g = torch.sigmoid(g.reshape(B, T, self.num_heads, 2, 4).sum(dim=-1))  # (B, T, H, 2)
        const = self.gru_rel_pos_const.reshape(self.num_heads)
        gate = g[..., 0] * (g[..., 1] * const - 1.0) + 2.0  # (B, T, H)
        return gate.transpose(1, 2)[..., None]

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: ``(B, T, D)``; ``position_bias``: ``(H, T, T)`` or None (layer 0);
        ``key_mask``: ``(B, T)`` bool, True = real frame. Returns ``(out, position_bias)``."""
        if position_bias is None:
            position_bias = self.compute_bias(x.shape[1], x.device)
        q = split_heads(self.q_proj(x), self.num_heads)
        k = split_heads(self.k_proj(x), self.num_heads)
        v = split_heads(self.v_proj(x), self.num_heads)
        o = attend(q, k, v, scale=self.scale, bias=position_bias[None], gate=self.gate(x),
                   key_mask=key_mask)
        return self.out_proj(merge_heads(o)), position_bias
