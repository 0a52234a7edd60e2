"""Multi-head self-attention with RoPE, GQA, causal / sliding-window masks and a KV cache (MLX).

Tensors are ``(B, T, D)`` at the boundary; heads are ``(B, H, T, Dh)`` inside. Projections are
``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (Linear, torch layout ``(out, in)``), so the
torch_ref twin shares every state-dict key. moshi's fused ``in_proj`` splits row-wise into
q, k, v in that order.

Which key a query at absolute position ``p`` may see (True = attend):

* ``causal=True``: keys at ``q <= p``; with ``context=C`` also ``p - q < C`` (moshi / Mimi:
  the current frame and the ``C - 1`` before it);
* ``causal=False``: every key; with ``context=C`` only ``|p - q| < C``;
* a key padding mask ``(B, S)`` (True = real frame) removes padded keys on top of that. A query
  that ends up seeing no key at all outputs zeros (as torch's SDPA does).

:class:`CrossAttention` attends from queries ``(B, T, D)`` to a fixed memory ``(B, S, D_mem)``
(an encoder's output): every query sees every memory position a memory mask ``(B, S)`` keeps.
With ``rope=True`` the queries are rotated at their own positions (``offset`` onwards) and the
memory keys at ``0 .. S-1``, so a score depends on the offset between a query's step and a
memory frame: a near-diagonal alignment (two streams at one frame rate) is easy to learn.
Its cache (:class:`~mlx_speech.layers.kv_cache.CrossKVCache`) holds the memory's projected
keys and values, computed on the first call.

The attention kernel (:func:`scaled_dot_product_attention`) is ``mx.fast`` on a GPU; on the
CPU backend, where ``mx.fast.scaled_dot_product_attention`` is an unfused fallback whose
softmax runs a scalar ``exp``, a matmul / vectorised-softmax (``exp2_fast``) / matmul path is
several times faster.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import _LOG2E, exp2_fast
from mlx_speech.layers.kv_cache import CrossKVCache, KVCache, RingView
from mlx_speech.layers.linear import Linear
from mlx_speech.layers.rope import RotaryEmbedding


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
                causal: bool, context: int | None) -> mx.array | None:
    """``(T, S)`` bool mask from absolute positions (see module docstring); None = all keys."""
    if not causal and context is None:
        return None
    pq = mx.arange(q_start, q_start + num_queries)[:, None]
    pk = mx.arange(k_start, k_start + num_keys)[None, :]
    delta = pq - pk
    if causal:
        allowed = delta >= 0
        if context is not None:
            allowed = allowed & (delta < context)
        return allowed
    return mx.abs(delta) < context


def scaled_dot_product_attention(q: mx.array, k: mx.array, v: mx.array, *, scale: float,
                                 mask: mx.array | str | None = None,
                                 fused: bool | None = None) -> mx.array:
    """``softmax(q k^T * scale + mask) v`` with GQA, softmax in float32.

    ``q``: ``(B, H, T, Dh)``; ``k, v``: ``(B, H_kv, S, Dh)`` with ``H % H_kv == 0`` (not
    pre-tiled); ``mask``: None, ``"causal"`` (lower-right aligned: the last query sees the last
    key) or a bool array ``(T, S)`` or ``(B|1, H|1, T|1, S)``, True = attend. ``fused``: force
    ``mx.fast`` (True) or the explicit path (False); None picks ``mx.fast`` on a GPU.
    Returns ``(B, H, T, Dh)``.
    """
    if fused is None:
        fused = mx.default_device().type == mx.DeviceType.gpu
    if fused:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    B, H, T, Dh = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    rep = H // Hkv
    if mask is not None and isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"attention: unknown mask {mask!r}; expected 'causal' or an array")
        mask = (mx.arange(T)[:, None] + (S - T)) >= mx.arange(S)[None, :]
    # Grouped heads share k/v by broadcasting over a group axis: (B, H_kv, rep, T, .).
    # Scores come out in log2 units (scale * log2 e folded into q), so the softmax is exp2_fast.
    qg = (q * mx.array(scale * _LOG2E, dtype=q.dtype)).reshape(B, Hkv, rep, T, Dh)
    scores = (qg @ k[:, :, None].swapaxes(-1, -2)).astype(mx.float32)
    if mask is not None:
        if mask.ndim == 4:
            # (B|1, 1|H, T|1, S) -> a group axis: query head h = kv_head * rep + r.
            mask = mask[:, :, None] if mask.shape[1] == 1 else mask.reshape(
                mask.shape[0], Hkv, rep, *mask.shape[2:])
        # Finite fill: a row with no visible key stays finite (the caller zeroes it).
        scores = mx.where(mask, scores, -1e30)
    scores = scores - mx.max(scores, axis=-1, keepdims=True)
    weights = exp2_fast(scores)
    # Normalising after the product divides (T, Dh) values instead of (T, S).
    out = (weights.astype(v.dtype) @ v[:, :, None]) * mx.reciprocal(
        mx.sum(weights, axis=-1, keepdims=True)).astype(v.dtype)
    return out.reshape(B, H, T, Dh)


class MultiHeadAttention(nn.Module):
    """Multi-head (optionally grouped-query) self-attention, ``(B, T, D) -> (B, T, D)``.

    Args:
        dim: model width ``D``.
        num_heads: query heads ``H``; ``head_dim = D / H``.
        num_kv_heads: key/value heads (GQA); None means ``H``.
        bias: biases on all four projections.
        rope: apply rotary embeddings to q and k.
        rope_interleaved: moshi's pair layout (True) or HF's rotate-half (False).
        max_period: RoPE longest period.
        causal: queries see only keys at earlier or equal positions.
        context: sliding-window size in positions (None: unbounded).
        dropout: dropout on the attention output before ``out_proj`` (training only).
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
        self.q_proj = Linear(dim, dim, bias=bias)
        self.k_proj = Linear(dim, kv_dim, bias=bias)
        self.v_proj = Linear(dim, kv_dim, bias=bias)
        self.out_proj = Linear(dim, dim, bias=bias)
        self.rope = (RotaryEmbedding(head_dim=self.head_dim, max_period=max_period,
                                     interleaved=rope_interleaved) if rope else None)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def _extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
                f"causal={self.causal}, context={self.context}")

    def make_cache(self) -> KVCache:
        """A fresh cache for incremental calls (bounded by ``context`` when set)."""
        return KVCache(context=self.context)

    def __call__(self, x: mx.array, cache: KVCache | None = None,
                 mask: mx.array | None = None) -> mx.array:
        """``x``: ``(B, T, D)``. ``cache``: continue a stream (causal only); ``x`` then holds the
        next ``T`` positions. ``mask``: ``(B, S)`` bool key padding mask, True = real frame,
        ``S`` = ``T`` without a cache, else the number of keys the cache returns
        (``min(cache.length, context) + T``). Returns ``(B, T, D)``."""
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"attention expects (B, T, {self.dim}) input, got shape {x.shape}")
        if cache is not None and not self.causal:
            raise ValueError("attention: a KV cache needs causal=True (future keys are unknown)")
        B, T, _ = x.shape
        q = self.q_proj(x).reshape(B, T, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)
        k = self.k_proj(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(0, 2, 1, 3)
        v = self.v_proj(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(0, 2, 1, 3)
        offset = 0 if cache is None else cache.offset
        if self.rope is not None:
            q = self.rope(q, offset=offset)
            k = self.rope(k, offset=offset)
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
        S = k.shape[2]
        if isinstance(cache, RingView):  # a ring's slots are not in time order: its own mask
            if mask is not None:
                raise ValueError("attention: a ring cache step takes no key padding mask")
            attn_mask, visible = cache.visible, None
        else:
            attn_mask, visible = self._mask(B, T, S, offset, mask)
        o = scaled_dot_product_attention(q, k, v, scale=self.scale, mask=attn_mask)
        if visible is not None:
            o = o * visible.astype(o.dtype)
        o = o.transpose(0, 2, 1, 3).reshape(B, T, self.dim)
        if self.dropout is not None:
            o = self.dropout(o)
        return self.out_proj(o)

    def _mask(self, B: int, T: int, S: int, offset: int,
              key_mask: mx.array | None) -> tuple[mx.array | str | None, mx.array | None]:
        """The SDPA mask and, with a key padding mask, ``(B, 1, T, 1)`` rows that see a key."""
        if key_mask is None and self.context is None:
            # Keys end with the current chunk, so "causal" (lower-right aligned) is exact.
            return ("causal" if self.causal and T > 1 else None), None
        allowed = window_mask(q_start=offset, num_queries=T, k_start=offset + T - S,
                              num_keys=S, causal=self.causal, context=self.context)
        if key_mask is None:
            return allowed, None
        if key_mask.shape != (B, S) or key_mask.dtype != mx.bool_:
            raise ValueError(
                f"attention: key padding mask must be bool (B, S) = ({B}, {S}), got "
                f"{key_mask.dtype} {key_mask.shape}")
        keys = key_mask[:, None, None, :]
        allowed = keys if allowed is None else allowed[None, None] & keys
        allowed = mx.broadcast_to(allowed, (B, 1, T, S))
        return allowed, mx.any(allowed, axis=-1, keepdims=True)


def key_padding_mask(mask: mx.array, B: int, S: int) -> tuple[mx.array, mx.array]:
    """A ``(B, S)`` bool key mask (True = real) as the SDPA mask ``(B, 1, 1, S)`` and the
    ``(B, 1, 1, 1)`` rows that see at least one key."""
    if mask.shape != (B, S) or mask.dtype != mx.bool_:
        raise ValueError(f"attention: key padding mask must be bool (B, S) = ({B}, {S}), got "
                         f"{mask.dtype} {mask.shape}")
    keys = mask[:, None, None, :]
    return keys, mx.any(keys, axis=-1, keepdims=True)


class CrossAttention(nn.Module):
    """Multi-head attention from queries ``(B, T, D)`` to a memory ``(B, S, D_mem)``.

    Args:
        dim: query / output width ``D``; ``head_dim = D / num_heads``.
        num_heads, num_kv_heads, bias, dropout: as :class:`MultiHeadAttention`.
        memory_dim: width of the memory (None: ``dim``); ``k_proj`` / ``v_proj`` read it.
        rope, rope_interleaved, max_period: relative positions between query steps and memory
            frames (module docstring); off by default.

    Projections ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` as :class:`MultiHeadAttention`.
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
        self.q_proj = Linear(dim, dim, bias=bias)
        self.k_proj = Linear(memory_dim, kv_dim, bias=bias)
        self.v_proj = Linear(memory_dim, kv_dim, bias=bias)
        self.out_proj = Linear(dim, dim, bias=bias)
        self.rope = (RotaryEmbedding(head_dim=self.head_dim, max_period=max_period,
                                     interleaved=rope_interleaved) if rope else None)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def _extra_repr(self) -> str:
        return (f"dim={self.dim}, memory_dim={self.memory_dim}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, rope={self.rope is not None}")

    def make_cache(self) -> CrossKVCache:
        return CrossKVCache()

    def memory_kv(self, memory: mx.array) -> tuple[mx.array, mx.array]:
        """Keys and values ``(B, H_kv, S, Dh)`` of ``memory (B, S, D_mem)`` (keys rotated at
        positions ``0 .. S-1`` with RoPE)."""
        if memory.ndim != 3 or memory.shape[-1] != self.memory_dim:
            raise ValueError(f"cross-attention expects a (B, S, {self.memory_dim}) memory, got "
                             f"shape {memory.shape}")
        B, S, _ = memory.shape
        k = self.k_proj(memory).reshape(B, S, self.num_kv_heads, self.head_dim).transpose(0, 2, 1, 3)
        v = self.v_proj(memory).reshape(B, S, self.num_kv_heads, self.head_dim).transpose(0, 2, 1, 3)
        if self.rope is not None:
            k = self.rope(k, offset=0)
        return k, v

    def __call__(self, x: mx.array, memory: mx.array | None = None, *,
                 cache: CrossKVCache | None = None, mask: mx.array | None = None,
                 offset: int = 0) -> mx.array:
        """``x``: ``(B, T, D)`` queries at positions ``offset ..``; ``memory``: ``(B, S, D_mem)``
        (may be None once ``cache`` is filled); ``mask``: ``(B, S)`` bool memory mask, True =
        real frame. Returns ``(B, T, D)``; a query whose row of ``mask`` is all False gives 0."""
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"cross-attention expects (B, T, {self.dim}) input, got shape {x.shape}")
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
        q = self.q_proj(x).reshape(B, T, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)
        if self.rope is not None:
            q = self.rope(q, offset=offset)
        attn_mask, visible = (None, None) if mask is None else key_padding_mask(mask, B, k.shape[2])
        o = scaled_dot_product_attention(q, k, v, scale=self.scale, mask=attn_mask)
        if visible is not None:
            o = o * visible.astype(o.dtype)
        o = o.transpose(0, 2, 1, 3).reshape(B, T, self.dim)
        if self.dropout is not None:
            o = self.dropout(o)
        return self.out_proj(o)
