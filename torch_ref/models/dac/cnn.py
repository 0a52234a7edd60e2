"""DAC's Snake CNN encoder and decoder (torch mirror of ``mlx_speech/models/dac/cnn.py``:
same module tree, paddings and streaming; see there for the layout).

Tensors are channels-first ``(B, C, T)``. Never imports mlx.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from torch_ref.layers.activations import Snake
from torch_ref.layers.conv import Conv1d, ConvTranspose1d


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


def _run(layers: nn.ModuleList, x: torch.Tensor, streaming: bool) -> torch.Tensor:
    for layer in layers:
        if streaming and hasattr(layer, "step"):
            x = layer.step(x)
            if x.shape[-1] == 0:
                return x
        else:
            x = layer(x)
    return x


class ResidualUnit(nn.Module):
    """``x + conv1x1(snake(conv_k_dil(snake(x))))``."""

    def __init__(self, dim: int, dilation: int, *, kernel: int, causal: bool, wn: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList([
            Snake(channels=dim), _conv(dim, dim, kernel, dilation=dilation, causal=causal, wn=wn),
            Snake(channels=dim), _conv(dim, dim, 1, causal=causal, wn=wn)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _run(self.block, x, False)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        # causal, stride 1: every conv step returns as many frames as it is given
        return x + _run(self.block, x, True)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int, *, dilations: list[int], kernel: int,
                 causal: bool, wn: bool) -> None:
        super().__init__()
        half = dim // 2
        self.block = nn.ModuleList(
            [ResidualUnit(half, d, kernel=kernel, causal=causal, wn=wn) for d in dilations]
            + [Snake(channels=half),
               _conv(half, dim, 2 * stride, stride=stride, causal=causal, wn=wn)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.block, x, False)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.block, x, True)


class Encoder(nn.Module):
    """``(B, 1, T)`` -> ``(B, latent_dim, T / hop)``."""

    def __init__(self, *, encoder_dim: int, rates: list[int], latent_dim: int,
                 dilations: list[int], kernel: int, causal: bool, wn: bool) -> None:
        super().__init__()
        d = encoder_dim
        self.block = nn.ModuleList([_conv(1, d, 7, causal=causal, wn=wn)])
        for s in rates:
            d *= 2
            self.block.append(EncoderBlock(d, s, dilations=dilations, kernel=kernel,
                                           causal=causal, wn=wn))
        self.block.extend([Snake(channels=d), _conv(d, latent_dim, 3, causal=causal, wn=wn)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.block, x, False)

    def step(self, x: torch.Tensor) -> torch.Tensor:
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
        self.block = nn.ModuleList(
            [Snake(channels=cin), up]
            + [ResidualUnit(cout, d, kernel=kernel, causal=causal, wn=wn) for d in dilations])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.block, x, False)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.block, x, True)


class Decoder(nn.Module):
    """``(B, latent_dim, F)`` -> ``(B, 1, F * hop)`` in [-1, 1] (odd strides: a zero tail)."""

    def __init__(self, *, latent_dim: int, decoder_dim: int, rates: list[int],
                 dilations: list[int], kernel: int, causal: bool, wn: bool) -> None:
        super().__init__()
        self.model = nn.ModuleList([_conv(latent_dim, decoder_dim, 7, causal=causal, wn=wn)])
        d = decoder_dim
        for s in rates:
            self.model.append(DecoderBlock(d, d // 2, s, dilations=dilations, kernel=kernel,
                                           causal=causal, wn=wn))
            d //= 2
        self.model.extend([Snake(channels=d), _conv(d, 1, 7, causal=causal, wn=wn), nn.Tanh()])
        self.hop = math.prod(rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _run(self.model, x, False)
        short = x.shape[-1] * self.hop - y.shape[-1]
        return nn.functional.pad(y, (0, short)) if short else y

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.model, x, True)
