"""PyTorch mirror of :mod:`mlx_speech.train.dac_discriminators` (same names, state-dict keys,
scores; the module docstring there states what every step computes).

Feature maps are channels-first: ``(B, C, rows, p)`` for MPD (Descript's own layout),
``(B, C, T_i)`` for MSD, ``(B, C, frames, bins_i)`` for MRD; scores are ``(B, N_i)`` in the
same order on both sides. Parameters keep Descript's shapes, so its checkpoints load after
:func:`mlx_speech.models.dac.gan_spec.discriminator_state_from_upstream`. Never imports mlx.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.audio.filters import sinc_resample_kernels
from mlx_speech.errors import AudioError
from mlx_speech.models.dac.gan_spec import MSD_KERNELS, MSD_STRIDES, DACDiscriminatorSpec, band_bins
from torch_ref.audio.spectral import stft
from torch_ref.layers.conv import Conv1d
from torch_ref.layers.conv2d import Conv2d

__all__ = ["MPD", "MSD", "MRD", "DACDiscriminator", "preprocess", "resample_frac"]

LRELU_SLOPE = 0.1
PEAK = 0.8

Scores = list[torch.Tensor]
Features = list[list[torch.Tensor]]


def _check_wav(x: torch.Tensor, who: str) -> None:
    if x.ndim != 2:
        raise AudioError(f"{who}: expected a waveform batch (B, T), got shape {tuple(x.shape)}")


def preprocess(wav: torch.Tensor) -> torch.Tensor:
    """Descript's discriminator input: each row minus its mean, scaled to peak 0.8."""
    y = wav - wav.mean(dim=-1, keepdim=True)
    return PEAK * y / (y.abs().amax(dim=-1, keepdim=True) + 1e-9)


def resample_frac(x: torch.Tensor, old_sr: int, new_sr: int) -> torch.Tensor:
    """``(B, T)`` -> ``(B, floor(T * new / old))`` by julius' windowed-sinc resampler."""
    kernels, width, old, new = sinc_resample_kernels(old_sr, new_sr)
    if old == new:
        return x
    B, T = x.shape
    xp = F.pad(x[:, None], (width, width + old), mode="replicate")
    w = torch.from_numpy(kernels.copy()).to(device=x.device, dtype=x.dtype)[:, None]
    y = F.conv1d(xp, w, stride=old)  # (B, new, frames): output n * new + i
    return y.transpose(1, 2).reshape(B, -1)[:, :T * new // old]


def _activated(convs: nn.ModuleList, h: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
    for conv in convs:
        h = F.leaky_relu(conv(h), LRELU_SLOPE)
        feats.append(h)
    return h


class MPD(nn.Module):
    """One period branch: ``(B, T)`` -> ``((B, rows * p), features)``."""

    def __init__(self, *, period: int, channels: list[int]) -> None:
        super().__init__()
        self.period = period
        c_in, n = 1, len(channels)
        convs = []
        for i, c in enumerate(channels):
            convs.append(Conv2d(in_channels=c_in, out_channels=c, kernel_size=(5, 1),
                                stride=(3, 1) if i < n - 1 else 1, padding=(2, 0), weight_norm=True))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.conv_post = Conv2d(in_channels=c_in, out_channels=1, kernel_size=(3, 1), padding=(1, 0),
                                weight_norm=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _check_wav(x, "MPD")
        B, T = x.shape
        p = self.period
        pad = p - T % p
        if T <= pad:
            raise AudioError(f"MPD: {T} samples are too short for period {p} (reflect pad {pad})")
        x = F.pad(x[:, None], (0, pad), mode="reflect")
        feats: list[torch.Tensor] = []
        h = _activated(self.convs, x.reshape(B, 1, -1, p), feats)
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
        convs = []
        for c, g, k, s in zip(channels, groups, MSD_KERNELS, MSD_STRIDES):
            convs.append(Conv1d(in_channels=c_in, out_channels=c, kernel_size=k, stride=s, groups=g,
                                padding=k // 2, weight_norm=True))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.conv_post = Conv1d(in_channels=c_in, out_channels=1, kernel_size=3, padding=1, weight_norm=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _check_wav(x, "MSD")
        x = resample_frac(x, self.sample_rate, self.sample_rate // self.rate)
        feats: list[torch.Tensor] = []
        h = _activated(self.convs, x[:, None], feats)
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

        def stack() -> nn.ModuleList:
            convs = [Conv2d(in_channels=2, out_channels=ch, kernel_size=(3, 9), padding=(1, 4), weight_norm=True)]
            convs += [Conv2d(in_channels=ch, out_channels=ch, kernel_size=(3, 9), stride=(1, 2), padding=(1, 4),
                             weight_norm=True) for _ in range(3)]
            convs.append(Conv2d(in_channels=ch, out_channels=ch, kernel_size=(3, 3), padding=(1, 1),
                                weight_norm=True))
            return nn.ModuleList(convs)

        self.band_convs = nn.ModuleList(stack() for _ in self._bins)
        self.conv_post = Conv2d(in_channels=ch, out_channels=1, kernel_size=(3, 3), padding=(1, 1),
                                weight_norm=True)

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> ``(B, 2, ceil(T / hop), fft_size // 2 + 1)``: real and imaginary parts of
        the hop-aligned STFT."""
        T = x.shape[1]
        hop = self.hop
        right = math.ceil(T / hop) * hop - T
        pad = (self.fft_size - hop) // 2
        if T <= pad + right:
            raise AudioError(f"MRD: {T} samples are too short for an STFT of {self.fft_size} "
                             f"(reflect pad {pad + right})")
        x = F.pad(x[:, None], (pad, pad + right), mode="reflect")[:, 0]
        spec = stft(x, n_fft=self.fft_size, hop_length=hop, center=True, pad_mode="reflect")[:, 2:-2]
        return torch.stack([spec.real, spec.imag], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _check_wav(x, "MRD")
        spec = self.spectrogram(x)
        feats: list[torch.Tensor] = []
        outs = [_activated(convs, spec[..., lo:hi], feats) for (lo, hi), convs in zip(self._bins, self.band_convs)]
        h = self.conv_post(torch.cat(outs, dim=-1))
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
        self.discriminators = nn.ModuleList(discs)

    def forward(self, wav: torch.Tensor) -> tuple[Scores, Features]:
        _check_wav(wav, "DACDiscriminator")
        x = preprocess(wav.float())
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]
