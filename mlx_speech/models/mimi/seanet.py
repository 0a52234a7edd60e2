"""Mimi's SEANet encoder and decoder (MLX, channels-last ``(B, T, C)``), batch and streaming.

Every convolution is causal (moshi ``StreamingConv1d(causal=True)``), so each module has a
``step(x)`` next to its batch call; chunks fed through ``step`` give the batch output on the
concatenated input (see :class:`mlx_speech.layers.conv.Conv1d`). Names (torch_ref identical)::

    encoder.conv_in                          1 -> n_filters, kernel_size
    encoder.blocks.i.residuals.j.conv1/conv2 residual unit (ELU, conv k, ELU, conv 1) + skip
    encoder.blocks.i.down                    ELU, conv k=2r stride r, width x2
    encoder.conv_out                         ELU, conv last_kernel_size -> dimension
    decoder.conv_in                          dimension -> n_filters * 2**len(ratios), kernel_size
    decoder.blocks.i.up                      ELU, transposed conv k=2r stride r, width / 2
    decoder.blocks.i.residuals.j.conv1/conv2 residual unit
    decoder.conv_out                         ELU, conv last_kernel_size -> channels

moshi's flat ``model.{n}`` indices map onto these names in ``mlx_speech/models/mimi/formats.py``.

ELU: :func:`~mlx_speech.layers.activations.elu`. MLX's CPU ``exp`` and ``where`` are scalar loops (~30-40 ns/element
here), and SEANet applies ELU to ~140M elements per 10 s of audio; on the CPU it runs as two
vectorised kernels (:func:`~mlx_speech.layers.activations.elu_cpu`, ~5.5 ns/element).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import elu
from mlx_speech.layers.conv import Conv1d, ConvTranspose1d


class ResidualUnit(nn.Module):
    """``x + conv2(elu(conv1(elu(x))))`` with ``conv1`` of kernel ``kernel_size`` and
    ``dilation``, ``conv2`` of kernel 1; ``(B, T, dim) -> (B, T, dim)``."""

    def __init__(self, *, dim: int, hidden: int, kernel_size: int, dilation: int,
                 pad_mode: str) -> None:
        super().__init__()
        self.conv1 = Conv1d(in_channels=dim, out_channels=hidden, kernel_size=kernel_size,
                            dilation=dilation, padding="causal", pad_mode=pad_mode)
        self.conv2 = Conv1d(in_channels=hidden, out_channels=dim, kernel_size=1,
                            padding="causal", pad_mode=pad_mode)

    def __call__(self, x: mx.array) -> mx.array:
        return x + self.conv2(elu(self.conv1(elu(x))))

    def step(self, x: mx.array) -> mx.array:
        # stride 1: each step returns as many frames as it receives
        return x + self.conv2.step(elu(self.conv1.step(elu(x))))


def _residuals(*, dim: int, compress: int, count: int, kernel_size: int, dilation_base: int,
               pad_mode: str) -> list[ResidualUnit]:
    return [ResidualUnit(dim=dim, hidden=dim // compress, kernel_size=kernel_size,
                         dilation=dilation_base ** j, pad_mode=pad_mode) for j in range(count)]


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

    def __call__(self, x: mx.array) -> mx.array:
        for unit in self.residuals:
            x = unit(x)
        return self.down(elu(x))

    def step(self, x: mx.array) -> mx.array:
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

    def __call__(self, x: mx.array) -> mx.array:
        x = self.up(elu(x))
        for unit in self.residuals:
            x = unit(x)
        return x

    def step(self, x: mx.array) -> mx.array:
        x = self.up.step(elu(x))
        for unit in self.residuals:
            x = unit.step(x)
        return x


class SEANetEncoder(nn.Module):
    """Waveform ``(B, T, channels)`` -> latents ``(B, T / prod(ratios), dimension)``.

    ``ratios`` are given in decoder order (moshi's convention) and applied reversed.
    """

    def __init__(self, *, channels: int, dimension: int, n_filters: int, ratios: list[int],
                 kernel_size: int, last_kernel_size: int, residual_kernel_size: int,
                 n_residual_layers: int, dilation_base: int, compress: int,
                 pad_mode: str) -> None:
        super().__init__()
        self.conv_in = Conv1d(in_channels=channels, out_channels=n_filters,
                              kernel_size=kernel_size, padding="causal", pad_mode=pad_mode)
        width = n_filters
        self.blocks = []
        for ratio in reversed(ratios):
            self.blocks.append(EncoderBlock(
                dim=width, ratio=ratio, compress=compress, n_residual_layers=n_residual_layers,
                residual_kernel_size=residual_kernel_size, dilation_base=dilation_base,
                pad_mode=pad_mode))
            width *= 2
        self.conv_out = Conv1d(in_channels=width, out_channels=dimension,
                               kernel_size=last_kernel_size, padding="causal", pad_mode=pad_mode)

    def __call__(self, x: mx.array) -> mx.array:
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        return self.conv_out(elu(x))

    def step(self, x: mx.array) -> mx.array:
        """Next ``(B, t, channels)`` samples -> the ``(B, f, dimension)`` frames now complete."""
        x = self.conv_in.step(x)
        for block in self.blocks:
            x = block.step(x)
        return self.conv_out.step(elu(x))


class SEANetDecoder(nn.Module):
    """Latents ``(B, F, dimension)`` -> waveform ``(B, F * prod(ratios), channels)``."""

    def __init__(self, *, channels: int, dimension: int, n_filters: int, ratios: list[int],
                 kernel_size: int, last_kernel_size: int, residual_kernel_size: int,
                 n_residual_layers: int, dilation_base: int, compress: int,
                 pad_mode: str) -> None:
        super().__init__()
        width = n_filters * 2 ** len(ratios)
        self.conv_in = Conv1d(in_channels=dimension, out_channels=width,
                              kernel_size=kernel_size, padding="causal", pad_mode=pad_mode)
        self.blocks = []
        for ratio in ratios:
            self.blocks.append(DecoderBlock(
                dim=width, ratio=ratio, compress=compress, n_residual_layers=n_residual_layers,
                residual_kernel_size=residual_kernel_size, dilation_base=dilation_base,
                pad_mode=pad_mode))
            width //= 2
        self.conv_out = Conv1d(in_channels=width, out_channels=channels,
                               kernel_size=last_kernel_size, padding="causal", pad_mode=pad_mode)

    def __call__(self, x: mx.array) -> mx.array:
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        return self.conv_out(elu(x))

    def step(self, x: mx.array) -> mx.array:
        """Next ``(B, f, dimension)`` frames -> ``(B, f * prod(ratios), channels)`` samples."""
        x = self.conv_in.step(x)
        for block in self.blocks:
            x = block.step(x)
        return self.conv_out.step(elu(x))
