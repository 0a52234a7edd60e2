"""DAC's discriminator in MLX: multi-period (MPD), multi-scale (MSD) and multi-band complex-STFT
(MRD) sub-discriminators behind Descript's preprocessing (Kumar et al., 2023, "High-Fidelity
Audio Compression with Improved RVQGAN"; descript-audio-codec ``dac/model/discriminator.py``).

Module tree (mirrored in ``torch_ref.train.dac_discriminators``; names are Descript's less the
``nn.Sequential`` index, see :mod:`mlx_speech.models.dac.gan_spec`)::

    discriminators.i.convs.j            MPD (i < len(periods)): Conv2d (5, 1); MSD: Conv1d
    discriminators.i.band_convs.b.j     MRD: per band b, 5 Conv2d
    discriminators.i.conv_post          every sub-discriminator's last conv (no activation)

What the call computes, ``wav (B, T)`` -> ``(scores, features)``:

1. Preprocessing, per row: the mean is removed, then the row is scaled to peak ``0.8``
   (``0.8 * y / (max|y| + 1e-9)``). Rows are independent, so real and generated audio may
   share one call.
2. MPD ``p``: reflect-pad ``p - T % p`` samples on the right (a whole period when ``T`` is a
   multiple of ``p``, as Descript does), fold to ``(B, T' / p, p, 1)`` (sample ``l * p + j`` at
   row ``l``, column ``j``), convs with kernel ``(5, 1)`` along the rows.
3. MSD ``rate``: the waveform sinc-resampled to ``sample_rate // rate`` (julius'
   ``resample_frac``; nothing when the rate is 1), then grouped Conv1d layers.
4. MRD ``n_fft``: with ``hop = n_fft // 4``, reflect-pad ``(n_fft - hop) // 2`` on the left and
   that plus ``ceil(T / hop) * hop - T`` on the right, take the centred (reflect) Hann STFT,
   drop two frames at each end (audiotools' ``match_stride``: ``ceil(T / hop)`` frames), stack
   real and imaginary parts as channels ``(B, frames, bins, 2)``, cut the bins into the spec's
   bands, run each band's stack, join the bands along frequency, ``conv_post``.

``scores[i]`` is sub-discriminator ``i``'s ``conv_post`` output flattened to ``(B, N_i)``
(Descript's ``fmap[-1]``; the LSGAN means are the same). ``features[i]`` lists every activated
conv output and, last, the ``conv_post`` output (Descript's ``fmap``): channels-last
``(B, rows, p, C)`` for MPD, ``(B, T_i, C)`` for MSD, ``(B, frames, bins_i, C)`` for MRD
(the 5 maps of band 0, then band 1, ...); torch_ref returns the same maps channels-first.
DAC's feature matching skips each list's last map
(:func:`~mlx_speech.train.losses.feature_matching_loss` with ``exclude_last=True``).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.audio.filters import sinc_resample_kernels
from mlx_speech.audio.spectral import stft
from mlx_speech.errors import AudioError
from mlx_speech.layers.conv import Conv1d, pad1d
from mlx_speech.layers.conv2d import Conv2d
from mlx_speech.models.dac.gan_spec import MSD_KERNELS, MSD_STRIDES, DACDiscriminatorSpec, band_bins

__all__ = ["MPD", "MSD", "MRD", "DACDiscriminator", "preprocess", "resample_frac"]

LRELU_SLOPE = 0.1
PEAK = 0.8

Scores = list[mx.array]
Features = list[list[mx.array]]


def _check_wav(x: mx.array, who: str) -> None:
    if x.ndim != 2:
        raise AudioError(f"{who}: expected a waveform batch (B, T), got shape {tuple(x.shape)}")


def preprocess(wav: mx.array) -> mx.array:
    """Descript's discriminator input: each row minus its mean, scaled to peak 0.8."""
    y = wav - wav.mean(axis=-1, keepdims=True)
    return PEAK * y / (mx.abs(y).max(axis=-1, keepdims=True) + 1e-9)


