"""Conv1d and ConvTranspose1d, the PyTorch mirror of ``mlx_speech.layers.conv``.

Same names, parameters, padding modes, streaming and weight-norm fold as the MLX side, in
torch's natural ``(B, C, T)`` layout. Parameters (torch layouts):

- ``Conv1d``: ``weight (O, I/groups, K)`` or ``weight_g (O, 1, 1)`` + ``weight_v``.
- ``ConvTranspose1d``: ``weight (I, O/groups, K)`` or ``weight_g (I, 1, 1)`` + ``weight_v``.

Padding (``L`` input steps, ``K_eff = (K-1)*dilation + 1``, ``S`` stride): ``"causal"`` is
moshi's ``P = K_eff - S`` on the left plus ``E = ceil(L/S)*S - L`` on the right;
``"noncausal"`` splits ``P`` (``P//2`` right) plus ``E`` right; ``"same"`` is
``(K_eff-1)//2`` both sides; ``int p`` both sides; ``"valid"`` none. Transposed: ``"causal"``
trims ``K-S`` right, ``"same"``/``"noncausal"`` trims ``(K-S)//2`` right and the rest left,
``int p`` trims ``p`` each side. Never imports mlx.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.errors import SpecError
from mlx_speech.utils.streaming import Streaming

__all__ = ["Conv1d", "ConvTranspose1d", "pad1d"]

CONV_PADDINGS = ("causal", "noncausal", "same", "valid")
CONV_TRANSPOSE_PADDINGS = ("causal", "noncausal", "same")
PAD_MODES = ("constant", "reflect", "replicate")


def pad1d(x: torch.Tensor, left: int, right: int, mode: str = "constant") -> torch.Tensor:
    """Pad ``x (B, C, T)`` in time; reflect on a too-short input appends zeros first (moshi)."""
    if left == 0 and right == 0:
        return x
    if mode == "constant":
        # one pass: F.pad zero-fills the whole output and then copies x in (two passes; its
        # share of Mimi's decode: docs/performance.md, "Convolutions")
        parts = [x.new_zeros(*x.shape[:-1], left)] if left else []
        parts.append(x)
        if right:
            parts.append(x.new_zeros(*x.shape[:-1], right))
        return torch.cat(parts, dim=-1)
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode)
    extra = 0
    if x.shape[-1] <= max(left, right):
        extra = max(left, right) - x.shape[-1] + 1
        x = F.pad(x, (0, extra))
    y = F.pad(x, (left, right), mode="reflect")
    return y[..., :y.shape[-1] - extra]


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


def _check_input(x: torch.Tensor, channels: int, who: str) -> None:
    if x.dim() != 3 or x.shape[1] != channels:
        raise ValueError(f"{who} expects input (B, {channels}, T), got shape {tuple(x.shape)}")


def _weight_norm(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # norm over every dim but 0 (torch weight_norm, dim=0), for 1-D and 2-D kernels alike
    return v * (g / torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True))


class _WeightNormMixin:
    """Weight norm of a convolution (``Conv1d``, ``ConvTranspose1d``, ``layers.conv2d.Conv2d``):
    ``weight_g`` with ones on every axis but 0, ``weight_v`` like ``weight``."""

    weight_norm: bool

    def effective_weight(self) -> torch.Tensor:
        """The convolution weight in torch layout, with weight norm applied if enabled."""
        if self.weight_norm:
            return _weight_norm(self.weight_v, self.weight_g)
        return self.weight

    def remove_weight_norm(self) -> None:
        """Fold ``weight_g``/``weight_v`` into ``weight`` (exact: the tensor the call uses)."""
        if not self.weight_norm:
            return
        with torch.no_grad():
            w = self.effective_weight().detach().clone()
        del self.weight_g, self.weight_v
        self.weight = nn.Parameter(w)
        self.weight_norm = False

    def _init_weight(self, shape: tuple[int, ...], scale: float, weight_norm: bool) -> None:
        w = torch.empty(shape).uniform_(-scale, scale)
        self.weight_norm = weight_norm
        if weight_norm:
            self.weight_g = nn.Parameter(torch.linalg.vector_norm(w, dim=tuple(range(1, w.dim())),
                                                                  keepdim=True))
            self.weight_v = nn.Parameter(w)
        else:
            self.weight = nn.Parameter(w)


class Conv1d(Streaming, _WeightNormMixin, nn.Module):
    """1-D convolution: ``(B, C_in, T)`` -> ``(B, C_out, T_out)``."""

    # The MLX twin's declared kinds (convert/ reads them from either tree).
    PARAM_KINDS = {"weight": "conv1d", "weight_v": "conv1d", "weight_g": "conv1d"}

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
        self._init_weight((out_channels, in_channels // groups, kernel_size), scale, weight_norm)
        self.bias = (nn.Parameter(torch.empty(out_channels).uniform_(-scale, scale)) if bias
                     else None)
        self._buf: torch.Tensor | None = None
        self._raw: torch.Tensor | None = None

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

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < self.effective_kernel_size:
            w = self.effective_weight()
            return torch.zeros(x.shape[0], self.out_channels, 0, dtype=w.dtype, device=x.device)
        return F.conv1d(x, self.effective_weight(), self.bias, stride=self.stride,
                        dilation=self.dilation, groups=self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels, "Conv1d")
        length = x.shape[-1]
        left, right = self.padding_for(length)
        if length + left + right < self.effective_kernel_size:
            if self.padding in ("causal", "noncausal") and length == 0:
                return self._conv(x)
            raise ValueError(f"Conv1d input of {length} steps is shorter than the effective "
                             f"kernel ({self.effective_kernel_size}) after padding {left}+{right}")
        return self._conv(pad1d(x, left, right, self.pad_mode))

    def _reset_own_state(self) -> None:
        """Forget the streaming state (the next :meth:`step` starts a new stream)."""
        self._buf = None
        self._raw = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Feed the next ``x (B, C_in, t)`` of a stream; returns the frames now complete.

        Same contract as the MLX ``Conv1d.step``: after ``L`` steps the outputs equal the batch
        call's first ``floor(L / stride)`` frames (reflect waits for ``K_eff - stride + 1`` steps).
        """
        if self.padding != "causal":
            raise ValueError(f"Conv1d.step() needs padding='causal', this layer has "
                             f"padding={self.padding!r}")
        _check_input(x, self.in_channels, "Conv1d.step")
        if self._buf is None:
            raw = x if self._raw is None else torch.cat([self._raw, x], dim=-1)
            need = {"constant": 0, "replicate": 1}.get(self.pad_mode, self.padding_for(0)[0] + 1)
            if raw.shape[-1] == 0 or raw.shape[-1] < need:
                self._raw = raw
                return self._conv(raw[..., :0])
            self._raw = None
            self._buf = pad1d(raw, self.padding_for(0)[0], 0, self.pad_mode)
        else:
            self._buf = torch.cat([self._buf, x], dim=-1)
        k_eff, S = self.effective_kernel_size, self.stride
        n = (self._buf.shape[-1] - k_eff) // S + 1 if self._buf.shape[-1] >= k_eff else 0
        if n == 0:
            return self._conv(x[..., :0])
        y = self._conv(self._buf[..., :(n - 1) * S + k_eff])
        self._buf = self._buf[..., n * S:]
        return y


