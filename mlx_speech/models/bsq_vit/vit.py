"""BSQ-ViT's transformer stacks over mel-patch tokens (MLX); torch_ref mirrors the names.

Tokens are ``(B, F * bands, D)``, frame-major (token ``f * bands + b`` is band ``b`` of frame
``f``). One :class:`ViTBlock`::

    x = x + drop(layer_scale_1(self_attn(norm1(x))))        # RoPE over the token index
    x = x + drop(layer_scale_conv(conv(x)))                 # conformer conv along time, per band
    x = x + drop(layer_scale_2(linear2(gelu(linear1(norm2(x))))))

``conv`` (a :class:`~mlx_speech.layers.conformer.ConformerConvModule`, with its own input norm)
runs along time for each band on its own: ``(B, F * bands, D) -> (B * bands, F, D)``. With
``causal`` (time-only patches, so one token per frame) attention is causal and the depthwise
convolution left-padded, so frame ``t`` sees frames ``<= t`` only.

:class:`ViT` is the encoder (``patch_embed`` first) or the decoder (``head`` last): a learnt
``band_embed (bands, D)`` added to every token (RoPE alone knows only relative offsets, and a
token must know its frequency band), ``time_embed (max_frames, D)`` too with
``positions="learned"`` (then no RoPE), ``layers.N`` blocks and a final LayerNorm ``norm``.

Activation checkpointing (``spec.checkpoint``, training only): the attention and feed-forward
sub-blocks are recomputed in the backward pass (``mx.checkpoint`` through
``nn.utils.checkpoint``, which passes the block's parameters in so their gradients flow). Not
the convolution module: its BatchNorm replaces the running statistics in its forward, and the
recompute would run that update a second time. Dropout stays outside the recomputed part:
``mx.checkpoint`` calls the Python function again, which would draw a new mask.

In eval mode :class:`ViT` runs as one ``mx.compile`` d graph (its arrays are inputs, so new
weights are used; one trace per input shape, and coding pads every window but a last partial
one to the same length): MLX then fuses the elementwise tails (bias, residual, LayerScale, GLU,
SiLU) instead of dispatching some forty small operations per block one by one. Training mode
runs the plain forward (BatchNorm updates and dropout are side effects; the trainer compiles
its whole step anyway).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import get_activation
from mlx_speech.layers.attention import MultiHeadAttention
from mlx_speech.layers.conformer import ConformerConvModule
from mlx_speech.layers.linear import Linear
from mlx_speech.layers.norms import LayerNorm, LayerScale
from mlx_speech.models.bsq_vit.spec import BSQViTSpec

EMBED_STD = 0.02  # ViT's initial scale of learnt position embeddings


def bands_to_batch(x: mx.array, bands: int) -> mx.array:
    """``(B, F * bands, D) -> (B * bands, F, D)``: one time sequence per band."""
    b, n, d = x.shape
    return x.reshape(b, n // bands, bands, d).transpose(0, 2, 1, 3).reshape(b * bands, -1, d)


def batch_to_bands(x: mx.array, bands: int) -> mx.array:
    """Inverse of :func:`bands_to_batch`."""
    bb, f, d = x.shape
    return x.reshape(bb // bands, bands, f, d).transpose(0, 2, 1, 3).reshape(bb // bands, -1, d)


class ViTBlock(nn.Module):
    """One pre-norm block (see the module docstring), ``(B, F * bands, D)`` in and out."""

    def __init__(self, spec: BSQViTSpec) -> None:
        super().__init__()
        d = spec.dim
        self.bands = spec.bands
        self.use_checkpoint = spec.checkpoint
        self._act = get_activation("gelu")
        self.norm1 = LayerNorm(dim=d)
        self.self_attn = MultiHeadAttention(dim=d, num_heads=spec.num_heads, bias=True,
                                            rope=spec.positions == "rope", causal=spec.causal)
        if spec.conformer_conv:
            self.conv = ConformerConvModule(dim=d, kernel_size=spec.conv_kernel,
                                            causal=spec.causal, norm=spec.conv_norm)
        self.norm2 = LayerNorm(dim=d)
        self.linear1 = Linear(d, spec.hidden_dim)
        self.linear2 = Linear(spec.hidden_dim, d)
        if spec.layer_scale is not None:
            for name in ("1", "conv", "2"):
                setattr(self, f"layer_scale_{name}", LayerScale(dim=d, init=spec.layer_scale))
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else None

    def _scaled(self, h: mx.array, name: str) -> mx.array:
        key = f"layer_scale_{name}"
        return self[key](h) if key in self else h

    def _attention(self, x: mx.array) -> mx.array:
        return self._scaled(self.self_attn(self.norm1(x)), "1")

    def _feed_forward(self, x: mx.array) -> mx.array:
        return self._scaled(self.linear2(self._act(self.linear1(self.norm2(x)))), "2")

    def _drop(self, h: mx.array) -> mx.array:
        return h if self.dropout is None else self.dropout(h)

    def __call__(self, x: mx.array) -> mx.array:
        attention, feed_forward = self._attention, self._feed_forward
        if self.use_checkpoint and self.training:
            attention = nn.utils.checkpoint(self, attention)
            feed_forward = nn.utils.checkpoint(self, feed_forward)
        x = x + self._drop(attention(x))
        if "conv" in self:
            h = batch_to_bands(self.conv(bands_to_batch(x, self.bands)), self.bands)
            x = x + self._drop(self._scaled(h, "conv"))
        return x + self._drop(feed_forward(x))


class ViT(nn.Module):
    """The encoder (``patches_in``: ``patch_embed`` patch_dim -> dim) or the decoder
    (``patches_out``: ``head`` dim -> patch_dim) stack; see the module docstring."""

    def __init__(self, spec: BSQViTSpec, num_layers: int, *, patches_in: bool = False,
                 patches_out: bool = False) -> None:
        super().__init__()
        d = spec.dim
        self.bands = spec.bands
        self.max_frames = spec.max_frames
        if patches_in:
            self.patch_embed = Linear(spec.patch_dim, d)
        self.band_embed = EMBED_STD * mx.random.normal((spec.bands, d))
        if spec.positions == "learned":
            self.time_embed = EMBED_STD * mx.random.normal((spec.max_frames, d))
        self.layers = [ViTBlock(spec) for _ in range(num_layers)]
        self.norm = LayerNorm(dim=d)
        if patches_out:
            self.head = Linear(d, spec.patch_dim)
        self._compiled = None  # the eval-mode graph (module docstring)

    def __call__(self, x: mx.array) -> mx.array:
        """``x (B, F * bands, patch_dim or dim)`` -> ``(B, F * bands, dim or patch_dim)``."""
        if self.training:
            return self._forward(x)
        if self._compiled is None:
            self._compiled = mx.compile(self._forward, inputs=self.state)
        return self._compiled(x)

    def _forward(self, x: mx.array) -> mx.array:
        if "patch_embed" in self:
            x = self.patch_embed(x)
        frames = x.shape[1] // self.bands
        pos = mx.tile(self.band_embed, (frames, 1))
        if "time_embed" in self:
            if frames > self.max_frames:
                raise ValueError(f"BSQ-ViT: learned positions cover {self.max_frames} frames, "
                                 f"got {frames}")
            pos = pos + mx.repeat(self.time_embed[:frames], self.bands, axis=0)
        x = x + pos.astype(x.dtype)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return self.head(x) if "head" in self else x
