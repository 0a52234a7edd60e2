"""Spec of the HiFi-GAN generator (Kong et al. 2020) and its V1 / V2 / V3 / tiny presets.

Field names equal the constructor arguments of ``mlx_speech.models.hifigan.model.HiFiGANGenerator``
and its torch_ref twin.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class HiFiGANSpec(Spec):
    """HiFi-GAN generator (Kong et al. 2020); V1 / V2 / V3 are presets."""

    n_mels: int = 80
    upsample_rates: list[int] = dataclasses.field(default_factory=lambda: [8, 8, 2, 2])
    upsample_kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [16, 16, 4, 4])
    upsample_initial_channel: int = 512
    resblock: Literal["1", "2"] = "1"
    resblock_kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = dataclasses.field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    weight_norm: bool = True

    def validate(self) -> None:
        w = type(self).__name__
        require(len(self.upsample_rates) == len(self.upsample_kernel_sizes) > 0, w,
                "upsample_rates and upsample_kernel_sizes must have the same, non-zero length")
        require(len(self.resblock_kernel_sizes) == len(self.resblock_dilation_sizes) > 0, w,
                "resblock_kernel_sizes and resblock_dilation_sizes must have the same length")
        require(self.upsample_initial_channel // 2 ** len(self.upsample_rates) >= 1, w,
                "upsample_initial_channel too small for the number of upsampling stages")
        for r, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            require(k >= r and (k - r) % 2 == 0, w, f"upsample kernel {k} must be >= rate {r}, same parity")
        if self.resblock == "2":
            require(all(len(d) == 2 for d in self.resblock_dilation_sizes), w,
                    "resblock '2' takes two dilations per kernel")

    @property
    def hop_length(self) -> int:
        out = 1
        for r in self.upsample_rates:
            out *= r
        return out


@HiFiGANSpec.preset("v1")
def hifigan_v1() -> HiFiGANSpec:
    return HiFiGANSpec()


@HiFiGANSpec.preset("v2")
def hifigan_v2() -> HiFiGANSpec:
    return HiFiGANSpec(upsample_initial_channel=128)


@HiFiGANSpec.preset("v3")
def hifigan_v3() -> HiFiGANSpec:
    return HiFiGANSpec(upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8],
                       upsample_initial_channel=256, resblock="2", resblock_kernel_sizes=[3, 5, 7],
                       resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]])


@HiFiGANSpec.preset("tiny")
def hifigan_tiny() -> HiFiGANSpec:
    """Test size (same structure as V3, hop 256)."""
    return HiFiGANSpec(upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8],
                       upsample_initial_channel=32, resblock="2", resblock_kernel_sizes=[3, 5],
                       resblock_dilation_sizes=[[1, 2], [2, 6]])
