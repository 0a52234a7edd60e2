"""HiFi-GAN training specs: the MPD + MSD discriminator and the ``hifigan`` task (framework-neutral).

A recipe's ``model:`` mapping for ``task: hifigan`` is a :class:`HiFiGANTrainSpec`::

    model:
      kind: hifigan             # the generator: hifigan, or vocos (ConvNeXt + inverse STFT)
      variant: v1               # its spec's preset (HiFiGANSpec: v1 / v2 / v3 / tiny;
                                # VocosSpec: base / small / tiny), or null
      generator: {}             # spec fields overriding the preset (all of them when null)
      mel_preset: hifigan_22k   # MelSpec preset of the generator's input mel
      discriminator: {...}      # HiFiGANDiscriminatorSpec fields (default: the paper's)
      segment_size: 8192
      mel_weight: 45.0
      fm_weight: 2.0
      adv_weight: 1.0
      disc_start: 0             # optimiser steps of mel loss alone before the GAN terms start
      init: null                # a tagged generator file (same kind and spec) to start from
      mel_dir: null             # input mels from <mel_dir>/<wav stem>.npy (e.g. data tts-gta)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mlx_speech.specs.audio import MelSpec
from mlx_speech.specs.base import Spec, require
from mlx_speech.models.hifigan.spec import HiFiGANSpec
from mlx_speech.models.vocos.spec import VocosSpec

GENERATORS = {"hifigan": HiFiGANSpec, "vocos": VocosSpec}


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


@dataclasses.dataclass
class HiFiGANDiscriminatorSpec(Spec):
    """Multi-period (MPD) + multi-scale (MSD) discriminators of HiFi-GAN.

    MPD: one sub-discriminator per period in ``periods``; each folds the waveform into
    ``(T / p, p)`` and runs convs of kernel ``(mpd_kernel, 1)``, stride ``(mpd_stride, 1)``
    over ``mpd_channels`` (the last conv has stride 1), then a ``(3, 1)`` conv to one channel.
    MSD: ``msd_scales`` sub-discriminators on the waveform average-pooled 1x, 2x, 4x ...;
    convs with the paper's kernels ``[15, 41, 41, 41, 41, 41, 5]`` and strides
    ``[1, 2, 2, 4, 4, 1, 1]``, channels ``msd_channels``, groups ``msd_groups``, then a
    kernel-3 conv to one channel. Weight norm on every conv (the paper puts spectral norm on
    the first MSD scale; see ``mlx_speech.train.discriminators``).
    """

    periods: list[int] = _field(lambda: [2, 3, 5, 7, 11])
    mpd_channels: list[int] = _field(lambda: [32, 128, 512, 1024, 1024])
    mpd_kernel: int = 5
    mpd_stride: int = 3
    msd_scales: int = 3
    msd_channels: list[int] = _field(lambda: [128, 128, 256, 512, 1024, 1024, 1024])
    msd_groups: list[int] = _field(lambda: [1, 4, 16, 16, 16, 16, 1])

    MSD_KERNELS = (15, 41, 41, 41, 41, 41, 5)
    MSD_STRIDES = (1, 2, 2, 4, 4, 1, 1)

    def validate(self) -> None:
        w = type(self).__name__
        require(bool(self.periods) and all(p >= 1 for p in self.periods), w,
                f"periods must be positive integers, got {self.periods}")
        require(len(self.mpd_channels) >= 2 and all(c > 0 for c in self.mpd_channels), w,
                "mpd_channels needs >= 2 positive entries")
        require(self.mpd_kernel >= 1 and self.mpd_kernel % 2 == 1, w, "mpd_kernel must be odd")
        require(self.mpd_stride >= 1, w, "mpd_stride must be >= 1")
        require(self.msd_scales >= 1, w, "msd_scales must be >= 1")
        n = len(self.MSD_KERNELS)
        require(len(self.msd_channels) == n and len(self.msd_groups) == n, w,
                f"msd_channels and msd_groups need {n} entries each")
        c_in = 1
        for i, (c, g) in enumerate(zip(self.msd_channels, self.msd_groups)):
            require(c > 0 and g >= 1 and c_in % g == 0 and c % g == 0, w,
                    f"msd layer {i}: channels {c_in} -> {c} not divisible by groups {g}")
            c_in = c


@HiFiGANDiscriminatorSpec.preset("v1")
def hifigan_discriminator() -> HiFiGANDiscriminatorSpec:
    """The paper's MPD (periods 2, 3, 5, 7, 11) + 3-scale MSD."""
    return HiFiGANDiscriminatorSpec()


