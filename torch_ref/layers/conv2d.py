"""Conv2d with optional weight norm, the PyTorch mirror of ``mlx_speech.layers.conv2d``.

Same names, parameters, padding and weight-norm fold as the MLX side, in torch's natural
``(B, C, H, W)`` layout: ``weight (O, I/groups, k_h, k_w)`` or ``weight_g (O, 1, 1, 1)`` +
``weight_v``, the norm over every dim but 0 (``torch.nn.utils.weight_norm(dim=0)``, so a
Descript ``WNConv2d`` state maps without reshaping). Padding is zeros, an int or an
``(h, w)`` pair. Never imports mlx.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.errors import SpecError
from torch_ref.layers.conv import _WeightNormMixin

__all__ = ["Conv2d"]


def _pair(value: int | tuple[int, int] | list[int], name: str, minimum: int) -> tuple[int, int]:
    """``value`` as an ``(h, w)`` pair of ints ``>= minimum``; a clear error otherwise."""
    items = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(items, (tuple, list)) or len(items) != 2
            or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in items)):
        raise SpecError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def _check_channels(in_channels: int, out_channels: int, groups: int) -> None:
    """The channel arithmetic of a grouped convolution (the MLX twin says the same)."""
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"{name} must be a positive integer, got {v!r}")
    if in_channels % groups or out_channels % groups:
        raise SpecError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must both "
                        f"be divisible by groups ({groups})")


class Conv2d(_WeightNormMixin, nn.Module):
    """2-D convolution: ``(B, C_in, H, W)`` -> ``(B, C_out, H_out, W_out)``."""

    # The MLX twin's declared kinds (convert/ reads them from either tree).
    PARAM_KINDS = {"weight": "conv2d", "weight_v": "conv2d", "weight_g": "conv2d"}

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
        self._init_weight((out_channels, in_channels // groups, kh, kw), scale, weight_norm)
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-scale, scale)) if bias else None

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """``(H_out, W_out)`` the call returns for an ``(H, W)`` input."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d expects input (B, {self.in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        h_out, w_out = self.output_shape(x.shape[2], x.shape[3])
        if h_out < 1 or w_out < 1:
            raise ValueError(f"Conv2d input {tuple(x.shape[2:])} is smaller than the kernel "
                             f"{self.kernel_size} after padding {self.padding}")
        return F.conv2d(x, self.effective_weight(), self.bias, stride=self.stride,
                        padding=self.padding, groups=self.groups)
