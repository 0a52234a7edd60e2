"""Conv1d and ConvTranspose1d for MLX: moshi-compatible causal padding, streaming, weight norm.

Layouts (channels-last inside MLX):

- ``Conv1d``: input ``(B, T, C_in)`` -> ``(B, T_out, C_out)``; ``weight (O, K, I/groups)``
  (torch ``(O, I/groups, K)``); weight norm ``weight_g (O, 1, 1)`` (same in torch),
  ``weight_v`` like ``weight``; the norm runs over every axis but 0.
- ``ConvTranspose1d``: input ``(B, T, C_in)`` -> ``(B, T_out, C_out)``; ``weight (O/groups, K, I)``
  (torch ``(I, O/groups, K)``); weight norm ``weight_g (1, 1, I)`` (torch ``(I, 1, 1)``), i.e.
  one gain per input channel, torch's ``dim=0`` for transposed convs.

Padding modes (``L`` = input length, ``K_eff = (K-1)*dilation + 1``, ``S`` = stride):

- ``"causal"``: moshi ``StreamingConv1d(causal=True)``: ``P = K_eff - S`` all on the left, plus
  ``E = ceil(L/S)*S - L`` on the right so the last partial frame is complete; ``ceil(L/S)`` frames.
- ``"noncausal"``: moshi ``causal=False``: ``P // 2`` right, the rest left, plus ``E`` right.
- ``"same"``: ``(K_eff - 1) // 2`` both sides (DAC / HiFi-GAN ``get_padding``, torch semantics).
- ``int p``: ``p`` both sides (torch); ``"valid"``: none.

``pad_mode`` (``"constant"`` zeros, ``"reflect"``, ``"replicate"``) applies to whatever padding is
added; reflect on an input no longer than the padding follows moshi's ``pad1d`` (zeros appended
before reflecting, then dropped) instead of failing.

The convolution itself runs through :mod:`mlx_speech.layers.conv_kernels` (fast CPU rewrites or
the native ops, see ``set_conv_impl``).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.errors import SpecError
from mlx_speech.utils.streaming import Streaming
from mlx_speech.layers import conv_kernels as ck
from mlx_speech.layers.conv_kernels import conv_impl, get_conv_impl, set_conv_impl

__all__ = ["Conv1d", "ConvTranspose1d", "pad1d", "conv_impl", "get_conv_impl", "set_conv_impl"]

CONV_PADDINGS = ("causal", "noncausal", "same", "valid")
CONV_TRANSPOSE_PADDINGS = ("causal", "noncausal", "same")
PAD_MODES = ("constant", "reflect", "replicate")


def pad1d(x: mx.array, left: int, right: int, mode: str = "constant") -> mx.array:
    """Pad ``x (B, T, C)`` along time, moshi ``pad1d`` semantics (see the module docstring)."""
    if left == 0 and right == 0:
        return x
    if mode == "constant":
        return mx.pad(x, [(0, 0), (left, right), (0, 0)])
    if mode == "replicate":
        return mx.pad(x, [(0, 0), (left, right), (0, 0)], mode="edge")
    extra = 0
    if x.shape[1] <= max(left, right):
        extra = max(left, right) - x.shape[1] + 1
        x = mx.pad(x, [(0, 0), (0, extra), (0, 0)])
    T = x.shape[1]
    parts = [x[:, left:0:-1]] if left else []
    parts.append(x)
    if right:
        parts.append(x[:, T - 2:T - 2 - right:-1] if T - 2 - right >= 0 else x[:, T - 2::-1])
    y = mx.concatenate(parts, axis=1)
    return y[:, :y.shape[1] - extra] if extra else y


def _check_common(in_channels: int, out_channels: int, kernel_size: int, stride: int,
                  groups: int) -> None:
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                    ("kernel_size", kernel_size), ("stride", stride), ("groups", groups)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"{name} must be a positive integer, got {v!r}")
    if in_channels % groups or out_channels % groups:
        raise SpecError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must both "
                        f"be divisible by groups ({groups})")


def _check_padding(padding: str | int, allowed: tuple[str, ...]) -> None:
    if isinstance(padding, bool) or not isinstance(padding, (str, int)):
        raise SpecError(f"padding must be one of {', '.join(allowed)} or an int >= 0, "
                        f"got {padding!r}")
    if isinstance(padding, int) and padding < 0:
        raise SpecError(f"integer padding must be >= 0, got {padding}")
    if isinstance(padding, str) and padding not in allowed:
        raise SpecError(f"unknown padding {padding!r}; expected one of {', '.join(allowed)} "
                        f"or an int >= 0")


def _check_output_padding(output_padding: int, padding: str | int, stride: int) -> None:
    # torch's output_padding adds samples on the right; they are still inside the full
    # transposed output as long as output_padding <= padding (all DAC-style uses)
    if isinstance(output_padding, bool) or not isinstance(output_padding, int) or output_padding < 0:
        raise SpecError(f"output_padding must be an int >= 0, got {output_padding!r}")
    if output_padding and not (isinstance(padding, int) and output_padding <= padding
                               and output_padding < stride):
        raise SpecError(f"output_padding={output_padding} needs an integer padding >= it and "
                        f"< stride ({stride}); got padding={padding!r}")


def _check_input(x: mx.array, channels: int, who: str) -> None:
    if x.ndim != 3 or x.shape[-1] != channels:
        raise ValueError(f"{who} expects input (B, T, {channels}) channels-last, "
                         f"got shape {tuple(x.shape)}")


def _weight_norm(v: mx.array, g: mx.array, axes: tuple[int, ...]) -> mx.array:
    # torch: v * (g / ||v||) with the norm over every axis but the gain's
    return v * (g / mx.sqrt(mx.sum(v * v, axis=axes, keepdims=True)))


class _WeightNormMixin:
    """Weight norm of a convolution (``Conv1d``, ``ConvTranspose1d``, ``layers.conv2d.Conv2d``):
    ``weight_g`` keeps one gain per torch output axis and the norm runs over ``WN_AXES`` (every
    other axis of the MLX layout)."""

    WN_AXES: tuple[int, ...]
    weight_norm: bool

    def _init_weight(self, w: mx.array, weight_norm: bool) -> None:
        self.weight_norm = weight_norm
        if weight_norm:
            self.weight_v = w
            self.weight_g = mx.sqrt(mx.sum(w * w, axis=self.WN_AXES, keepdims=True))
        else:
            self.weight = w

    def effective_weight(self) -> mx.array:
        """The convolution weight in MLX layout, with weight norm applied if enabled."""
        if self.weight_norm:
            return _weight_norm(self["weight_v"], self["weight_g"], self.WN_AXES)
        return self["weight"]

    def remove_weight_norm(self) -> None:
        """Fold ``weight_g``/``weight_v`` into ``weight`` (exact: the same array the call uses)."""
        if not self.weight_norm:
            return
        w = self.effective_weight()
        del self["weight_g"], self["weight_v"]
        self.weight = w
        self.weight_norm = False


class Conv1d(Streaming, _WeightNormMixin, nn.Module):
    """1-D convolution, channels-last. ``__call__``: ``(B, T, C_in)`` -> ``(B, T_out, C_out)``."""

    PARAM_KINDS = {"weight": "conv1d", "weight_v": "conv1d", "weight_g": "conv1d"}
    WN_AXES = (1, 2)  # weight (O, K, I/groups): one gain per output channel

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True,
                 padding: str | int = "same", pad_mode: str = "constant",
                 weight_norm: bool = False) -> None:
        super().__init__()
        _check_common(in_channels, out_channels, kernel_size, stride, groups)
        if not isinstance(dilation, int) or isinstance(dilation, bool) or dilation < 1:
            raise SpecError(f"dilation must be a positive integer, got {dilation!r}")
        _check_padding(padding, CONV_PADDINGS)
        if pad_mode not in PAD_MODES:
            raise SpecError(f"unknown pad_mode {pad_mode!r}; "
                            f"expected one of {', '.join(PAD_MODES)}")
        k_eff = (kernel_size - 1) * dilation + 1
        if padding in ("causal", "noncausal") and k_eff < stride:
            raise SpecError(f"padding={padding!r} needs (kernel_size-1)*dilation+1 >= stride, got "
                            f"kernel_size={kernel_size}, dilation={dilation}, stride={stride}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.groups, self.padding, self.pad_mode = groups, padding, pad_mode
        scale = 1.0 / math.sqrt(in_channels // groups * kernel_size)
        self._init_weight(mx.random.uniform(-scale, scale,
                                            (out_channels, kernel_size, in_channels // groups)),
                          weight_norm)
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (out_channels,))
        self._buf: mx.array | None = None
        self._raw: mx.array | None = None

    @property
    def effective_kernel_size(self) -> int:
        return (self.kernel_size - 1) * self.dilation + 1

    def padding_for(self, length: int) -> tuple[int, int]:
        """``(left, right)`` time padding the batch call adds to an input of ``length`` steps."""
        k_eff, S = self.effective_kernel_size, self.stride
        if self.padding in ("causal", "noncausal"):
            total = k_eff - S
            extra = -length % S
            if self.padding == "causal":
                return total, extra
            return total - total // 2, total // 2 + extra
        if self.padding == "same":
            p = (k_eff - 1) // 2
            return p, p
        if self.padding == "valid":
            return 0, 0
        return self.padding, self.padding

    def output_length(self, length: int) -> int:
        """Frames the batch call returns for ``length`` input steps."""
        left, right = self.padding_for(length)
        return max(0, (length + left + right - self.effective_kernel_size) // self.stride + 1)

    def _conv(self, x: mx.array) -> mx.array:
        y = ck.conv1d(x, self.effective_weight(), stride=self.stride, dilation=self.dilation,
                      groups=self.groups)
        return y + self["bias"] if "bias" in self else y

    def __call__(self, x: mx.array) -> mx.array:
        _check_input(x, self.in_channels, "Conv1d")
        length = x.shape[1]
        left, right = self.padding_for(length)
        if length + left + right < self.effective_kernel_size:
            if self.padding in ("causal", "noncausal") and length == 0:
                return self._conv(x[:, :0])  # empty in, empty out
            raise ValueError(f"Conv1d input of {length} steps is shorter than the effective "
                             f"kernel ({self.effective_kernel_size}) after padding {left}+{right}")
        return self._conv(pad1d(x, left, right, self.pad_mode))

    # --- streaming ------------------------------------------------------------------------------

    def _reset_own_state(self) -> None:
        """Forget the streaming state (the next :meth:`step` starts a new stream)."""
        self._buf = None
        self._raw = None

    def step(self, x: mx.array) -> mx.array:
        """Feed the next ``x (B, t, C_in)`` of a stream (any ``t >= 0``); returns new frames.

        Only for ``padding="causal"``. A frame is emitted once its whole window has arrived, so
        after ``L`` steps in total the concatenated outputs equal the batch call's first
        ``floor(L / stride)`` frames on the same ``L`` steps: everything except the one frame the
        batch call completes with its extra right padding when ``L % stride != 0``. With
        ``pad_mode="reflect"`` the left padding needs ``K_eff - stride + 1`` steps, so nothing is
        emitted before that many have arrived (moshi pads the first chunk as it comes, which
        differs from its batch call when that chunk is shorter).
        """
        if self.padding != "causal":
            raise ValueError(f"Conv1d.step() needs padding='causal', this layer has "
                             f"padding={self.padding!r}")
        _check_input(x, self.in_channels, "Conv1d.step")
        if self._buf is None:
            raw = x if self._raw is None else mx.concatenate([self._raw, x], axis=1)
            need = {"constant": 0, "replicate": 1}.get(self.pad_mode, self.padding_for(0)[0] + 1)
            if raw.shape[1] == 0 or raw.shape[1] < need:
                self._raw = raw
                return self._empty(x)
            self._raw = None
            self._buf = pad1d(raw, self.padding_for(0)[0], 0, self.pad_mode)
        else:
            self._buf = mx.concatenate([self._buf, x], axis=1)
        k_eff, S = self.effective_kernel_size, self.stride
        n = (self._buf.shape[1] - k_eff) // S + 1 if self._buf.shape[1] >= k_eff else 0
        if n == 0:
            return self._empty(x)
        y = self._conv(self._buf[:, :(n - 1) * S + k_eff])
        self._buf = self._buf[:, n * S:]
        return y

    def _empty(self, x: mx.array) -> mx.array:
        w = self.effective_weight()
        return mx.zeros((x.shape[0], 0, self.out_channels), dtype=mx.result_type(x, w))


class ConvTranspose1d(Streaming, _WeightNormMixin, nn.Module):
    """Transposed 1-D convolution, channels-last: ``(B, T, C_in)`` -> ``(B, T_out, C_out)``.

    ``padding``: ``"causal"`` trims ``K - S`` on the right (moshi, ``T_out = T*S``);
    ``"same"`` / ``"noncausal"`` trims ``(K-S)//2`` right and the rest left (moshi non-causal,
    ``T_out = T*S``); ``int p`` trims ``p`` left and ``p - output_padding`` right (torch).
    """

    PARAM_KINDS = {"weight": "conv_transpose1d", "weight_v": "conv_transpose1d",
                   "weight_g": "conv_transpose1d"}
    WN_AXES = (0, 1)  # weight (O/groups, K, I): one gain per input channel (torch's dim 0)

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True, padding: str | int = "causal",
                 output_padding: int = 0, weight_norm: bool = False) -> None:
        super().__init__()
        _check_common(in_channels, out_channels, kernel_size, stride, groups)
        _check_padding(padding, CONV_TRANSPOSE_PADDINGS)
        if isinstance(padding, str) and kernel_size < stride:
            raise SpecError(f"padding={padding!r} needs kernel_size >= stride, got "
                            f"kernel_size={kernel_size}, stride={stride}")
        _check_output_padding(output_padding, padding, stride)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        self.padding = padding
        self.output_padding = output_padding
        # torch's init: fan_in from its weight (I, O/groups, K) is O/groups * K
        scale = 1.0 / math.sqrt(out_channels // groups * kernel_size)
        self._init_weight(mx.random.uniform(-scale, scale,
                                            (out_channels // groups, kernel_size, in_channels)),
                          weight_norm)
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (out_channels,))
        self._tail: mx.array | None = None

    def trim_for(self) -> tuple[int, int]:
        """``(left, right)`` samples removed from the full transposed-conv output."""
        if isinstance(self.padding, int):
            return self.padding, self.padding - self.output_padding
        total = self.kernel_size - self.stride
        if self.padding == "causal":
            return 0, total
        return total - total // 2, total // 2

    def output_length(self, length: int) -> int:
        """Samples the batch call returns for ``length`` input frames."""
        if length == 0:
            return 0
        return (length - 1) * self.stride + self.kernel_size - sum(self.trim_for())

    def _full(self, x: mx.array) -> mx.array:
        return ck.conv_transpose1d(x, self.effective_weight(), stride=self.stride,
                                   groups=self.groups)

    def __call__(self, x: mx.array) -> mx.array:
        _check_input(x, self.in_channels, "ConvTranspose1d")
        left, right = self.trim_for()
        if x.shape[1] and (x.shape[1] - 1) * self.stride + self.kernel_size <= left + right:
            raise ValueError(f"ConvTranspose1d input of {x.shape[1]} frames gives no output "
                             f"after trimming {left}+{right}")
        y = self._full(x)
        y = y[:, left:y.shape[1] - right]
        return y + self["bias"] if "bias" in self else y

    # --- streaming ------------------------------------------------------------------------------

    def _reset_own_state(self) -> None:
        """Forget the streaming state (the pending overlap tail)."""
        self._tail = None

    def step(self, x: mx.array) -> mx.array:
        """Feed the next ``x (B, t, C_in)`` frames (any ``t >= 0``); returns ``(B, t*S, C_out)``.

        Only for ``padding="causal"``. The last ``K - stride`` samples of each chunk's output
        are still missing later frames' contributions: they are kept (without bias) and added
        to the next chunk. Concatenated outputs equal the batch call on the concatenated input.
        """
        if self.padding != "causal":
            raise ValueError(f"ConvTranspose1d.step() needs padding='causal', this layer has "
                             f"padding={self.padding!r}")
        _check_input(x, self.in_channels, "ConvTranspose1d.step")
        if x.shape[1] == 0:
            w = self.effective_weight()
            return mx.zeros((x.shape[0], 0, self.out_channels), dtype=mx.result_type(x, w))
        y = self._full(x)
        keep = self.kernel_size - self.stride
        if self._tail is not None and keep:
            y = mx.concatenate([y[:, :keep] + self._tail, y[:, keep:]], axis=1)
        n = x.shape[1] * self.stride
        self._tail = y[:, n:] if keep else None
        y = y[:, :n]
        return y + self["bias"] if "bias" in self else y
