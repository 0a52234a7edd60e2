"""DAC's Snake CNN encoder and decoder (MLX), batch and causal streaming.

Module tree = Descript's (``dac/model/dac.py``), so official weights map by renaming weight-norm
parameters and flattening Snake's alpha only (``keys.py``)::

    encoder.block.0                   conv k7, 1 -> encoder_dim
    encoder.block.{1..n}.block.{0,1,2}  residual units (dilations 1, 3, 9)
    encoder.block.{1..n}.block.3      Snake
    encoder.block.{1..n}.block.4      strided conv k=2S, width doubles
    encoder.block.{n+1}               Snake
    encoder.block.{n+2}               conv k3 -> latent_dim
    decoder.model.0                   conv k7, latent_dim -> decoder_dim
    decoder.model.{1..n}.block.0      Snake
    decoder.model.{1..n}.block.1      transposed conv k=2S, width halves
    decoder.model.{1..n}.block.{2,3,4}  residual units
    decoder.model.{n+1}               Snake
    decoder.model.{n+2}               conv k7 -> 1, then tanh
    residual unit .block.{0..3}       Snake, conv k7 dilated, Snake, conv k1

Tensors are channels-last ``(B, T, C)``. ``causal=False`` is Descript's padding exactly
(symmetric "same"; strided convs pad ``ceil(S/2)``; transposed convs trim ``ceil(S/2)`` each side
with no output padding), so an odd stride returns ``S * T - 1`` samples, as Descript's 16 / 24 kHz
decoders do (``F * hop - 8``; descript-audio-codec #37); :class:`Decoder` appends those few
samples as zeros so every decode is ``F * hop`` long and its first ``F * hop - 8`` samples are
Descript's. ``causal=True`` pads every conv on the left (every layer scales ``T`` by exactly
``S``); ``step`` then feeds a stream through every layer's own ``step``.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import Snake
from mlx_speech.layers.conv import Conv1d, ConvTranspose1d


def _conv(cin: int, cout: int, k: int, *, causal: bool, wn: bool, stride: int = 1,
          dilation: int = 1) -> Conv1d:
    if causal:
        padding: str | int = "causal"
    elif stride == 1:
        padding = "same"
    else:
        padding = -(-stride // 2)
    return Conv1d(in_channels=cin, out_channels=cout, kernel_size=k, stride=stride,
                  dilation=dilation, padding=padding, weight_norm=wn)


def _run(layers: list, x: mx.array, streaming: bool) -> mx.array:
    for layer in layers:
        if streaming and hasattr(layer, "step"):
            x = layer.step(x)
            if x.shape[1] == 0:
                return x
        else:
            x = layer(x)
    return x


class ResidualUnit(nn.Module):
    """``x + conv1x1(snake(conv_k_dil(snake(x))))``."""

    def __init__(self, dim: int, dilation: int, *, kernel: int, causal: bool, wn: bool) -> None:
        super().__init__()
        self.block = [Snake(channels=dim),
                      _conv(dim, dim, kernel, dilation=dilation, causal=causal, wn=wn),
                      Snake(channels=dim), _conv(dim, dim, 1, causal=causal, wn=wn)]

    def __call__(self, x: mx.array) -> mx.array:
        return x + _run(self.block, x, False)

    def step(self, x: mx.array) -> mx.array:
        # causal, stride 1: every conv step returns as many frames as it is given
        return x + _run(self.block, x, True)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int, *, dilations: list[int], kernel: int,
                 causal: bool, wn: bool) -> None:
        super().__init__()
        half = dim // 2
        self.block = [ResidualUnit(half, d, kernel=kernel, causal=causal, wn=wn) for d in dilations]
        self.block += [Snake(channels=half),
                       _conv(half, dim, 2 * stride, stride=stride, causal=causal, wn=wn)]

    def __call__(self, x: mx.array) -> mx.array:
        return _run(self.block, x, False)

    def step(self, x: mx.array) -> mx.array:
        return _run(self.block, x, True)


class Encoder(nn.Module):
    """``(B, T, 1)`` -> ``(B, T / hop, latent_dim)``."""

    def __init__(self, *, encoder_dim: int, rates: list[int], latent_dim: int,
                 dilations: list[int], kernel: int, causal: bool, wn: bool) -> None:
        super().__init__()
        d = encoder_dim
        self.block = [_conv(1, d, 7, causal=causal, wn=wn)]
        for s in rates:
            d *= 2
            self.block.append(EncoderBlock(d, s, dilations=dilations, kernel=kernel,
                                           causal=causal, wn=wn))
        self.block += [Snake(channels=d), _conv(d, latent_dim, 3, causal=causal, wn=wn)]

    def __call__(self, x: mx.array) -> mx.array:
        return _run(self.block, x, False)

    def step(self, x: mx.array) -> mx.array:
        return _run(self.block, x, True)


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, *, dilations: list[int], kernel: int,
                 causal: bool, wn: bool) -> None:
        super().__init__()
        if causal:
            up = ConvTranspose1d(in_channels=cin, out_channels=cout, kernel_size=2 * stride,
                                 stride=stride, padding="causal", weight_norm=wn)
        else:
            up = ConvTranspose1d(in_channels=cin, out_channels=cout, kernel_size=2 * stride,
                                 stride=stride, padding=-(-stride // 2), weight_norm=wn)
        self.block = [Snake(channels=cin), up]
        self.block += [ResidualUnit(cout, d, kernel=kernel, causal=causal, wn=wn) for d in dilations]

    def __call__(self, x: mx.array) -> mx.array:
        return _run(self.block, x, False)

    def step(self, x: mx.array) -> mx.array:
        return _run(self.block, x, True)


class Decoder(nn.Module):
    """``(B, F, latent_dim)`` -> ``(B, F * hop, 1)`` in [-1, 1] (non-causal odd strides: the
    missing last samples are zeros, see the module docstring)."""

    def __init__(self, *, latent_dim: int, decoder_dim: int, rates: list[int],
                 dilations: list[int], kernel: int, causal: bool, wn: bool) -> None:
        super().__init__()
        self.model = [_conv(latent_dim, decoder_dim, 7, causal=causal, wn=wn)]
        d = decoder_dim
        for s in rates:
            self.model.append(DecoderBlock(d, d // 2, s, dilations=dilations, kernel=kernel,
                                           causal=causal, wn=wn))
            d //= 2
        self.model += [Snake(channels=d), _conv(d, 1, 7, causal=causal, wn=wn), nn.Tanh()]
        self.hop = math.prod(rates)

    def __call__(self, x: mx.array) -> mx.array:
        y = _run(self.model, x, False)
        short = x.shape[1] * self.hop - y.shape[1]
        return mx.pad(y, [(0, 0), (0, short), (0, 0)]) if short else y

    def step(self, x: mx.array) -> mx.array:
        return _run(self.model, x, True)
