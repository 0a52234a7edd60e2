"""Conformer block and stack, with a causal streaming option (torch mirror).

Mirror of ``mlx_speech/layers/conformer.py`` (see its docstring for the block, the convolution
module and why its norm is a LayerNorm over channels by default, BatchNorm on request).
Tensors are ``(B, T, D)`` at the boundary; the convolution module works in torch's
``(B, C, T)`` inside, transposing once on the way in and around the channel norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torch_ref.layers.activations import get_activation, silu
from torch_ref.layers.attention import MultiHeadAttention
from torch_ref.layers.conv import Conv1d
from torch_ref.layers.kv_cache import KVCache
from torch_ref.layers.norms import BatchNorm, LayerNorm, LayerScale
from mlx_speech.utils.streaming import Streaming


CONV_NORMS = ("layer", "batch")


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"conformer: {name} must be a positive int, got {value!r}")


class ConformerFeedForward(nn.Module):
    """``linear2(act(linear1(norm(x))))``, ``(B, T, D) -> (B, T, D)`` (no residual)."""

    def __init__(self, *, dim: int, ffn_dim: int, activation: str = "silu", bias: bool = True,
                 norm_eps: float = 1e-5, dropout: float = 0.0) -> None:
        super().__init__()
        _check_positive("ffn_dim", ffn_dim)
        self._act = get_activation(activation)
        self.norm = LayerNorm(dim=dim, eps=norm_eps)
        self.linear1 = nn.Linear(dim, ffn_dim, bias=bias)
        self.linear2 = nn.Linear(ffn_dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._act(self.linear1(self.norm(x)))
        if self.dropout is not None:
            h = self.dropout(h)
        return self.linear2(h)


class ConformerConvModule(Streaming, nn.Module):
    """The Conformer convolution module, ``(B, T, D) -> (B, T, D)`` (no residual);
    ``norm``: ``"layer"`` (default) or ``"batch"``, as the MLX twin."""

    def __init__(self, *, dim: int, kernel_size: int = 31, causal: bool = False,
                 bias: bool = True, norm_eps: float = 1e-5, norm: str = "layer") -> None:
        super().__init__()
        _check_positive("kernel_size", kernel_size)
        if norm not in CONV_NORMS:
            raise ValueError(f"conformer: norm must be one of {CONV_NORMS}, got {norm!r}")
        if not causal and kernel_size % 2 == 0:
            raise ValueError(
                f"conformer: a non-causal depthwise kernel must be odd to keep the length, "
                f"got kernel_size={kernel_size}")
        self.dim = dim
        self.causal = causal
        self.norm_in = LayerNorm(dim=dim, eps=norm_eps)
        self.pointwise_in = Conv1d(in_channels=dim, out_channels=2 * dim, kernel_size=1,
                                   bias=bias, padding="valid")
        self.depthwise = Conv1d(in_channels=dim, out_channels=dim, kernel_size=kernel_size,
                                groups=dim, bias=bias, padding="causal" if causal else "same")
        self.norm = (BatchNorm(dim=dim, eps=norm_eps) if norm == "batch"
                     else LayerNorm(dim=dim, eps=norm_eps))
        self.pointwise_out = Conv1d(in_channels=dim, out_channels=dim, kernel_size=1,
                                    bias=bias, padding="valid")

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, 2D, T) -> GLU over channels -> (B, D, T)
        return F.glu(self.pointwise_in(self.norm_in(x).transpose(1, 2)), dim=1)

    def _post(self, h: torch.Tensor) -> torch.Tensor:
        # (B, D, T) -> channel LayerNorm in (B, T, D) -> (B, T, D)
        h = silu(self.norm(h.transpose(1, 2)))
        return self.pointwise_out(h.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, T, D)``; ``mask``: ``(B, T)`` bool, True = real frame."""
        h = self._pre(x)
        if mask is not None:
            h = h * mask[:, None, :].to(h.dtype)
        return self._post(self.depthwise(h))

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Next chunk ``(B, T, D)`` of a stream (``causal=True`` only); returns ``(B, T, D)``."""
        if not self.causal:
            raise ValueError("conformer: streaming step() needs causal=True")
        return self._post(self.depthwise.step(self._pre(x)))


class ConformerBlock(Streaming, nn.Module):
    """One Conformer block, ``(B, T, D) -> (B, T, D)``.

    Args: as ``mlx_speech.layers.conformer.ConformerBlock``.
    """

    def __init__(self, *, dim: int, num_heads: int, ffn_dim: int, kernel_size: int = 31,
                 num_kv_heads: int | None = None, causal: bool = False,
                 context: int | None = None, rope: bool = True, rope_interleaved: bool = True,
                 max_period: float = 10000.0, activation: str = "silu", bias: bool = True,
                 norm_eps: float = 1e-5, layer_scale: float | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"conformer: dropout must be in [0, 1), got {dropout!r}")
        ff = dict(dim=dim, ffn_dim=ffn_dim, activation=activation, bias=bias, norm_eps=norm_eps,
                  dropout=dropout)
        self.ffn1 = ConformerFeedForward(**ff)
        self.norm_attn = LayerNorm(dim=dim, eps=norm_eps)
        self.self_attn = MultiHeadAttention(
            dim=dim, num_heads=num_heads, num_kv_heads=num_kv_heads, bias=bias, rope=rope,
            rope_interleaved=rope_interleaved, max_period=max_period, causal=causal,
            context=context)
        self.conv = ConformerConvModule(dim=dim, kernel_size=kernel_size, causal=causal,
                                        bias=bias, norm_eps=norm_eps)
        self.ffn2 = ConformerFeedForward(**ff)
        self.norm_out = LayerNorm(dim=dim, eps=norm_eps)
        self.causal = causal
        self.layer_scales = layer_scale is not None
        if layer_scale is not None:
            for name in ("ffn1", "attn", "conv", "ffn2"):
                setattr(self, f"layer_scale_{name}", LayerScale(dim=dim, init=layer_scale))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def _branch(self, h: torch.Tensor, name: str) -> torch.Tensor:
        if self.layer_scales:
            h = getattr(self, f"layer_scale_{name}")(h)
        return h if self.dropout is None else self.dropout(h)

    def make_cache(self) -> KVCache:
        """A KV cache for :meth:`step`; also resets the convolution's streaming buffer."""
        self.reset_state()
        return self.self_attn.make_cache()

    def _forward(self, x: torch.Tensor, cache: KVCache | None,
                 mask: torch.Tensor | None) -> torch.Tensor:
        x = x + 0.5 * self._branch(self.ffn1(x), "ffn1")
        x = x + self._branch(self.self_attn(self.norm_attn(x), cache=cache, mask=mask), "attn")
        conv = self.conv(x, mask=mask) if cache is None else self.conv.step(x)
        x = x + self._branch(conv, "conv")
        x = x + 0.5 * self._branch(self.ffn2(x), "ffn2")
        return self.norm_out(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full pass. ``x``: ``(B, T, D)``; ``mask``: ``(B, T)`` bool, True = real frame."""
        return self._forward(x, None, mask)

    def step(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Next chunk ``(B, T, D)`` of a stream (``causal=True``)."""
        if not self.causal:
            raise ValueError("conformer: streaming step() needs causal=True")
        if cache is None:
            raise ValueError("conformer: step() needs a cache from make_cache()")
        return self._forward(x, cache, None)


class Conformer(Streaming, nn.Module):
    """A stack of :class:`ConformerBlock` (``layers.N``), ``(B, T, D) -> (B, T, D)``."""

    def __init__(self, *, num_layers: int, dim: int, num_heads: int, ffn_dim: int,
                 kernel_size: int = 31, num_kv_heads: int | None = None, causal: bool = False,
                 context: int | None = None, rope: bool = True, rope_interleaved: bool = True,
                 max_period: float = 10000.0, activation: str = "silu", bias: bool = True,
                 norm_eps: float = 1e-5, layer_scale: float | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        _check_positive("num_layers", num_layers)
        self.causal = causal
        self.layers = nn.ModuleList([
            ConformerBlock(dim=dim, num_heads=num_heads, ffn_dim=ffn_dim,
                           kernel_size=kernel_size, num_kv_heads=num_kv_heads, causal=causal,
                           context=context, rope=rope, rope_interleaved=rope_interleaved,
                           max_period=max_period, activation=activation, bias=bias,
                           norm_eps=norm_eps, layer_scale=layer_scale, dropout=dropout)
            for _ in range(num_layers)
        ])

    def make_cache(self) -> list[KVCache]:
        """One KV cache per block; also resets every convolution's streaming buffer."""
        return [layer.make_cache() for layer in self.layers]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full pass. ``x``: ``(B, T, D)``; ``mask``: ``(B, T)`` bool (True = real frame)."""
        for layer in self.layers:
            x = layer(x, mask=mask)
        return x

    def step(self, x: torch.Tensor, cache: list[KVCache]) -> torch.Tensor:
        """Next chunk ``(B, T, D)`` of a stream (``causal=True``)."""
        if cache is None or len(cache) != len(self.layers):
            raise ValueError(
                f"conformer: step() needs the list from make_cache() ({len(self.layers)} caches)")
        for layer, c in zip(self.layers, cache):
            x = layer.step(x, c)
        return x