class ConvTranspose1d(Streaming, _WeightNormMixin, nn.Module):
    """Transposed 1-D convolution: ``(B, C_in, T)`` -> ``(B, C_out, T_out)``."""

    PARAM_KINDS = {"weight": "conv_transpose1d", "weight_v": "conv_transpose1d",
                   "weight_g": "conv_transpose1d"}

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
        scale = 1.0 / math.sqrt(out_channels // groups * kernel_size)
        self._init_weight((in_channels, out_channels // groups, kernel_size), scale, weight_norm)
        self.bias = (nn.Parameter(torch.empty(out_channels).uniform_(-scale, scale)) if bias
                     else None)
        self._tail: torch.Tensor | None = None

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

    def _full(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        w = self.effective_weight()
        if x.shape[-1] == 0:
            return torch.zeros(x.shape[0], self.out_channels, 0, dtype=w.dtype, device=x.device)
        return F.conv_transpose1d(x, w, bias, stride=self.stride, groups=self.groups)

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y + self.bias[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels, "ConvTranspose1d")
        left, right = self.trim_for()
        if x.shape[-1] and (x.shape[-1] - 1) * self.stride + self.kernel_size <= left + right:
            raise ValueError(f"ConvTranspose1d input of {x.shape[-1]} frames gives no output "
                             f"after trimming {left}+{right}")
        y = self._full(x, self.bias)  # bias inside the convolution (no pass of its own), then trim
        return y[..., left:y.shape[-1] - right]

    def _reset_own_state(self) -> None:
        """Forget the streaming state (the pending overlap tail)."""
        self._tail = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Feed the next ``x (B, C_in, t)`` frames; returns ``(B, C_out, t*stride)``.

        Keeps the last ``K - stride`` samples (without bias) for the next chunk; concatenated
        outputs equal the batch call on the concatenated input.
        """
        if self.padding != "causal":
            raise ValueError(f"ConvTranspose1d.step() needs padding='causal', this layer has "
                             f"padding={self.padding!r}")
        _check_input(x, self.in_channels, "ConvTranspose1d.step")
        y = self._full(x)
        if x.shape[-1] == 0:
            return y
        keep = self.kernel_size - self.stride
        if self._tail is not None and keep:
            y = torch.cat([y[..., :keep] + self._tail, y[..., keep:]], dim=-1)
        n = x.shape[-1] * self.stride
        self._tail = y[..., n:] if keep else None
        return self._add_bias(y[..., :n])
