"""Conv2d for MLX with optional weight norm: the 2-D convolution of the spectrogram and period
discriminators (DAC's ``WNConv2d``), mirrored by ``torch_ref.layers.conv2d``.

Layouts (channels-last inside MLX):

- input ``(B, H, W, C_in)`` -> output ``(B, H_out, W_out, C_out)`` with
  ``H_out = (H + 2 * pad_h - k_h) // s_h + 1`` (the same for ``W``); torch's twin takes and
  returns ``(B, C, H, W)``.
- ``weight (O, k_h, k_w, I/groups)`` (torch ``(O, I/groups, k_h, k_w)``: kind ``"conv2d"`` in
  :mod:`mlx_speech.weights.layout`); weight norm stores ``weight_g (O, 1, 1, 1)`` (the same
  shape in torch) and ``weight_v`` like ``weight``, with the norm over every axis but 0,
  torch's ``weight_norm(dim=0)``.

Padding is torch's: ``padding`` zeros on both sides of each spatial axis (an int, or a
``(pad_h, pad_w)`` pair), nothing else; DAC's discriminators need no other mode. Initialisation
is torch's default for a conv: weights and bias uniform in ``+-1 / sqrt(fan_in)``.

The convolution runs through :func:`mlx_speech.layers.conv2d_kernels.conv2d`: a fast CPU
rewrite for dense convs (forward and backward, since the discriminators that use this layer
train), ``mx.conv2d`` on the GPU, for grouped convs and under ``set_conv_impl("native")``.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.errors import SpecError
from mlx_speech.layers.conv import _WeightNormMixin
from mlx_speech.layers.conv2d_kernels import conv2d

__all__ = ["Conv2d"]


def _pair(value: int | tuple[int, int] | list[int], name: str, minimum: int) -> tuple[int, int]:
    """``value`` as an ``(h, w)`` pair of ints ``>= minimum``; a clear error otherwise."""
    items = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(items, (tuple, list)) or len(items) != 2
            or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in items)):
        raise SpecError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def _check_channels(in_channels: int, out_channels: int, groups: int) -> None:
    """The channel arithmetic of a grouped convolution (torch_ref's twin says the same)."""
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"{name} must be a positive integer, got {v!r}")
    if in_channels % groups or out_channels % groups:
        raise SpecError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must both "
                        f"be divisible by groups ({groups})")


class Conv2d(_WeightNormMixin, nn.Module):
    """2-D convolution, channels-last: ``(B, H, W, C_in)`` -> ``(B, H_out, W_out, C_out)``."""

    PARAM_KINDS = {"weight": "conv2d", "weight_v": "conv2d", "weight_g": "conv2d"}
    WN_AXES = (1, 2, 3)  # weight (O, k_h, k_w, I/groups): one gain per output channel

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 groups: int = 1, bias: bool = True, weight_norm: bool = False) -> None:
        super().__init__()
        _check_channels(in_channels, out_channels, groups)
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        kh, kw = self.kernel_size
        scale = 1.0 / math.sqrt(in_channels // groups * kh * kw)
        shape = (out_channels, kh, kw, in_channels // groups)
        self._init_weight(mx.random.uniform(-scale, scale, shape), weight_norm)
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (out_channels,))

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """``(H_out, W_out)`` the call returns for an ``(H, W)`` input."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1

    def __call__(self, x: mx.array) -> mx.array:
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"Conv2d expects input (B, H, W, {self.in_channels}) channels-last, "
                             f"got shape {tuple(x.shape)}")
        h_out, w_out = self.output_shape(x.shape[1], x.shape[2])
        if h_out < 1 or w_out < 1:
            raise ValueError(f"Conv2d input {tuple(x.shape[1:3])} is smaller than the kernel "
                             f"{self.kernel_size} after padding {self.padding}")
        y = conv2d(x, self.effective_weight(), stride=self.stride, padding=self.padding,
                   groups=self.groups)
        return y + self["bias"] if "bias" in self else y
