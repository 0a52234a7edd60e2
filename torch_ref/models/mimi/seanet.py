"""Mimi's SEANet encoder and decoder, the PyTorch mirror of ``mlx_speech/models/mimi/seanet.py``.

Same classes, arguments, child names and streaming ``step`` methods, in torch's ``(B, C, T)``
layout; see the MLX file for the layer naming. Never imports mlx.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torch_ref.layers.conv import Conv1d, ConvTranspose1d


def elu(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x)


class ResidualUnit(nn.Module):
    """``x + conv2(elu(conv1(elu(x))))``; ``(B, dim, T) -> (B, dim, T)``."""

    def __init__(self, *, dim: int, hidden: int, kernel_size: int, dilation: int,
                 pad_mode: str) -> None:
        super().__init__()
        self.conv1 = Conv1d(in_channels=dim, out_channels=hidden, kernel_size=kernel_size,
                            dilation=dilation, padding="causal", pad_mode=pad_mode)
        self.conv2 = Conv1d(in_channels=hidden, out_channels=dim, kernel_size=1,
                            padding="causal", pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(elu(self.conv1(elu(x))))

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2.step(elu(self.conv1.step(elu(x))))


def _residuals(*, dim: int, compress: int, count: int, kernel_size: int, dilation_base: int,
               pad_mode: str) -> nn.ModuleList:
    return nn.ModuleList([
        ResidualUnit(dim=dim, hidden=dim // compress, kernel_size=kernel_size,
                     dilation=dilation_base ** j, pad_mode=pad_mode) for j in range(count)])


class EncoderBlock(nn.Module):
    """Residual units at width ``dim``, then ELU and a stride-``ratio`` conv to ``2 * dim``."""

    def __init__(self, *, dim: int, ratio: int, compress: int, n_residual_layers: int,
                 residual_kernel_size: int, dilation_base: int, pad_mode: str) -> None:
        super().__init__()
        self.residuals = _residuals(dim=dim, compress=compress, count=n_residual_layers,
                                    kernel_size=residual_kernel_size,
                                    dilation_base=dilation_base, pad_mode=pad_mode)
        self.down = Conv1d(in_channels=dim, out_channels=2 * dim, kernel_size=2 * ratio,
                           stride=ratio, padding="causal", pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.residuals:
            x = unit(x)
        return self.down(elu(x))

    def step(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.residuals:
            x = unit.step(x)
        return self.down.step(elu(x))


class DecoderBlock(nn.Module):
    """ELU and a stride-``ratio`` transposed conv to ``dim // 2``, then residual units."""

    def __init__(self, *, dim: int, ratio: int, compress: int, n_residual_layers: int,
                 residual_kernel_size: int, dilation_base: int, pad_mode: str) -> None:
        super().__init__()
        self.up = ConvTranspose1d(in_channels=dim, out_channels=dim // 2, kernel_size=2 * ratio,
                                  stride=ratio, padding="causal")
        self.residuals = _residuals(dim=dim // 2, compress=compress, count=n_residual_layers,
                                    kernel_size=residual_kernel_size,
                                    dilation_base=dilation_base, pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(elu(x))
        for unit in self.residuals:
            x = unit(x)
        return x

    def step(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up.step(elu(x))
        for unit in self.residuals:
            x = unit.step(x)
        return x


class SEANetEncoder(nn.Module):
    """Waveform ``(B, channels, T)`` -> latents ``(B, dimension, T / prod(ratios))``."""

    def __init__(self, *, channels: int, dimension: int, n_filters: int, ratios: list[int],
                 kernel_size: int, last_kernel_size: int, residual_kernel_size: int,
                 n_residual_layers: int, dilation_base: int, compress: int,
                 pad_mode: str) -> None:
        super().__init__()
        self.conv_in = Conv1d(in_channels=channels, out_channels=n_filters,
                              kernel_size=kernel_size, padding="causal", pad_mode=pad_mode)
        width = n_filters
        blocks = []
        for ratio in reversed(ratios):
            blocks.append(EncoderBlock(
                dim=width, ratio=ratio, compress=compress, n_residual_layers=n_residual_layers,
                residual_kernel_size=residual_kernel_size, dilation_base=dilation_base,
                pad_mode=pad_mode))
            width *= 2
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = Conv1d(in_channels=width, out_channels=dimension,
                               kernel_size=last_kernel_size, padding="causal", pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        return self.conv_out(elu(x))

    def step(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in.step(x)
        for block in self.blocks:
            x = block.step(x)
        return self.conv_out.step(elu(x))


class SEANetDecoder(nn.Module):
    """Latents ``(B, dimension, F)`` -> waveform ``(B, channels, F * prod(ratios))``."""

    def __init__(self, *, channels: int, dimension: int, n_filters: int, ratios: list[int],
                 kernel_size: int, last_kernel_size: int, residual_kernel_size: int,
                 n_residual_layers: int, dilation_base: int, compress: int,
                 pad_mode: str) -> None:
        super().__init__()
        width = n_filters * 2 ** len(ratios)
        self.conv_in = Conv1d(in_channels=dimension, out_channels=width,
                              kernel_size=kernel_size, padding="causal", pad_mode=pad_mode)
        blocks = []
        for ratio in ratios:
            blocks.append(DecoderBlock(
                dim=width, ratio=ratio, compress=compress, n_residual_layers=n_residual_layers,
                residual_kernel_size=residual_kernel_size, dilation_base=dilation_base,
                pad_mode=pad_mode))
            width //= 2
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = Conv1d(in_channels=width, out_channels=channels,
                               kernel_size=last_kernel_size, padding="causal", pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        return self.conv_out(elu(x))

    def step(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in.step(x)
        for block in self.blocks:
            x = block.step(x)
        return self.conv_out.step(elu(x))
