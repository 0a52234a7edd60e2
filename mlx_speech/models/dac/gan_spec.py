"""The framework-free half of DAC's GAN: the discriminator spec and Descript's key names.

Imports neither mlx nor torch, so ``mlx_speech.train.dac_discriminators`` and
``torch_ref.train.dac_discriminators`` build from the same :class:`DACDiscriminatorSpec`, and a
Descript discriminator state is renamed here once for both.

Descript's ``Discriminator`` (descript-audio-codec, ``dac/model/discriminator.py``) is one flat
list ``discriminators``: an MPD per period, then an MSD per rate, then an MRD per FFT size.
Our module tree keeps that list and every child name; the one structural difference is that
Descript wraps each activated conv in ``nn.Sequential(conv, LeakyReLU)``, so its keys carry a
``.0`` that ours do not::

    Descript                                         ours
    discriminators.i.convs.j.0.weight_g              discriminators.i.convs.j.weight_g
    discriminators.i.band_convs.b.j.0.weight_v       discriminators.i.band_convs.b.j.weight_v
    discriminators.i.conv_post.bias                  discriminators.i.conv_post.bias
    ...parametrizations.weight.original0 / 1         ...weight_g / weight_v   (torch >= 2.1)

Layouts need nothing: our torch_ref convs store Descript's shapes (``WNConv2d`` weights
``(O, I, kh, kw)``, gains ``(O, 1, 1, 1)``; ``WNConv1d`` ``(O, I, k)`` / ``(O, 1, 1)``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from mlx_speech.errors import CheckpointError
from mlx_speech.specs.base import Spec, require

__all__ = ["DAC_BANDS", "MSD_KERNELS", "MSD_STRIDES", "DACDiscriminatorSpec", "band_bins",
           "discriminator_state_from_upstream"]

# Fractions of the one-sided spectrum (0 = DC, 1 = Nyquist) that each MRD band stack sees.
DAC_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
# MSD conv stack (kernel, stride) per layer; padding is kernel // 2, the last layer has stride 1.
MSD_KERNELS = (15, 41, 41, 41, 41, 5)
MSD_STRIDES = (1, 4, 4, 4, 4, 1)


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


def band_bins(bands: list[list[float]] | tuple[tuple[float, float], ...], fft_size: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]`` bin ranges of ``bands`` for an STFT of ``fft_size``.

    Descript truncates ``fraction * (fft_size // 2 + 1)`` toward zero at both edges, so bands
    tile the bins without gaps; the Python float product is kept (not a rounded one) because
    it decides the edge bin.
    """
    n_bins = fft_size // 2 + 1
    return [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]


