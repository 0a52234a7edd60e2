"""Pre-norm transformer layer and stack with KV-cache streaming (MLX).

Tensors are ``(B, T, D)``. Names follow moshi's ``StreamingTransformerLayer`` so Mimi maps with
a flat rename list: ``norm1, self_attn.{q,k,v,out}_proj, norm2, linear1, linear2,
layer_scale_1.scale, layer_scale_2.scale``; the stack is ``layers.N`` plus an optional final
``norm``. One layer computes::

    x = x + layer_scale_1(self_attn(norm1(x)))
    x = x + layer_scale_2(ffn(norm2(x)))

with ``ffn`` either ``linear2(act(linear1(x)))`` (``ffn_type="mlp"``, moshi / Mimi with GELU)
or ``down_proj(act(gate_proj(x)) * up_proj(x))`` (``ffn_type="gated"``, SwiGLU with
``activation="silu"``).

:class:`TransformerDecoder` (an encoder-decoder's decoder) stacks :class:`CrossTransformerLayer`,
which adds cross-attention to a memory between the two::

    x = x + layer_scale_1(self_attn(norm1(x)))
    x = x + layer_scale_cross(cross_attn(norm_cross(x), memory))
    x = x + layer_scale_2(ffn(norm2(x)))

Its cache per layer is a pair ``(KVCache, CrossKVCache)``: the self-attention's grows by one
entry per step, the cross-attention's holds the memory's keys and values, projected once.

Mimi's transformer (moshi ``mimi_202407``): ``norm="layer"`` (eps 1e-5), ``attn_bias=False``,
``ffn_bias=False``, ``rope=True, rope_interleaved=True, max_period=10000``, ``causal=True,
context=250``, ``layer_scale=0.01``, ``ffn_type="mlp", activation="gelu"``, no final norm.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import get_activation
from mlx_speech.layers.attention import CrossAttention, MultiHeadAttention
from mlx_speech.layers.kv_cache import CrossKVCache, KVCache, RingKVCache, ring_views
from mlx_speech.layers.linear import Linear
from mlx_speech.layers.norms import LayerScale, make_norm

FFN_TYPES = ("mlp", "gated")


class TransformerLayer(nn.Module):
    """One pre-norm block: self-attention then feed-forward, ``(B, T, D) -> (B, T, D)``.

    Args:
        dim, num_heads, num_kv_heads, causal, context, rope, rope_interleaved, max_period:
            as :class:`~mlx_speech.layers.attention.MultiHeadAttention`.
        ffn_dim: hidden width of the feed-forward block.
        norm: ``"layer"`` or ``"rms"``; ``norm_eps`` its epsilon.
        ffn_type: ``"mlp"`` (linear1/linear2) or ``"gated"`` (gate_proj/up_proj/down_proj).
        activation: ``"gelu"``, ``"gelu_tanh"``, ``"silu"``, ``"relu"``, ``"elu"``.
        attn_bias, ffn_bias: biases on the attention / feed-forward projections.
        layer_scale: initial LayerScale value; None disables it.
        dropout: dropout on each residual branch (training only).
    """

    def __init__(self, *, dim: int, num_heads: int, ffn_dim: int,
                 num_kv_heads: int | None = None, causal: bool = True,
                 context: int | None = None, rope: bool = True, rope_interleaved: bool = True,
                 max_period: float = 10000.0, norm: str = "layer", norm_eps: float = 1e-5,
                 ffn_type: str = "mlp", activation: str = "gelu", attn_bias: bool = False,
                 ffn_bias: bool = False, layer_scale: float | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(ffn_dim, int) or isinstance(ffn_dim, bool) or ffn_dim <= 0:
            raise ValueError(f"transformer: ffn_dim must be a positive int, got {ffn_dim!r}")
        if ffn_type not in FFN_TYPES:
            raise ValueError(f"transformer: ffn_type must be one of {FFN_TYPES}, got {ffn_type!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"transformer: dropout must be in [0, 1), got {dropout!r}")
        self.dim = dim
        self.ffn_type = ffn_type
        self.activation = activation
        self._act = get_activation(activation)
        self.norm1 = make_norm(norm, dim=dim, eps=norm_eps)
        self.self_attn = MultiHeadAttention(
            dim=dim, num_heads=num_heads, num_kv_heads=num_kv_heads, bias=attn_bias, rope=rope,
            rope_interleaved=rope_interleaved, max_period=max_period, causal=causal,
            context=context)
        self.norm2 = make_norm(norm, dim=dim, eps=norm_eps)
        if ffn_type == "mlp":
            self.linear1 = Linear(dim, ffn_dim, bias=ffn_bias)
            self.linear2 = Linear(ffn_dim, dim, bias=ffn_bias)
        else:
            self.gate_proj = Linear(dim, ffn_dim, bias=ffn_bias)
            self.up_proj = Linear(dim, ffn_dim, bias=ffn_bias)
            self.down_proj = Linear(ffn_dim, dim, bias=ffn_bias)
        if layer_scale is not None:
            self.layer_scale_1 = LayerScale(dim=dim, init=layer_scale)
            self.layer_scale_2 = LayerScale(dim=dim, init=layer_scale)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def make_cache(self) -> KVCache:
        return self.self_attn.make_cache()

    def ffn(self, x: mx.array) -> mx.array:
        """The feed-forward block alone (no norm, no residual), ``(..., D) -> (..., D)``."""
        if self.ffn_type == "mlp":
            return self.linear2(self._act(self.linear1(x)))
        return self.down_proj(self._act(self.gate_proj(x)) * self.up_proj(x))

    def _branch(self, h: mx.array, scale_name: str) -> mx.array:
        if scale_name in self:
            h = self[scale_name](h)
        return h if self.dropout is None else self.dropout(h)

    def __call__(self, x: mx.array, cache: KVCache | None = None,
                 mask: mx.array | None = None) -> mx.array:
        """``x``: ``(B, T, D)``; ``cache`` / ``mask`` as ``MultiHeadAttention``."""
        x = x + self._branch(self.self_attn(self.norm1(x), cache=cache, mask=mask),
                             "layer_scale_1")
        return x + self._branch(self.ffn(self.norm2(x)), "layer_scale_2")


class Transformer(nn.Module):
    """A stack of :class:`TransformerLayer` (``layers.N``) with an optional final ``norm``.

    Arguments are those of :class:`TransformerLayer` plus ``num_layers`` and ``final_norm``.
    ``__call__(x)`` is the full pass; ``step(x_chunk, cache)`` continues a stream whose cache
    came from :meth:`make_cache`. For a causal model, feeding a sequence chunk by chunk through
    ``step`` gives the full pass's output (also with a sliding ``context``).
    """

    def __init__(self, *, num_layers: int, dim: int, num_heads: int, ffn_dim: int,
                 num_kv_heads: int | None = None, causal: bool = True,
                 context: int | None = None, rope: bool = True, rope_interleaved: bool = True,
                 max_period: float = 10000.0, norm: str = "layer", norm_eps: float = 1e-5,
                 ffn_type: str = "mlp", activation: str = "gelu", attn_bias: bool = False,
                 ffn_bias: bool = False, layer_scale: float | None = None,
                 final_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers <= 0:
            raise ValueError(f"transformer: num_layers must be a positive int, got {num_layers!r}")
        self.dim = dim
        self.causal = causal
        self.layers = [
            TransformerLayer(
                dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, num_kv_heads=num_kv_heads,
                causal=causal, context=context, rope=rope, rope_interleaved=rope_interleaved,
                max_period=max_period, norm=norm, norm_eps=norm_eps, ffn_type=ffn_type,
                activation=activation, attn_bias=attn_bias, ffn_bias=ffn_bias,
                layer_scale=layer_scale, dropout=dropout)
            for _ in range(num_layers)
        ]
        if final_norm:
            self.norm = make_norm(norm, dim=dim, eps=norm_eps)
        self._ring_fn = None  # compiled ring step, made on first use

    def make_cache(self) -> list[KVCache]:
        """One fresh :class:`KVCache` per layer."""
        return [layer.make_cache() for layer in self.layers]

    def make_ring_cache(self) -> RingKVCache:
        """A :class:`RingKVCache` for :meth:`step`'s compiled path (causal stacks with a
        sliding ``context`` only)."""
        att = self.layers[0].self_attn
        if not self.causal or att.context is None:
            raise ValueError("transformer: a ring cache needs a causal stack with a context")
        return RingKVCache(context=att.context, num_layers=len(self.layers))

    def __call__(self, x: mx.array, cache: list[KVCache] | None = None,
                 mask: mx.array | None = None) -> mx.array:
        """``x``: ``(B, T, D)`` -> ``(B, T, D)``. ``cache``: from :meth:`make_cache` to continue
        a stream; ``mask``: ``(B, S)`` bool key padding mask (True = real frame)."""
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(
                f"transformer: cache has {len(cache)} entries for {len(self.layers)} layers")
        for i, layer in enumerate(self.layers):
            x = layer(x, cache=None if cache is None else cache[i], mask=mask)
        if "norm" in self:
            x = self.norm(x)
        return x

    def step(self, x: mx.array, cache: list[KVCache] | RingKVCache) -> mx.array:
        """Next chunk ``(B, T, D)`` of a stream (any ``T >= 1``); updates ``cache`` in place.

        With a :class:`RingKVCache` (:meth:`make_ring_cache`) the whole stack runs as one
        ``mx.compile`` d graph that keeps its shapes from chunk to chunk (one trace per chunk
        length): the same outputs as the list cache to float32 rounding (keys are summed in
        slot order), without re-dispatching ~40 small operations per layer on every call.
        """
        if cache is None:
            raise ValueError("transformer.step needs a cache from make_cache()")
        if isinstance(cache, RingKVCache):
            return self._ring_step(x, cache)
        return self(x, cache=cache)

    def _ring_step(self, x: mx.array, cache: RingKVCache) -> mx.array:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"transformer expects (B, T, {self.dim}) input, got shape {x.shape}")
        att = self.layers[0].self_attn
        B, T, _ = x.shape
        cache.prepare(B, att.num_kv_heads, att.head_dim, T, x.dtype)
        if self._ring_fn is None:
            # the module's arrays are inputs of the compiled graph, so new weights are used
            self._ring_fn = mx.compile(self._ring_graph, inputs=self.state)
        y, cache.keys, cache.values = self._ring_fn(
            x, mx.array(cache.offset, dtype=mx.int32), cache.keys, cache.values)
        cache.offset += T
        return y

    def _ring_graph(self, x: mx.array, pos: mx.array, keys: list[mx.array],
                    values: list[mx.array]) -> tuple[mx.array, list[mx.array], list[mx.array]]:
        """One chunk through the stack (its own forward) against per-layer ring views."""
        views = ring_views(keys, values, pos, x.shape[1], self.layers[0].self_attn.context)
        y = self(x, cache=views)
        return y, [v.keys for v in views], [v.values for v in views]


DecoderCache = tuple[KVCache, CrossKVCache]


class CrossTransformerLayer(TransformerLayer):
    """A :class:`TransformerLayer` with cross-attention to a memory between its self-attention
    and feed-forward (module docstring), ``(B, T, D) -> (B, T, D)``.

    Arguments are those of :class:`TransformerLayer` plus ``memory_dim`` (the memory's width,
    None: ``dim``) and ``cross_rope`` (RoPE between query steps and memory frames, see
    :class:`~mlx_speech.layers.attention.CrossAttention`).
    """

    def __init__(self, *, dim: int, num_heads: int, ffn_dim: int,
                 num_kv_heads: int | None = None, memory_dim: int | None = None,
                 cross_rope: bool = False, causal: bool = True, context: int | None = None,
                 rope: bool = True, rope_interleaved: bool = True, max_period: float = 10000.0,
                 norm: str = "layer", norm_eps: float = 1e-5, ffn_type: str = "mlp",
                 activation: str = "gelu", attn_bias: bool = False, ffn_bias: bool = False,
                 layer_scale: float | None = None, dropout: float = 0.0) -> None:
        super().__init__(dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, num_kv_heads=num_kv_heads,
                         causal=causal, context=context, rope=rope,
                         rope_interleaved=rope_interleaved, max_period=max_period, norm=norm,
                         norm_eps=norm_eps, ffn_type=ffn_type, activation=activation,
                         attn_bias=attn_bias, ffn_bias=ffn_bias, layer_scale=layer_scale,
                         dropout=dropout)
        self.norm_cross = make_norm(norm, dim=dim, eps=norm_eps)
        self.cross_attn = CrossAttention(
            dim=dim, num_heads=num_heads, memory_dim=memory_dim, num_kv_heads=num_kv_heads,
            bias=attn_bias, rope=cross_rope, rope_interleaved=rope_interleaved,
            max_period=max_period)
        if layer_scale is not None:
            self.layer_scale_cross = LayerScale(dim=dim, init=layer_scale)

    def make_cache(self) -> DecoderCache:
        return self.self_attn.make_cache(), self.cross_attn.make_cache()

    def __call__(self, x: mx.array, memory: mx.array | None = None,
                 cache: DecoderCache | None = None, mask: mx.array | None = None,
                 memory_mask: mx.array | None = None) -> mx.array:
        """``x``: ``(B, T, D)``; ``memory``: ``(B, S, D_mem)`` (None once the cache's cross
        half is filled); ``cache``: from :meth:`make_cache`; ``mask``: the self-attention's key
        padding mask; ``memory_mask``: ``(B, S)`` bool, True = real memory frame."""
        self_cache, cross_cache = (None, None) if cache is None else cache
        offset = 0 if self_cache is None else self_cache.offset
        x = x + self._branch(self.self_attn(self.norm1(x), cache=self_cache, mask=mask),
                             "layer_scale_1")
        x = x + self._branch(self.cross_attn(self.norm_cross(x), memory, cache=cross_cache,
                                             mask=memory_mask, offset=offset),
                             "layer_scale_cross")
        return x + self._branch(self.ffn(self.norm2(x)), "layer_scale_2")


class TransformerDecoder(nn.Module):
    """A stack of :class:`CrossTransformerLayer` (``layers.N``) with an optional final ``norm``.

    Arguments are those of :class:`CrossTransformerLayer` plus ``num_layers`` and
    ``final_norm``. ``__call__(x, memory)`` is the full (teacher-forced) pass; ``step(x, cache,
    memory)`` continues it: feeding a sequence position by position through ``step`` with one
    cache from :meth:`make_cache` gives the full pass's output (``causal=True``).
    """

    def __init__(self, *, num_layers: int, dim: int, num_heads: int, ffn_dim: int,
                 num_kv_heads: int | None = None, memory_dim: int | None = None,
                 cross_rope: bool = False, causal: bool = True, context: int | None = None,
                 rope: bool = True, rope_interleaved: bool = True, max_period: float = 10000.0,
                 norm: str = "layer", norm_eps: float = 1e-5, ffn_type: str = "mlp",
                 activation: str = "gelu", attn_bias: bool = False, ffn_bias: bool = False,
                 layer_scale: float | None = None, final_norm: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers <= 0:
            raise ValueError(f"transformer: num_layers must be a positive int, got {num_layers!r}")
        self.dim = dim
        self.causal = causal
        self.layers = [
            CrossTransformerLayer(
                dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, num_kv_heads=num_kv_heads,
                memory_dim=memory_dim, cross_rope=cross_rope, causal=causal, context=context,
                rope=rope, rope_interleaved=rope_interleaved, max_period=max_period, norm=norm,
                norm_eps=norm_eps, ffn_type=ffn_type, activation=activation,
                attn_bias=attn_bias, ffn_bias=ffn_bias, layer_scale=layer_scale, dropout=dropout)
            for _ in range(num_layers)
        ]
        if final_norm:
            self.norm = make_norm(norm, dim=dim, eps=norm_eps)

    def make_cache(self) -> list[DecoderCache]:
        """One ``(KVCache, CrossKVCache)`` pair per layer."""
        return [layer.make_cache() for layer in self.layers]

    def __call__(self, x: mx.array, memory: mx.array | None = None,
                 cache: list[DecoderCache] | None = None, mask: mx.array | None = None,
                 memory_mask: mx.array | None = None) -> mx.array:
        """``x``: ``(B, T, D)`` -> ``(B, T, D)``; ``memory``: ``(B, S, D_mem)``; ``cache``: from
        :meth:`make_cache` to continue a stream; ``mask`` / ``memory_mask``: ``(B, .)`` bool
        key padding masks of the self- and cross-attention (True = real frame)."""
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(
                f"transformer: cache has {len(cache)} entries for {len(self.layers)} layers")
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, cache=None if cache is None else cache[i], mask=mask,
                      memory_mask=memory_mask)
        if "norm" in self:
            x = self.norm(x)
        return x

    def step(self, x: mx.array, cache: list[DecoderCache], memory: mx.array | None = None,
             memory_mask: mx.array | None = None) -> mx.array:
        """Next chunk ``(B, T, D)`` (any ``T >= 1``); updates ``cache`` in place. ``memory`` is
        needed on the first call only (its keys and values stay in the cache)."""
        if cache is None:
            raise ValueError("TransformerDecoder.step needs a cache from make_cache()")
        return self(x, memory, cache=cache, memory_mask=memory_mask)
