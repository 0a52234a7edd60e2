"""Multi-head self-attention with RoPE, GQA, causal / sliding-window masks and a KV cache (torch).

Mirror of ``mlx_speech/layers/attention.py`` (see its docstring for the masking rules).
Tensors are ``(B, T, D)`` at the boundary, heads ``(B, H, T, Dh)`` inside; projections
``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``; :class:`CrossAttention` mirrors the MLX one
(queries over a fixed memory, optional RoPE between query steps and memory frames).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torch_ref.layers.kv_cache import CrossKVCache, KVCache
from torch_ref.layers.rope import RotaryEmbedding


def check_heads(dim: int, num_heads: int, num_kv_heads: int | None, rope: bool) -> int:
    """Validate a head layout and return ``head_dim``; ValueError with the reason otherwise."""
    for name, value in (("dim", dim), ("num_heads", num_heads)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"attention: {name} must be a positive int, got {value!r}")
    if dim % num_heads:
        raise ValueError(f"attention: dim {dim} is not divisible by num_heads {num_heads}")
    kv = num_heads if num_kv_heads is None else num_kv_heads
    if not isinstance(kv, int) or kv <= 0 or num_heads % kv:
        raise ValueError(
            f"attention: num_heads {num_heads} is not a multiple of num_kv_heads {kv!r}")
    head_dim = dim // num_heads
    if rope and head_dim % 2:
        raise ValueError(
            f"attention: RoPE needs an even head_dim, got {dim}/{num_heads}={head_dim}")
    return head_dim


def window_mask(*, q_start: int, num_queries: int, k_start: int, num_keys: int,
                causal: bool, context: int | None,
                device: torch.device | None = None) -> torch.Tensor | None:
    """``(T, S)`` bool mask from absolute positions; None = all keys."""
    if not causal and context is None:
        return None
    pq = torch.arange(q_start, q_start + num_queries, device=device)[:, None]
    pk = torch.arange(k_start, k_start + num_keys, device=device)[None, :]
    delta = pq - pk
    if causal:
        allowed = delta >= 0
        if context is not None:
            allowed = allowed & (delta < context)
        return allowed
    return delta.abs() < context


class MultiHeadAttention(nn.Module):
    """Multi-head (optionally grouped-query) self-attention, ``(B, T, D) -> (B, T, D)``.

    Args: as ``mlx_speech.layers.attention.MultiHeadAttention``.
    """

    def __init__(self, *, dim: int, num_heads: int, num_kv_heads: int | None = None,
                 bias: bool = False, rope: bool = True, rope_interleaved: bool = True,
                 max_period: float = 10000.0, causal: bool = True, context: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.head_dim = check_heads(dim, num_heads, num_kv_heads, rope)
        if context is not None and (not isinstance(context, int) or context <= 0):
            raise ValueError(f"attention: context must be a positive int or None, got {context!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"attention: dropout must be in [0, 1), got {dropout!r}")
        self.dim = dim
        self.num_heads = num_heads
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        self.causal = causal
        self.context = context
        self.scale = self.head_dim ** -0.5
        kv_dim = self.num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, kv_dim, bias=bias)
        self.v_proj = nn.Linear(dim, kv_dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.rope = (RotaryEmbedding(head_dim=self.head_dim, max_period=max_period,
                                     interleaved=rope_interleaved) if rope else None)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
                f"causal={self.causal}, context={self.context}")

    def make_cache(self) -> KVCache:
        """A fresh cache for incremental calls (bounded by ``context`` when set)."""
        return KVCache(context=self.context)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, T, D)``; ``cache``: continue a stream (causal only); ``mask``: ``(B, S)``
        bool key padding mask, True = real frame. Returns ``(B, T, D)``."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                f"attention expects (B, T, {self.dim}) input, got shape {tuple(x.shape)}")
        if cache is not None and not self.causal:
            raise ValueError("attention: a KV cache needs causal=True (future keys are unknown)")
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        offset = 0 if cache is None else cache.offset
        if self.rope is not None:
            q = self.rope(q, offset=offset)
            k = self.rope(k, offset=offset)
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
        S = k.shape[2]
        attn_mask, is_causal = self._mask(B, T, S, offset, mask, x.device)
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=self.scale,
            enable_gqa=self.num_kv_heads != self.num_heads)
        o = o.transpose(1, 2).reshape(B, T, self.dim)
        if self.dropout is not None:
            o = self.dropout(o)
        return self.out_proj(o)

    def _mask(self, B: int, T: int, S: int, offset: int, key_mask: torch.Tensor | None,
              device: torch.device) -> tuple[torch.Tensor | None, bool]:
        if key_mask is None and self.context is None and T == S:
            # torch's is_causal is top-left aligned: exact only when keys == queries.
            return None, self.causal and T > 1
        allowed = window_mask(q_start=offset, num_queries=T, k_start=offset + T - S,
                              num_keys=S, causal=self.causal, context=self.context,
                              device=device)
        if key_mask is None:
            return allowed, False
        if tuple(key_mask.shape) != (B, S) or key_mask.dtype != torch.bool:
            raise ValueError(
                f"attention: key padding mask must be bool (B, S) = ({B}, {S}), got "
                f"{key_mask.dtype} {tuple(key_mask.shape)}")
        keys = key_mask[:, None, None, :]
        allowed = keys if allowed is None else allowed[None, None] & keys
        return allowed, False


class CrossAttention(nn.Module):
    """Multi-head attention from queries ``(B, T, D)`` to a memory ``(B, S, D_mem)``.

    Args: as ``mlx_speech.layers.attention.CrossAttention``.
    """

    def __init__(self, *, dim: int, num_heads: int, memory_dim: int | None = None,
                 num_kv_heads: int | None = None, bias: bool = False, rope: bool = False,
                 rope_interleaved: bool = True, max_period: float = 10000.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.head_dim = check_heads(dim, num_heads, num_kv_heads, rope)
        memory_dim = dim if memory_dim is None else memory_dim
        if not isinstance(memory_dim, int) or isinstance(memory_dim, bool) or memory_dim <= 0:
            raise ValueError(f"attention: memory_dim must be a positive int, got {memory_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"attention: dropout must be in [0, 1), got {dropout!r}")
        self.dim, self.memory_dim = dim, memory_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        self.scale = self.head_dim ** -0.5
        kv_dim = self.num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(memory_dim, kv_dim, bias=bias)
        self.v_proj = nn.Linear(memory_dim, kv_dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.rope = (RotaryEmbedding(head_dim=self.head_dim, max_period=max_period,
                                     interleaved=rope_interleaved) if rope else None)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, memory_dim={self.memory_dim}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, rope={self.rope is not None}")

    def make_cache(self) -> CrossKVCache:
        return CrossKVCache()

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(B, H_kv, S, Dh)`` of ``memory (B, S, D_mem)``."""
        if memory.dim() != 3 or memory.shape[-1] != self.memory_dim:
            raise ValueError(f"cross-attention expects a (B, S, {self.memory_dim}) memory, got "
                             f"shape {tuple(memory.shape)}")
        B, S, _ = memory.shape
        k = self.k_proj(memory).view(B, S, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(memory).view(B, S, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if self.rope is not None:
            k = self.rope(k, offset=0)
        return k, v

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, *,
                cache: CrossKVCache | None = None, mask: torch.Tensor | None = None,
                offset: int = 0) -> torch.Tensor:
        """As ``mlx_speech.layers.attention.CrossAttention.__call__``."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                f"cross-attention expects (B, T, {self.dim}) input, got shape {tuple(x.shape)}")
        if cache is not None and cache.filled:
            k, v = cache.keys, cache.values
        else:
            if memory is None:
                raise ValueError("cross-attention needs a memory (or a filled cache)")
            k, v = self.memory_kv(memory)
            if cache is not None:
                cache.set(k, v)
        B, T, _ = x.shape
        if k.shape[0] != B:
            raise ValueError(f"cross-attention: {B} query rows against a memory of {k.shape[0]}")
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        if self.rope is not None:
            q = self.rope(q, offset=offset)
        attn_mask = None
        if mask is not None:
            S = k.shape[2]
            if tuple(mask.shape) != (B, S) or mask.dtype != torch.bool:
                raise ValueError(
                    f"attention: key padding mask must be bool (B, S) = ({B}, {S}), got "
                    f"{mask.dtype} {tuple(mask.shape)}")
            attn_mask = mask[:, None, None, :]
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, scale=self.scale,
            enable_gqa=self.num_kv_heads != self.num_heads)
        if attn_mask is not None:  # a row without any memory frame is 0 (as the MLX twin)
            o = torch.where(attn_mask.any(dim=-1, keepdim=True), o, torch.zeros_like(o))
        o = o.transpose(1, 2).reshape(B, T, self.dim)
        if self.dropout is not None:
            o = self.dropout(o)
        return self.out_proj(o)
