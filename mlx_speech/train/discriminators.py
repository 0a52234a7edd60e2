"""HiFi-GAN discriminators (Kong, Kim & Bae, 2020) in MLX: multi-period (MPD) + multi-scale (MSD).

Module tree (mirrored in ``torch_ref.train.discriminators``; the names are the original
HiFi-GAN's, so its ``do_XXXXXXXX`` checkpoints map by :mod:`convert.hifigan_disc`)::

    mpd.discriminators.i.convs.j      kernel (k, 1) "2-D" convs, period periods[i]
    mpd.discriminators.i.conv_post
    msd.discriminators.i.convs.j      grouped Conv1d, scale i sees the waveform pooled 2^i times
    msd.discriminators.i.conv_post

A ``(k, 1)`` Conv2d over the ``(T / p, p)`` folded waveform never mixes the ``p`` columns, so
it is exactly a Conv1d over time with the columns folded into the batch: the weights are
:class:`~mlx_speech.layers.conv.Conv1d` ``(O, k, I)`` here (torch ``(O, I, k)``; the
original's Conv2d ``(O, I, k, 1)`` drops its last axis).

Deviation from the paper: every conv uses weight norm; the original puts spectral norm on
the first MSD scale. Loading an original checkpoint folds that scale's spectral norm into
its eval-mode weight (exact for the forward pass).

Outputs of every discriminator call ``(wav (B, T))``: ``(scores, features)`` where
``scores`` is a list (one per sub-discriminator) of ``(B, N_i)`` arrays and ``features`` a
list of lists of the activations after each conv (and the last conv's output). Feature maps
are channels-last ``(rows, T_i, C)`` with ``rows = B * period`` for MPD (row ``b * p + j``)
and ``rows = B`` for MSD; torch_ref returns the same maps channels-first.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.errors import AudioError
from mlx_speech.layers.conv import Conv1d, pad1d
from mlx_speech.models.hifigan.train_spec import HiFiGANDiscriminatorSpec

LRELU_SLOPE = 0.1

Scores = list[mx.array]
Features = list[list[mx.array]]


def _check_wav(x: mx.array, who: str) -> None:
    if x.ndim != 2:
        raise AudioError(f"{who}: expected a waveform batch (B, T), got shape {tuple(x.shape)}")


def _conv_stack(convs, conv_post, h: mx.array) -> tuple[mx.array, list[mx.array]]:
    """Leaky-ReLU conv stack then ``conv_post`` (no activation); returns the output and every
    layer's output (the feature-matching features)."""
    feats = []
    for conv in convs:
        h = nn.leaky_relu(conv(h), LRELU_SLOPE)
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
        self.convs = []
        for i, c in enumerate(channels):
            self.convs.append(Conv1d(in_channels=c_in, out_channels=c, kernel_size=kernel_size,
                                     stride=stride if i < n - 1 else 1, padding=(kernel_size - 1) // 2,
                                     weight_norm=True))
            c_in = c
        self.conv_post = Conv1d(in_channels=c_in, out_channels=1, kernel_size=3, padding=1, weight_norm=True)

    def __call__(self, x: mx.array) -> tuple[mx.array, list[mx.array]]:
        _check_wav(x, "PeriodDiscriminator")
        B, T = x.shape
        p = self.period
        if T % p:
            if T <= p - T % p:
                raise AudioError(f"PeriodDiscriminator: {T} samples are too short for period {p}")
            x = pad1d(x[:, :, None], 0, p - T % p, "reflect")[:, :, 0]
        # (B, T) -> (B, T/p, p) -> (B, p, T/p) -> (B*p, T/p, 1): column j of row b is row b*p+j.
        h = x.reshape(B, -1, p).transpose(0, 2, 1).reshape(B * p, -1, 1)
        h, feats = _conv_stack(self.convs, self.conv_post, h)
        return h.reshape(B, -1), feats


class ScaleDiscriminator(nn.Module):
    """One MSD branch: ``(B, T)`` -> ``((B, T_out), features)``."""

    def __init__(self, *, channels: list[int], groups: list[int], kernels: tuple[int, ...],
                 strides: tuple[int, ...]) -> None:
        super().__init__()
        c_in = 1
        self.convs = []
        for c, g, k, s in zip(channels, groups, kernels, strides):
            self.convs.append(Conv1d(in_channels=c_in, out_channels=c, kernel_size=k, stride=s, groups=g,
                                     padding=(k - 1) // 2, weight_norm=True))
            c_in = c
        self.conv_post = Conv1d(in_channels=c_in, out_channels=1, kernel_size=3, padding=1, weight_norm=True)

    def __call__(self, x: mx.array) -> tuple[mx.array, list[mx.array]]:
        _check_wav(x, "ScaleDiscriminator")
        h = x[:, :, None]
        h, feats = _conv_stack(self.convs, self.conv_post, h)
        return h.reshape(h.shape[0], -1), feats


def avg_pool_4_2(x: mx.array) -> mx.array:
    """``(B, T)`` -> ``(B, T // 2 + 1)``: mean of windows of 4, stride 2, 2 zeros padded on each
    side and counted (torch ``AvgPool1d(4, 2, padding=2)``)."""
    n = x.shape[1] // 2 + 1
    xp = mx.pad(x, [(0, 0), (2, 2 + 2)])  # two more zeros so every strided slice has n items
    return (xp[:, 0:2 * n:2] + xp[:, 1:2 * n + 1:2] + xp[:, 2:2 * n + 2:2] + xp[:, 3:2 * n + 3:2]) * 0.25


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, *, periods: list[int], channels: list[int], kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.discriminators = [PeriodDiscriminator(period=p, channels=channels, kernel_size=kernel_size,
                                                   stride=stride) for p in periods]

    def __call__(self, x: mx.array) -> tuple[Scores, Features]:
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, *, scales: int, channels: list[int], groups: list[int]) -> None:
        super().__init__()
        k, s = HiFiGANDiscriminatorSpec.MSD_KERNELS, HiFiGANDiscriminatorSpec.MSD_STRIDES
        self.discriminators = [ScaleDiscriminator(channels=channels, groups=groups, kernels=k, strides=s)
                               for _ in range(scales)]

    def __call__(self, x: mx.array) -> tuple[Scores, Features]:
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

    def __call__(self, wav: mx.array) -> tuple[Scores, Features]:
        _check_wav(wav, "HiFiGANDiscriminator")
        s1, f1 = self.mpd(wav)
        s2, f2 = self.msd(wav)
        return s1 + s2, f1 + f2


def build_hifigan_discriminator(spec: HiFiGANDiscriminatorSpec | None = None) -> HiFiGANDiscriminator:
    return HiFiGANDiscriminator(spec or HiFiGANDiscriminatorSpec())
