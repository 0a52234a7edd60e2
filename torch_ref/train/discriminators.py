"""PyTorch mirror of :mod:`mlx_speech.train.discriminators` (same names, state-dict keys, scores).

Feature maps are channels-first ``(rows, C, T_i)`` (the MLX side returns them channels-last);
scores are ``(B, N_i)`` in the same order on both sides. Never imports mlx.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.errors import AudioError
from mlx_speech.models.hifigan.train_spec import HiFiGANDiscriminatorSpec
from torch_ref.layers.conv import Conv1d, pad1d

LRELU_SLOPE = 0.1

Scores = list[torch.Tensor]
Features = list[list[torch.Tensor]]


def _check_wav(x: torch.Tensor, who: str) -> None:
    if x.ndim != 2:
        raise AudioError(f"{who}: expected a waveform batch (B, T), got shape {tuple(x.shape)}")


def _conv_stack(convs, conv_post, h: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv stack then ``conv_post`` (no activation); returns the output and every
    layer's output (the feature-matching features)."""
    feats = []
    for conv in convs:
        h = F.leaky_relu(conv(h), LRELU_SLOPE)
        feats.append(h)
    h = conv_post(h)
    feats.append(h)
    return h, feats


class PeriodDiscriminator(nn.Module):
    """One MPD branch: ``(B, T)`` -> ``((B, p * T_out), features)``."""

    def __init__(self, *, period: int, channels: list[int], kernel_size: int, stride: int) -> None:
        super().__init__()
        self.period = period
        c_in, n = 1, len(channels)
        convs = []
        for i, c in enumerate(channels):
            convs.append(Conv1d(in_channels=c_in, out_channels=c, kernel_size=kernel_size,
                                stride=stride if i < n - 1 else 1, padding=(kernel_size - 1) // 2,
                                weight_norm=True))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.conv_post = Conv1d(in_channels=c_in, out_channels=1, kernel_size=3, padding=1, weight_norm=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _check_wav(x, "PeriodDiscriminator")
        B, T = x.shape
        p = self.period
        if T % p:
            if T <= p - T % p:
                raise AudioError(f"PeriodDiscriminator: {T} samples are too short for period {p}")
            x = pad1d(x[:, None], 0, p - T % p, "reflect")[:, 0]
        # (B, T) -> (B, T/p, p) -> (B, p, T/p) -> (B*p, 1, T/p): column j of row b is row b*p+j.
        h = x.reshape(B, -1, p).transpose(1, 2).reshape(B * p, 1, -1)
        h, feats = _conv_stack(self.convs, self.conv_post, h)
        return h.reshape(B, -1), feats


class ScaleDiscriminator(nn.Module):
    """One MSD branch: ``(B, T)`` -> ``((B, T_out), features)``."""

    def __init__(self, *, channels: list[int], groups: list[int], kernels: tuple[int, ...],
                 strides: tuple[int, ...]) -> None:
        super().__init__()
        c_in = 1
        convs = []
        for c, g, k, s in zip(channels, groups, kernels, strides):
            convs.append(Conv1d(in_channels=c_in, out_channels=c, kernel_size=k, stride=s, groups=g,
                                padding=(k - 1) // 2, weight_norm=True))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.conv_post = Conv1d(in_channels=c_in, out_channels=1, kernel_size=3, padding=1, weight_norm=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _check_wav(x, "ScaleDiscriminator")
        h = x[:, None]
        h, feats = _conv_stack(self.convs, self.conv_post, h)
        return h.reshape(h.shape[0], -1), feats


def avg_pool_4_2(x: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` -> ``(B, T // 2 + 1)``: ``AvgPool1d(4, 2, padding=2)`` (padding counted)."""
    return F.avg_pool1d(x[:, None], 4, 2, padding=2)[:, 0]


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, *, periods: list[int], channels: list[int], kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(period=p, channels=channels, kernel_size=kernel_size, stride=stride)
            for p in periods)

    def forward(self, x: torch.Tensor) -> tuple[Scores, Features]:
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, *, scales: int, channels: list[int], groups: list[int]) -> None:
        super().__init__()
        k, s = HiFiGANDiscriminatorSpec.MSD_KERNELS, HiFiGANDiscriminatorSpec.MSD_STRIDES
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(channels=channels, groups=groups, kernels=k, strides=s) for _ in range(scales))

    def forward(self, x: torch.Tensor) -> tuple[Scores, Features]:
        scores, feats = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                x = avg_pool_4_2(x)
            s, f = d(x)
            scores.append(s)
            feats.append(f)
        return scores, feats


class HiFiGANDiscriminator(nn.Module):
    """MPD + MSD: ``wav (B, T)`` -> ``(scores, features)``, MPD's entries first."""

    def __init__(self, spec: HiFiGANDiscriminatorSpec) -> None:
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(periods=spec.periods, channels=spec.mpd_channels,
                                            kernel_size=spec.mpd_kernel, stride=spec.mpd_stride)
        self.msd = MultiScaleDiscriminator(scales=spec.msd_scales, channels=spec.msd_channels,
                                           groups=spec.msd_groups)

    def forward(self, wav: torch.Tensor) -> tuple[Scores, Features]:
        _check_wav(wav, "HiFiGANDiscriminator")
        s1, f1 = self.mpd(wav)
        s2, f2 = self.msd(wav)
        return s1 + s2, f1 + f2


def build_hifigan_discriminator(spec: HiFiGANDiscriminatorSpec | None = None) -> HiFiGANDiscriminator:
    return HiFiGANDiscriminator(spec or HiFiGANDiscriminatorSpec())