@HiFiGANDiscriminatorSpec.preset("tiny")
def hifigan_discriminator_tiny() -> HiFiGANDiscriminatorSpec:
    """Test / CPU size: same structure, narrow channels."""
    return HiFiGANDiscriminatorSpec(periods=[2, 3], mpd_channels=[8, 16, 16],
                                    msd_scales=2, msd_channels=[8, 16, 16, 16, 16, 16, 16],
                                    msd_groups=[1, 4, 4, 4, 4, 4, 1])


@dataclasses.dataclass
class HiFiGANTrainSpec(Spec):
    """``task: hifigan``: GAN training of a HiFi-GAN or Vocos generator (see the module docstring).

    Generator loss ``adv_weight * LSGAN + fm_weight * feature matching + mel_weight * mel L1``
    (paper: 1, 2, 45). The mel L1 uses the input front end with ``f_max = loss_f_max``
    (paper: the full band, ``null``). ``segment_size`` samples are cropped at random from each
    item (zero-padded when shorter); it must be a multiple of the mel hop.

    ``disc_start``: for the first N optimiser steps the generator learns from the mel L1 alone
    and the discriminator is not run (its loss is an exact 0 with zero gradients, so Adam leaves
    it unchanged but for weight decay): a cheap warm-up, each step a fraction of a GAN step's
    cost. ``init``: a tagged generator file (``convert hifigan-generator``'s output) of the same
    kind and spec whose weights the generator starts from (fine-tuning, e.g. on an acoustic
    model's own mels); the discriminator starts afresh. ``mel_dir``: the generator's input mel
    of each utterance is read from ``<mel_dir>/<wav stem>.npy`` (``(T, n_mels)``, the centred
    frames of the whole recording, e.g. ``mlx-speech data tts-gta``'s ground-truth-aligned
    mels) instead of being computed from the audio; the segment is then cut on the frame grid
    from whole utterances (``data.crop_seconds: null``). The losses still compare with the audio.
    """

    kind: Literal["hifigan", "vocos"] = "hifigan"
    variant: str | None = "v1"
    generator: dict[str, Any] | None = _field(dict)
    mel_preset: str = "hifigan_22k"
    discriminator: HiFiGANDiscriminatorSpec = _field(HiFiGANDiscriminatorSpec)
    segment_size: int = 8192
    loss_f_max: float | None = None
    mel_weight: float = 45.0
    fm_weight: float = 2.0
    adv_weight: float = 1.0
    disc_start: int = 0
    init: str | None = None
    mel_dir: str | None = None

    def validate(self) -> None:
        w = type(self).__name__
        gen, mel = self.generator_spec(), self.mel_spec()
        require(gen.n_mels == mel.n_mels, w,
                f"generator n_mels {gen.n_mels} != mel preset {self.mel_preset!r} n_mels {mel.n_mels}")
        require(gen.hop_length == mel.hop_length, w,
                f"generator hop {gen.hop_length} != mel hop {mel.hop_length}")
        require(self.segment_size > 0 and self.segment_size % mel.hop_length == 0, w,
                f"segment_size {self.segment_size} must be a positive multiple of the hop {mel.hop_length}")
        require(min(self.mel_weight, self.fm_weight, self.adv_weight) >= 0, w, "loss weights must be >= 0")
        require(self.disc_start >= 0, w, f"disc_start must be >= 0, got {self.disc_start}")
        self.loss_mel()

    def generator_spec(self) -> HiFiGANSpec | VocosSpec:
        """The generator (its ``kind``'s spec): preset ``variant`` with ``generator``'s fields replaced."""
        where = f"{type(self).__name__}.generator"
        cls = GENERATORS[self.kind]
        if self.variant is None:
            return cls._build(dict(self.generator or {}), strict=True, where=where)
        base = cls.from_preset(self.variant).to_dict()
        return cls._build({**base, **(self.generator or {})}, strict=True, where=where)

    def mel_spec(self) -> MelSpec:
        """The generator's input front end."""
        return MelSpec.from_preset(self.mel_preset)

    def loss_mel(self) -> MelSpec:
        """The front end of the mel L1 loss (the input's, with ``f_max = loss_f_max``)."""
        return self.mel_spec().replace(f_max=self.loss_f_max)
