"""Pre-norm transformer layer and stack with KV-cache streaming (torch mirror).

Mirror of ``mlx_speech/layers/transformer.py`` (see its docstring for the block, the parameter
names and the Mimi configuration, and the cross-attention decoder). Tensors are ``(B, T, D)``.
"""

from __future__ import annotations

import torch
from torch import nn

from torch_ref.layers.activations import get_activation
from torch_ref.layers.attention import CrossAttention, MultiHeadAttention
from torch_ref.layers.kv_cache import CrossKVCache, KVCache
from torch_ref.layers.norms import LayerScale, make_norm

FFN_TYPES = ("mlp", "gated")


class TransformerLayer(nn.Module):
    """One pre-norm block: self-attention then feed-forward, ``(B, T, D) -> (B, T, D)``.

    Args: as ``mlx_speech.layers.transformer.TransformerLayer``.
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
            self.linear1 = nn.Linear(dim, ffn_dim, bias=ffn_bias)
            self.linear2 = nn.Linear(ffn_dim, dim, bias=ffn_bias)
        else:
            self.gate_proj = nn.Linear(dim, ffn_dim, bias=ffn_bias)
            self.up_proj = nn.Linear(dim, ffn_dim, bias=ffn_bias)
            self.down_proj = nn.Linear(ffn_dim, dim, bias=ffn_bias)
        if layer_scale is not None:
            self.layer_scale_1 = LayerScale(dim=dim, init=layer_scale)
            self.layer_scale_2 = LayerScale(dim=dim, init=layer_scale)
        else:
            self.layer_scale_1 = self.layer_scale_2 = None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def make_cache(self) -> KVCache:
        return self.self_attn.make_cache()

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward block alone (no norm, no residual), ``(..., D) -> (..., D)``."""
        if self.ffn_type == "mlp":
            return self.linear2(self._act(self.linear1(x)))
        return self.down_proj(self._act(self.gate_proj(x)) * self.up_proj(x))

    def _branch(self, h: torch.Tensor, scale: nn.Module | None) -> torch.Tensor:
        if scale is not None:
            h = scale(h)
        return h if self.dropout is None else self.dropout(h)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, T, D)``; ``cache`` / ``mask`` as ``MultiHeadAttention``."""
        x = x + self._branch(self.self_attn(self.norm1(x), cache=cache, mask=mask),
                             self.layer_scale_1)
        return x + self._branch(self.ffn(self.norm2(x)), self.layer_scale_2)


class Transformer(nn.Module):
    """A stack of :class:`TransformerLayer` (``layers.N``) with an optional final ``norm``.

    Args: as ``mlx_speech.layers.transformer.Transformer``.
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
        self.layers = nn.ModuleList([
            TransformerLayer(
                dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, num_kv_heads=num_kv_heads,
                causal=causal, context=context, rope=rope, rope_interleaved=rope_interleaved,
                max_period=max_period, norm=norm, norm_eps=norm_eps, ffn_type=ffn_type,
                activation=activation, attn_bias=attn_bias, ffn_bias=ffn_bias,
                layer_scale=layer_scale, dropout=dropout)
            for _ in range(num_layers)
        ])
        self.norm = make_norm(norm, dim=dim, eps=norm_eps) if final_norm else None

    def make_cache(self) -> list[KVCache]:
        """One fresh :class:`KVCache` per layer."""
        return [layer.make_cache() for layer in self.layers]

    def forward(self, x: torch.Tensor, cache: list[KVCache] | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, T, D)`` -> ``(B, T, D)``; ``cache`` continues a stream; ``mask``:
        ``(B, S)`` bool key padding mask (True = real frame)."""
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(
                f"transformer: cache has {len(cache)} entries for {len(self.layers)} layers")
        for i, layer in enumerate(self.layers):
            x = layer(x, cache=None if cache is None else cache[i], mask=mask)
        if self.norm is not None:
            x = self.norm(x)
        return x

    def step(self, x: torch.Tensor, cache: list[KVCache]) -> torch.Tensor:
        """Next chunk ``(B, T, D)`` of a stream (any ``T >= 1``); updates ``cache`` in place."""
        if cache is None:
            raise ValueError("transformer.step needs a cache from make_cache()")
        return self(x, cache=cache)


DecoderCache = tuple[KVCache, CrossKVCache]


class CrossTransformerLayer(TransformerLayer):
    """A :class:`TransformerLayer` with cross-attention to a memory.

    Args: as ``mlx_speech.layers.transformer.CrossTransformerLayer``.
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
        self.layer_scale_cross = (LayerScale(dim=dim, init=layer_scale)
                                  if layer_scale is not None else None)

    def make_cache(self) -> DecoderCache:
        return self.self_attn.make_cache(), self.cross_attn.make_cache()

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                cache: DecoderCache | None = None, mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """As ``mlx_speech.layers.transformer.CrossTransformerLayer.__call__``."""
        self_cache, cross_cache = (None, None) if cache is None else cache
        offset = 0 if self_cache is None else self_cache.offset
        x = x + self._branch(self.self_attn(self.norm1(x), cache=self_cache, mask=mask),
                             self.layer_scale_1)
        x = x + self._branch(self.cross_attn(self.norm_cross(x), memory, cache=cross_cache,
                                             mask=memory_mask, offset=offset),
                             self.layer_scale_cross)
        return x + self._branch(self.ffn(self.norm2(x)), self.layer_scale_2)


class TransformerDecoder(nn.Module):
    """A stack of :class:`CrossTransformerLayer` (``layers.N``) with an optional final ``norm``.

    Args: as ``mlx_speech.layers.transformer.TransformerDecoder``.
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
        self.layers = nn.ModuleList([
            CrossTransformerLayer(
                dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, num_kv_heads=num_kv_heads,
                memory_dim=memory_dim, cross_rope=cross_rope, causal=causal, context=context,
                rope=rope, rope_interleaved=rope_interleaved, max_period=max_period, norm=norm,
                norm_eps=norm_eps, ffn_type=ffn_type, activation=activation,
                attn_bias=attn_bias, ffn_bias=ffn_bias, layer_scale=layer_scale, dropout=dropout)
            for _ in range(num_layers)
        ])
        self.norm = make_norm(norm, dim=dim, eps=norm_eps) if final_norm else None

    def make_cache(self) -> list[DecoderCache]:
        """One ``(KVCache, CrossKVCache)`` pair per layer."""
        return [layer.make_cache() for layer in self.layers]

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                cache: list[DecoderCache] | None = None, mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """As ``mlx_speech.layers.transformer.TransformerDecoder.__call__``."""
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(
                f"transformer: cache has {len(cache)} entries for {len(self.layers)} layers")
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, cache=None if cache is None else cache[i], mask=mask,
                      memory_mask=memory_mask)
        if self.norm is not None:
            x = self.norm(x)
        return x

    def step(self, x: torch.Tensor, cache: list[DecoderCache], memory: torch.Tensor | None = None,
             memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next chunk ``(B, T, D)``; updates ``cache`` in place."""
        if cache is None:
            raise ValueError("TransformerDecoder.step needs a cache from make_cache()")
        return self(x, memory, cache=cache, memory_mask=memory_mask)
