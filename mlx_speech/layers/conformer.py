"""Conformer block and stack (Gulati et al. 2020), with a causal streaming option (MLX).

Tensors are ``(B, T, D)``. One block (macaron: two half-step feed-forwards around attention and
convolution)::

    x = x + 0.5 * layer_scale_ffn1(ffn1(x))              # ffn1: norm -> linear1 -> SiLU -> linear2
    x = x + layer_scale_attn(self_attn(norm_attn(x)))    # MHSA with RoPE
    x = x + layer_scale_conv(conv(x))                    # convolution module, below
    x = x + 0.5 * layer_scale_ffn2(ffn2(x))
    x = norm_out(x)

Convolution module: ``norm_in -> pointwise_in (D -> 2D) -> GLU -> depthwise (kernel 31,
groups=D) -> norm -> SiLU -> pointwise_out (D -> D)``; the pointwise layers are kernel-1
``Conv1d`` (the layout of ESPnet / torchaudio checkpoints).

``norm`` is a LayerNorm over channels by default rather than the paper's BatchNorm: BatchNorm
normalises with batch statistics in training and running averages at inference, so outputs
depend on batch composition and padding and differ between the two modes; its running
statistics are state kept beside the weights; and a chunk of a stream has no meaningful batch
statistics. LayerNorm over the channels of each frame is per-frame, so the causal block streams
exactly and padded frames cannot leak into real ones. ``norm="batch"``
(:class:`~mlx_speech.layers.norms.BatchNorm`) is there for models that ask for the paper's
choice and code fixed windows without padding (BSQ-ViT): at inference it is a per-channel
affine map, so it streams too; in training, padded frames would enter its statistics.

Streaming (``causal=True``): attention is causal (optionally with a sliding ``context``) and the
depthwise convolution is left-padded (``padding="causal"``). ``step(x_chunk, cache)`` continues
a stream: the KV caches come from ``make_cache()`` (which also resets the depthwise layers'
internal streaming buffers, see ``reset_state``). Chunked ``step`` equals the full causal pass.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import get_activation, sigmoid, silu
from mlx_speech.layers.attention import MultiHeadAttention
from mlx_speech.layers.conv import Conv1d
from mlx_speech.layers.kv_cache import KVCache
from mlx_speech.layers.norms import BatchNorm, LayerNorm, LayerScale
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

    def __call__(self, x: mx.array) -> mx.array:
        h = self._act(self.linear1(self.norm(x)))
        if self.dropout is not None:
            h = self.dropout(h)
        return self.linear2(h)


class ConformerConvModule(Streaming, nn.Module):
    """The Conformer convolution module, ``(B, T, D) -> (B, T, D)`` (no residual).

    ``causal=True`` pads the depthwise convolution on the left only (``kernel_size - 1``
    frames), so frame ``t`` depends on frames ``<= t`` and :meth:`step` can stream it.
    ``norm``: ``"layer"`` (default; every existing model and checkpoint) or ``"batch"`` (the
    paper's BatchNorm with running statistics as buffers; see the module docstring).
    """

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

    def _pre(self, x: mx.array) -> mx.array:
        a, b = mx.split(self.pointwise_in(self.norm_in(x)), 2, axis=-1)
        return a * sigmoid(b)  # GLU over channels

    def _post(self, h: mx.array) -> mx.array:
        return self.pointwise_out(silu(self.norm(h)))

    def __call__(self, x: mx.array, mask: mx.array | None = None) -> mx.array:
        """``x``: ``(B, T, D)``; ``mask``: ``(B, T)`` bool, True = real frame (padded frames are
        zeroed before the depthwise convolution so they do not reach real ones)."""
        h = self._pre(x)
        if mask is not None:
            h = h * mask[..., None].astype(h.dtype)
        return self._post(self.depthwise(h))

    def step(self, x: mx.array) -> mx.array:
        """Next chunk ``(B, T, D)`` of a stream (``causal=True`` only); returns ``(B, T, D)``."""
        if not self.causal:
            raise ValueError("conformer: streaming step() needs causal=True")
        return self._post(self.depthwise.step(self._pre(x)))


class ConformerBlock(Streaming, nn.Module):
    """One Conformer block, ``(B, T, D) -> (B, T, D)``; see the module docstring.

    Args:
        dim, num_heads, num_kv_heads, rope, rope_interleaved, max_period, context: attention,
            as :class:`~mlx_speech.layers.attention.MultiHeadAttention`.
        ffn_dim: hidden width of each feed-forward half-step.
        kernel_size: depthwise convolution kernel (31 in the paper).
        causal: causal attention + left-padded depthwise conv (streamable).
        activation: feed-forward activation (``"silu"``, the paper's swish).
        bias: biases on every projection and convolution.
        norm_eps: epsilon of every LayerNorm.
        layer_scale: initial LayerScale of the four residual branches; None disables it.
        dropout: dropout on each residual branch (training only).
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
        if layer_scale is not None:
            for name in ("ffn1", "attn", "conv", "ffn2"):
                setattr(self, f"layer_scale_{name}", LayerScale(dim=dim, init=layer_scale))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def _branch(self, h: mx.array, name: str) -> mx.array:
        key = f"layer_scale_{name}"
        if key in self:
            h = self[key](h)
        return h if self.dropout is None else self.dropout(h)

    def make_cache(self) -> KVCache:
        """A KV cache for :meth:`step`; also resets the convolution's streaming buffer."""
        self.reset_state()
        return self.self_attn.make_cache()

    def _forward(self, x: mx.array, cache: KVCache | None, mask: mx.array | None) -> mx.array:
        x = x + 0.5 * self._branch(self.ffn1(x), "ffn1")
        x = x + self._branch(self.self_attn(self.norm_attn(x), cache=cache, mask=mask), "attn")
        conv = self.conv(x, mask=mask) if cache is None else self.conv.step(x)
        x = x + self._branch(conv, "conv")
        x = x + 0.5 * self._branch(self.ffn2(x), "ffn2")
        return self.norm_out(x)

    def __call__(self, x: mx.array, mask: mx.array | None = None) -> mx.array:
        """Full pass. ``x``: ``(B, T, D)``; ``mask``: ``(B, T)`` bool, True = real frame."""
        return self._forward(x, None, mask)

    def step(self, x: mx.array, cache: KVCache) -> mx.array:
        """Next chunk ``(B, T, D)`` of a stream (``causal=True``); updates ``cache`` and the
        convolution buffer."""
        if not self.causal:
            raise ValueError("conformer: streaming step() needs causal=True")
        if cache is None:
            raise ValueError("conformer: step() needs a cache from make_cache()")
        return self._forward(x, cache, None)


class Conformer(Streaming, nn.Module):
    """A stack of :class:`ConformerBlock` (``layers.N``), ``(B, T, D) -> (B, T, D)``.

    Arguments are those of :class:`ConformerBlock` plus ``num_layers``.
    """

    def __init__(self, *, num_layers: int, dim: int, num_heads: int, ffn_dim: int,
                 kernel_size: int = 31, num_kv_heads: int | None = None, causal: bool = False,
                 context: int | None = None, rope: bool = True, rope_interleaved: bool = True,
                 max_period: float = 10000.0, activation: str = "silu", bias: bool = True,
                 norm_eps: float = 1e-5, layer_scale: float | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        _check_positive("num_layers", num_layers)
        self.causal = causal
        self.layers = [
            ConformerBlock(dim=dim, num_heads=num_heads, ffn_dim=ffn_dim,
                           kernel_size=kernel_size, num_kv_heads=num_kv_heads, causal=causal,
                           context=context, rope=rope, rope_interleaved=rope_interleaved,
                           max_period=max_period, activation=activation, bias=bias,
                           norm_eps=norm_eps, layer_scale=layer_scale, dropout=dropout)
            for _ in range(num_layers)
        ]

    def make_cache(self) -> list[KVCache]:
        """One KV cache per block; also resets every convolution's streaming buffer."""
        return [layer.make_cache() for layer in self.layers]

    def __call__(self, x: mx.array, mask: mx.array | None = None) -> mx.array:
        """Full pass. ``x``: ``(B, T, D)``; ``mask``: ``(B, T)`` bool (True = real frame)."""
        for layer in self.layers:
            x = layer(x, mask=mask)
        return x

    def step(self, x: mx.array, cache: list[KVCache]) -> mx.array:
        """Next chunk ``(B, T, D)`` of a stream (``causal=True``); chunked output equals the
        full pass."""
        if cache is None or len(cache) != len(self.layers):
            raise ValueError(
                f"conformer: step() needs the list from make_cache() ({len(self.layers)} caches)")
        for layer, c in zip(self.layers, cache):
            x = layer.step(x, c)
        return x
