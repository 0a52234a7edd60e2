"""Waveform front end of the wav2vec 2.0 family (WavLM, HuBERT, wav2vec 2.0), torch mirror of
``mlx_speech/models/ssl/frontend.py`` (see its docstring for the maths and upstream quirks).

Same modules and parameter names; the layouts differ only where the weights core declares it
(the convolutions are :class:`torch_ref.layers.conv.Conv1d`, ``(O, I, K)`` here and
``(O, K, I)`` in MLX). Boundary tensors are as on the MLX side (waveform ``(B, T)``, features
``(B, F, C)``); inside the convolution stack this side keeps torch's ``(B, C, T)`` and
transposes once on the way out, so :class:`ChannelNorm` normalises the last axis here.

The MLX side folds the first layer's GroupNorm into its convolution and runs the grouped
positional convolution tap by tap, for CPU speed; this mirror computes the plain
``conv -> norm -> activation`` and ``F.conv1d(groups=...)``, which is the reference those
rewrites are tested against.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.models.ssl.spec import ACTIVATIONS, Wav2Vec2Spec
from torch_ref.layers.activations import get_activation
from torch_ref.layers.conv import Conv1d
from torch_ref.layers.norms import LayerNorm

GROUP_NORM_EPS = 1e-5  # torch nn.GroupNorm / nn.BatchNorm1d default, as upstream uses them


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Our activation for a transformers activation name (``"gelu"``, ``"swish"``, ...)."""
    return get_activation(ACTIVATIONS[name])


class ChannelNorm(nn.Module):
    """GroupNorm with one group per channel on ``(B, C, T)``: each channel over time."""

    def __init__(self, *, channels: int, eps: float = GROUP_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)


class FrozenBatchNorm(nn.Module):
    """Inference-mode BatchNorm over the channels of ``(B, T, C)`` with stored statistics.

    ``running_mean`` / ``running_var`` are buffers here (parameters of the frozen MLX twin);
    both sit in the state dict under the same names.
    """

    def __init__(self, *, channels: int, eps: float = GROUP_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return x * scale + (self.bias - self.running_mean * scale)


class ConvLayer(nn.Module):
    """``conv -> [norm] -> activation`` on ``(B, C_in, T)`` -> ``(B, C_out, T')``."""

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 bias: bool, norm: str | None, act: str) -> None:
        super().__init__()
        self.conv = Conv1d(in_channels=in_channels, out_channels=out_channels,
                           kernel_size=kernel_size, stride=stride, bias=bias, padding="valid")
        self._norm_kind = norm
        if norm == "group":
            self.norm = ChannelNorm(channels=out_channels)
        elif norm == "layer":
            self.norm = LayerNorm(dim=out_channels)  # torch nn.LayerNorm default eps 1e-5
        self._act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self._norm_kind == "group":
            x = self.norm(x)
        elif self._norm_kind == "layer":
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)  # LayerNorm over channels
        return self._act(x)


class FeatureEncoder(nn.Module):
    """Raw waveform ``(B, T)`` -> conv features ``(B, F, conv_dim[-1])`` (``conv_layers.N``)."""

    def __init__(self, spec: Wav2Vec2Spec) -> None:
        super().__init__()
        dims = [1, *spec.conv_dim]
        layers = []
        for i, (k, s) in enumerate(zip(spec.conv_kernel, spec.conv_stride)):
            norm = spec.feat_extract_norm if (spec.feat_extract_norm == "layer" or i == 0) else None
            layers.append(ConvLayer(in_channels=dims[i], out_channels=dims[i + 1], kernel_size=k,
                                    stride=s, bias=spec.conv_bias, norm=norm,
                                    act=spec.feat_extract_activation))
        self.conv_layers = nn.ModuleList(layers)
        self._spec = spec
        self.receptive_field = spec.receptive_field

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` input samples (0 if shorter than the receptive field)."""
        return self._spec.num_frames(num_samples)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav[:, None, :]
        for layer in self.conv_layers:
            x = layer(x)
        return x.transpose(1, 2)


class FeatureProjection(nn.Module):
    """``[layer_norm] -> projection``: ``(B, F, conv_dim[-1])`` -> ``(B, F, hidden_size)``."""

    def __init__(self, *, in_dim: int, out_dim: int, layer_norm: bool, eps: float) -> None:
        super().__init__()
        self.layer_norm = LayerNorm(dim=in_dim, eps=eps) if layer_norm else None
        self.projection = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.projection(x)


class PositionalConvEmbedding(nn.Module):
    """Positions by a grouped convolution, ``(B, F, D)`` -> ``(B, F, D)`` (no residual)."""

    def __init__(self, *, dim: int, kernel_size: int, groups: int, batch_norm: bool,
                 act: str) -> None:
        super().__init__()
        self.batch_norm = FrozenBatchNorm(channels=dim) if batch_norm else None
        self.conv = Conv1d(in_channels=dim, out_channels=dim, kernel_size=kernel_size,
                           groups=groups, bias=True, padding=kernel_size // 2)
        # upstream pads K//2 on both sides; an even kernel then yields F+1 frames: drop the last
        self._drop_last = 1 if kernel_size % 2 == 0 else 0
        self._act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        y = self.conv(x.transpose(1, 2))
        if self._drop_last:
            y = y[..., :y.shape[-1] - self._drop_last]
        return self._act(y).transpose(1, 2)