def resample_frac(x: mx.array, old_sr: int, new_sr: int) -> mx.array:
    """``(B, T)`` -> ``(B, floor(T * new / old))`` by julius' windowed-sinc resampler
    (kernels and edge rule in :func:`mlx_speech.audio.filters.sinc_resample_kernels`)."""
    kernels, width, old, new = sinc_resample_kernels(old_sr, new_sr)
    if old == new:
        return x
    B, T = x.shape
    xp = mx.pad(x, [(0, 0), (width, width + old)], mode="edge")
    K, Tp = kernels.shape[1], T + 2 * width + old
    # as_strided makes its input contiguous first, so the strides are in elements of xp.
    frames = mx.as_strided(xp, (B, (Tp - K) // old + 1, K), (Tp, old, 1))
    y = frames @ mx.array(kernels.T)  # (B, frames, new): output n * new + i
    return y.reshape(B, -1)[:, :T * new // old]


def _activated(convs: list, h: mx.array, feats: list[mx.array]) -> mx.array:
    for conv in convs:
        h = nn.leaky_relu(conv(h), LRELU_SLOPE)
        feats.append(h)
    return h


class MPD(nn.Module):
    """One period branch: ``(B, T)`` -> ``((B, rows * p), features)``."""

    def __init__(self, *, period: int, channels: list[int]) -> None:
        super().__init__()
        self.period = period
        c_in, n = 1, len(channels)
        self.convs = []
        for i, c in enumerate(channels):
            self.convs.append(Conv2d(in_channels=c_in, out_channels=c, kernel_size=(5, 1),
                                     stride=(3, 1) if i < n - 1 else 1, padding=(2, 0), weight_norm=True))
            c_in = c
        self.conv_post = Conv2d(in_channels=c_in, out_channels=1, kernel_size=(3, 1), padding=(1, 0),
                                weight_norm=True)

    def __call__(self, x: mx.array) -> tuple[mx.array, list[mx.array]]:
        _check_wav(x, "MPD")
        B, T = x.shape
        p = self.period
        pad = p - T % p
        if T <= pad:
            raise AudioError(f"MPD: {T} samples are too short for period {p} (reflect pad {pad})")
        x = pad1d(x[:, :, None], 0, pad, "reflect")
        feats: list[mx.array] = []
        h = _activated(self.convs, x.reshape(B, -1, p, 1), feats)
        h = self.conv_post(h)
        feats.append(h)
        return h.reshape(B, -1), feats


class MSD(nn.Module):
    """One scale branch on the waveform resampled to ``sample_rate // rate``:
    ``(B, T)`` -> ``((B, T_out), features)``."""

    def __init__(self, *, rate: int, sample_rate: int, channels: list[int], groups: list[int]) -> None:
        super().__init__()
        self.rate, self.sample_rate = rate, sample_rate
        c_in = 1
        self.convs = []
        for c, g, k, s in zip(channels, groups, MSD_KERNELS, MSD_STRIDES):
            self.convs.append(Conv1d(in_channels=c_in, out_channels=c, kernel_size=k, stride=s, groups=g,
                                     padding=k // 2, weight_norm=True))
            c_in = c
        self.conv_post = Conv1d(in_channels=c_in, out_channels=1, kernel_size=3, padding=1, weight_norm=True)

    def __call__(self, x: mx.array) -> tuple[mx.array, list[mx.array]]:
        _check_wav(x, "MSD")
        x = resample_frac(x, self.sample_rate, self.sample_rate // self.rate)
        feats: list[mx.array] = []
        h = _activated(self.convs, x[:, :, None], feats)
        h = self.conv_post(h)
        feats.append(h)
        return h.reshape(h.shape[0], -1), feats


class MRD(nn.Module):
    """One multi-band complex-STFT branch: ``(B, T)`` -> ``((B, frames * bins), features)``."""

    def __init__(self, *, fft_size: int, bands: list[list[float]], channels: int) -> None:
        super().__init__()
        self.fft_size, self.hop = fft_size, fft_size // 4
        self._bins = band_bins(bands, fft_size)
        ch = channels

        def stack() -> list[Conv2d]:
            convs = [Conv2d(in_channels=2, out_channels=ch, kernel_size=(3, 9), padding=(1, 4), weight_norm=True)]
            convs += [Conv2d(in_channels=ch, out_channels=ch, kernel_size=(3, 9), stride=(1, 2), padding=(1, 4),
                             weight_norm=True) for _ in range(3)]
            convs.append(Conv2d(in_channels=ch, out_channels=ch, kernel_size=(3, 3), padding=(1, 1),
                                weight_norm=True))
            return convs

        self.band_convs = [stack() for _ in self._bins]
        self.conv_post = Conv2d(in_channels=ch, out_channels=1, kernel_size=(3, 3), padding=(1, 1),
                                weight_norm=True)

    def spectrogram(self, x: mx.array) -> mx.array:
        """``(B, T)`` -> ``(B, ceil(T / hop), fft_size // 2 + 1, 2)``: real and imaginary parts of
        the hop-aligned STFT (module docstring, step 4)."""
        T = x.shape[1]
        hop = self.hop
        right = math.ceil(T / hop) * hop - T
        pad = (self.fft_size - hop) // 2
        if T <= pad + right:
            raise AudioError(f"MRD: {T} samples are too short for an STFT of {self.fft_size} "
                             f"(reflect pad {pad + right})")
        x = pad1d(x[:, :, None], pad, pad + right, "reflect")[:, :, 0]
        spec = stft(x, n_fft=self.fft_size, hop_length=hop, center=True, pad_mode="reflect")[:, 2:-2]
        return mx.stack([mx.real(spec), mx.imag(spec)], axis=-1)

    def __call__(self, x: mx.array) -> tuple[mx.array, list[mx.array]]:
        _check_wav(x, "MRD")
        spec = self.spectrogram(x)
        feats: list[mx.array] = []
        outs = [_activated(convs, spec[:, :, lo:hi], feats) for (lo, hi), convs in zip(self._bins, self.band_convs)]
        h = self.conv_post(mx.concatenate(outs, axis=2))
        feats.append(h)
        return h.reshape(h.shape[0], -1), feats


class DACDiscriminator(nn.Module):
    """Descript's ``Discriminator``: ``wav (B, T)`` -> ``(scores, features)``, one entry per
    sub-discriminator in the order MPD (``periods``), MSD (``rates``), MRD (``fft_sizes``)."""

    def __init__(self, spec: DACDiscriminatorSpec | None = None) -> None:
        super().__init__()
        spec = spec or DACDiscriminatorSpec()
        discs: list[nn.Module] = [MPD(period=p, channels=spec.mpd_channels) for p in spec.periods]
        discs += [MSD(rate=r, sample_rate=spec.sample_rate, channels=spec.msd_channels, groups=spec.msd_groups)
                  for r in spec.rates]
        discs += [MRD(fft_size=f, bands=spec.bands, channels=spec.mrd_channels) for f in spec.fft_sizes]
        self.discriminators = discs

    def __call__(self, wav: mx.array) -> tuple[Scores, Features]:
        _check_wav(wav, "DACDiscriminator")
        x = preprocess(wav.astype(mx.float32))
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]
