"""The framework-free half of BSQ-ViT's GAN: the PatchGAN discriminator spec and its size rules.

Imports neither mlx nor torch, so ``mlx_speech.train.bsq_vit_discriminator`` and
``torch_ref.train.bsq_vit_discriminator`` build from the same :class:`PatchGANSpec` and agree
on every map size and on the smallest mel they accept.

The discriminator looks at the tokenizer's log-mel ``x (B, T, n_mels)`` (scaled to [-1, 1]) as
a one-channel image of height ``T`` and width ``n_mels``, the layout of pix2pix's
``NLayerDiscriminator`` (Isola et al., 2017; as used by taming-transformers / VQGAN) without
its normalisation layers. Its convs, all with a square ``kernel`` and zero padding 1 on each
side (pix2pix's ``padw = 1``)::

    i   stride  channels                                   followed by
    0   2       channels                                   LeakyReLU(slope)
    n   2       min(channels * 2^n, max_channels)          LeakyReLU    n = 1 .. layers - 1
    L   1       min(channels * 2^layers, max_channels)     LeakyReLU    L = layers
    out 1       1                                          nothing: the patch scores

So ``layers`` counts the hidden convs after the first (``layers - 1`` strided, one not), the map
is downsampled ``2^layers`` times, and each score sees one patch of the mel (70 x 70 pixels for
the default, pix2pix's "70 x 70 PatchGAN").
"""

from __future__ import annotations

import dataclasses

from mlx_speech.errors import AudioError
from mlx_speech.specs.base import Spec, require

__all__ = ["PADDING", "PatchGANSpec"]

# Zero padding on each side of both spatial axes, for every conv (pix2pix's padw).
PADDING = 1


@dataclasses.dataclass
class PatchGANSpec(Spec):
    """A PatchGAN on mel spectrograms (see the module docstring for the conv stack).

    * ``channels``: width of the first conv; each later one doubles it up to ``max_channels``.
    * ``layers``: hidden convs after the first, ``layers - 1`` of stride 2 and one of stride 1.
    * ``kernel``: the square kernel of every conv (``>= 2``; padding is always 1).
    * ``weight_norm``: every conv weight-normed (``weight_g`` / ``weight_v``), which stands in
      for the BatchNorm pix2pix uses (see ``mlx_speech.train.bsq_vit_discriminator``).
    * ``slope``: the negative slope of the LeakyReLUs.
    """

    channels: int = 64
    layers: int = 3
    kernel: int = 4
    max_channels: int = 512
    weight_norm: bool = True
    slope: float = 0.2

    def validate(self) -> None:
        w = type(self).__name__
        require(self.channels >= 1, w, f"channels must be >= 1, got {self.channels}")
        require(self.layers >= 1, w, f"layers must be >= 1 (one stride-1 conv at least), got {self.layers}")
        require(self.kernel >= 2, w, f"kernel must be >= 2 (padding is {PADDING} on each side), "
                                     f"got {self.kernel}")
        require(self.max_channels >= self.channels, w,
                f"max_channels ({self.max_channels}) must be >= channels ({self.channels})")
        require(0.0 <= self.slope < 1.0, w, f"slope must be in [0, 1), got {self.slope}")

    # -- the conv stack ------------------------------------------------------------------------
    def conv_plan(self) -> list[tuple[int, int, int]]:
        """``(in_channels, out_channels, stride)`` of every conv in order, the score conv last."""
        plan, c_in = [], 1
        for n in range(self.layers + 1):
            c = min(self.channels * 2 ** n, self.max_channels)
            plan.append((c_in, c, 2 if n < self.layers else 1))
            c_in = c
        plan.append((c_in, 1, 1))
        return plan

    def map_sizes(self, size: int) -> list[int]:
        """The length along one axis (``T`` or ``n_mels``) after each conv, the score map last;
        a value ``< 1`` means the input is too small (see :meth:`min_input_size`)."""
        sizes = []
        for _, _, stride in self.conv_plan():
            size = (size + 2 * PADDING - self.kernel) // stride + 1
            sizes.append(size)
        return sizes

    def output_size(self, size: int) -> int:
        """The score map's length along an axis whose input length is ``size``."""
        return self.map_sizes(size)[-1]

    def min_input_size(self) -> int:
        """The smallest ``T`` (and ``n_mels``) for which every map is at least 1 long.

        Walks the stack backwards: a conv gives ``>= m`` outputs exactly when its input is
        ``>= (m - 1) * stride + kernel - 2 * padding`` (and every input must be ``>= 1``).
        """
        m = 1
        for _, _, stride in reversed(self.conv_plan()):
            m = max(1, (m - 1) * stride + self.kernel - 2 * PADDING)
        return m

    def check_input(self, shape: tuple[int, ...], who: str) -> None:
        """Raise a ``ValueError`` naming the expected layout or the minimum size unless ``shape``
        is a mel batch ``(B, T, n_mels)`` the stack can take."""
        if len(shape) != 3:
            raise AudioError(f"{who}: expected a mel batch (B, T, n_mels), got shape {tuple(shape)}")
        low = self.min_input_size()
        if shape[1] < low or shape[2] < low:
            raise AudioError(f"{who}: mel (T={shape[1]}, n_mels={shape[2]}) is too small; this "
                             f"discriminator (kernel {self.kernel}, layers {self.layers}) needs "
                             f"T >= {low} and n_mels >= {low}")


@PatchGANSpec.preset("default")
def patchgan_default() -> PatchGANSpec:
    """pix2pix's 70 x 70 PatchGAN widths (64 .. 512 channels, 3 layers), weight-normed."""
    return PatchGANSpec()


@PatchGANSpec.preset("tiny")
def patchgan_tiny() -> PatchGANSpec:
    """Test / CPU size: 8 .. 32 channels, 2 layers (mel of at least 12 x 12)."""
    return PatchGANSpec(channels=8, layers=2)