@dataclasses.dataclass
class DACDiscriminatorSpec(Spec):
    """Descript's DAC discriminator: MPD per period + MSD per rate + multi-band MRD per FFT size.

    * MPD (``periods``): the waveform reflect-padded by ``p - T % p`` samples (a whole period
      when ``T`` is already a multiple: Descript's rule), folded to ``(T / p, p)``, convs of
      kernel ``(5, 1)``, stride ``(3, 1)`` (the last stride 1) over ``mpd_channels``, then a
      ``(3, 1)`` conv to one channel.
    * MSD (``rates``, none in every released recipe): the waveform sinc-resampled to
      ``sample_rate // rate`` (julius' ``resample_frac``, as audiotools does), convs
      ``MSD_KERNELS`` / ``MSD_STRIDES`` over ``msd_channels`` with ``msd_groups``, then a
      kernel-3 conv to one channel.
    * MRD (``fft_sizes``): a Hann STFT with hop ``fft_size // 4`` aligned to the hop
      (audiotools' ``match_stride``), real and imaginary parts as 2 channels, the bins cut
      into ``bands``, per band 5 convs of ``mrd_channels`` (kernels ``(3, 9)`` x4 then
      ``(3, 3)``, frequency strides 1, 2, 2, 2, 1), the bands joined along frequency, then a
      ``(3, 3)`` conv to one channel.

    Every conv is weight-normed and (except the last of each sub-discriminator) followed by a
    leaky ReLU of slope 0.1. The defaults are Descript's (44.1 kHz); the widths are fields so
    tests and CPU runs can narrow them.
    """

    rates: list[int] = _field(list)
    periods: list[int] = _field(lambda: [2, 3, 5, 7, 11])
    fft_sizes: list[int] = _field(lambda: [2048, 1024, 512])
    sample_rate: int = 44100
    bands: list[list[float]] = _field(lambda: [list(b) for b in DAC_BANDS])
    mpd_channels: list[int] = _field(lambda: [32, 128, 512, 1024, 1024])
    msd_channels: list[int] = _field(lambda: [16, 64, 256, 1024, 1024, 1024])
    msd_groups: list[int] = _field(lambda: [1, 4, 16, 64, 256, 1])
    mrd_channels: int = 32

    def validate(self) -> None:
        w = type(self).__name__
        require(self.sample_rate > 0, w, f"sample_rate must be positive, got {self.sample_rate}")
        require(bool(self.periods) or bool(self.rates) or bool(self.fft_sizes), w,
                "needs at least one sub-discriminator (periods, rates or fft_sizes)")
        require(all(p >= 1 for p in self.periods), w, f"periods must be positive, got {self.periods}")
        require(all(r >= 1 and self.sample_rate // r >= 1 for r in self.rates), w,
                f"rates must be integers in [1, sample_rate], got {self.rates}")
        require(all(f >= 8 for f in self.fft_sizes), w, f"fft_sizes must be >= 8, got {self.fft_sizes}")
        require(len(self.mpd_channels) >= 2 and all(c > 0 for c in self.mpd_channels), w,
                "mpd_channels needs >= 2 positive entries")
        require(self.mrd_channels > 0, w, "mrd_channels must be positive")
        n = len(MSD_KERNELS)
        require(len(self.msd_channels) == n and len(self.msd_groups) == n, w,
                f"msd_channels and msd_groups need {n} entries each")
        c_in = 1
        for i, (c, g) in enumerate(zip(self.msd_channels, self.msd_groups)):
            require(c > 0 and g >= 1 and c_in % g == 0 and c % g == 0, w,
                    f"msd layer {i}: channels {c_in} -> {c} not divisible by groups {g}")
            c_in = c
        require(bool(self.bands) and all(len(b) == 2 and 0.0 <= b[0] < b[1] <= 1.0 for b in self.bands), w,
                f"bands must be [lo, hi] fractions with 0 <= lo < hi <= 1, got {self.bands}")
        for f in self.fft_sizes:
            bins = band_bins(self.bands, f)
            require(all(hi > lo for lo, hi in bins), w, f"fft_size {f}: a band has no bins ({bins})")

    def band_bins(self, fft_size: int) -> list[tuple[int, int]]:
        """The ``(lo, hi)`` bin range of each band for ``fft_size`` (see :func:`band_bins`)."""
        return band_bins(self.bands, fft_size)


@DACDiscriminatorSpec.preset("dac_44khz")
def dac_discriminator_44khz() -> DACDiscriminatorSpec:
    """Descript's released recipes (``conf/final/44khz.yml``): no MSD, 5 periods, 3 FFT sizes."""
    return DACDiscriminatorSpec()


@DACDiscriminatorSpec.preset("dac_24khz")
def dac_discriminator_24khz() -> DACDiscriminatorSpec:
    """``conf/final/24khz.yml``: the 44.1 kHz discriminator at 24 kHz."""
    return DACDiscriminatorSpec(sample_rate=24000)


@DACDiscriminatorSpec.preset("dac_16khz")
def dac_discriminator_16khz() -> DACDiscriminatorSpec:
    """``conf/final/16khz.yml``: the 44.1 kHz discriminator at 16 kHz."""
    return DACDiscriminatorSpec(sample_rate=16000)


@DACDiscriminatorSpec.preset("tiny")
def dac_discriminator_tiny() -> DACDiscriminatorSpec:
    """Test / CPU size: every kind of branch (one MSD at half rate), narrow channels."""
    return DACDiscriminatorSpec(rates=[2], periods=[2, 3], fft_sizes=[256, 128], sample_rate=16000,
                                mpd_channels=[4, 8, 8], msd_channels=[4, 8, 8, 8, 8, 8],
                                msd_groups=[1, 4, 4, 4, 4, 1], mrd_channels=4)


# --- Descript's key names -----------------------------------------------------------------------
_WN_NEW = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
_KEY = re.compile(r"^discriminators\.(\d+)\.(?:convs\.(\d+)\.0|band_convs\.(\d+)\.(\d+)\.0|conv_post)\."
                  r"(weight_g|weight_v|bias|parametrizations\.weight\.original[01])$")


def discriminator_state_from_upstream(state: dict[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """Descript ``Discriminator.state_dict()`` -> our names, values untouched (see the module
    docstring). A key outside the map is a :class:`~mlx_speech.errors.CheckpointError` naming it;
    the shapes are checked later by the strict load."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        m = _KEY.match(key)
        if m is None:
            raise CheckpointError(f"{where}: {key!r} is not a key of a Descript DAC discriminator")
        i, conv, band, layer, leaf = m.groups()
        leaf = _WN_NEW.get(leaf, leaf)
        if conv is not None:
            name = f"discriminators.{i}.convs.{conv}.{leaf}"
        elif band is not None:
            name = f"discriminators.{i}.band_convs.{band}.{layer}.{leaf}"
        else:
            name = f"discriminators.{i}.conv_post.{leaf}"
        if name in out:
            raise CheckpointError(f"{where}: {name!r} appears twice (old and new weight-norm names)")
        out[name] = value
    return out
