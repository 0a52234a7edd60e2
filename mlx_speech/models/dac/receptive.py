"""Receptive fields of DAC's CNN, derived layer by layer from the layers' own geometry.

Framework-free (both ``chunked.py`` files use it). Each layer of the encoder or decoder is
described by what it reads, in its own input and output indices, with the padding the batch
call adds (zeros at both ends of the sequence):

- :class:`ConvGeometry` (a ``Conv1d``): output ``n`` reads inputs
  ``n*stride - left .. n*stride - left + span - 1`` (``span = (kernel-1)*dilation + 1``);
  ``right`` zeros close the sequence.
- :class:`UpGeometry` (a ``ConvTranspose1d``): input frame ``i`` adds to the full output
  positions ``i*stride .. i*stride + kernel - 1``; the batch call trims ``trim_left`` positions
  at the start and ``trim_right`` at the end (torch's ``padding`` / ``output_padding``).
- :class:`ResidualGeometry`: ``x + branch(x)`` (the branch is stride 1 and keeps the length).
- :data:`POINTWISE` (Snake, tanh): output ``t`` reads input ``t``.

:func:`needs` walks a stack of layers from its output back to its input and returns the input
indices a range of outputs reads. Composed over the encoder (samples -> frames) and the decoder
(latent frames -> samples) it gives :class:`ReceptiveField`: the exact left and right context
of one codec frame. The right context is the look-ahead a stream must wait for before it can
emit that frame (``chunked.py``); causal models have none. The maps are shift-equivariant
(shifting the output by one frame shifts the input by one hop), so one frame's context is every
frame's, away from the sequence's ends.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """A convolution with ``left`` / ``right`` zero padding (see the module docstring)."""

    span: int
    stride: int
    left: int
    right: int

    def needs(self, lo: int, hi: int) -> tuple[int, int]:
        return lo * self.stride - self.left, hi * self.stride - self.left + self.span - 1


@dataclasses.dataclass(frozen=True)
class UpGeometry:
    """A transposed convolution trimmed by ``trim_left`` / ``trim_right`` samples."""

    kernel: int
    stride: int
    trim_left: int
    trim_right: int

    def needs(self, lo: int, hi: int) -> tuple[int, int]:
        # output t is full position u = t + trim_left, made of frames i with i*S <= u < i*S + K
        first = -(-(lo + self.trim_left - self.kernel + 1) // self.stride)
        return first, (hi + self.trim_left) // self.stride


@dataclasses.dataclass(frozen=True)
class PointwiseGeometry:
    """A layer that maps each time step on its own (Snake, tanh)."""

    def needs(self, lo: int, hi: int) -> tuple[int, int]:
        return lo, hi


POINTWISE = PointwiseGeometry()


@dataclasses.dataclass(frozen=True)
class ResidualGeometry:
    """``x + branch(x)``: reads what the branch reads and the step itself."""

    branch: tuple[Geometry, ...]

    def needs(self, lo: int, hi: int) -> tuple[int, int]:
        blo, bhi = needs(self.branch, lo, hi)
        return min(lo, blo), max(hi, bhi)


Geometry = ConvGeometry | UpGeometry | PointwiseGeometry | ResidualGeometry


def needs(plan: tuple[Geometry, ...] | list[Geometry], lo: int, hi: int) -> tuple[int, int]:
    """Input indices ``(first, last)`` that outputs ``lo..hi`` of the layer stack ``plan``
    read (before clipping to the sequence: indices outside it are the batch call's zeros)."""
    for layer in reversed(plan):
        lo, hi = layer.needs(lo, hi)
    return lo, hi


def conv_geometry(conv: Any) -> ConvGeometry:
    """The geometry of a ``Conv1d`` of either framework (same attribute names).

    ``padding_for(0)`` is the padding of a sequence whose length is a multiple of the stride
    (every DAC layer's): for "same" / integer padding the batch call's on both sides, for
    "causal" all of it on the left.
    """
    if conv.pad_mode != "constant":
        raise ValueError(f"streaming with look-ahead needs zero padding, this Conv1d pads with "
                         f"{conv.pad_mode!r}")
    left, right = conv.padding_for(0)
    return ConvGeometry(span=conv.effective_kernel_size, stride=conv.stride, left=left,
                        right=right)


def up_geometry(up: Any) -> UpGeometry:
    """The geometry of a ``ConvTranspose1d`` of either framework (same attribute names)."""
    left, right = up.trim_for()
    if up.kernel_size < up.stride or right > up.kernel_size - up.stride:
        raise ValueError(f"ConvTranspose1d kernel {up.kernel_size} / stride {up.stride} / trim "
                         f"{right}: the right trim must fit in the overlap tail")
    return UpGeometry(kernel=up.kernel_size, stride=up.stride, trim_left=left, trim_right=right)


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """What one codec frame ``f`` reads, away from the ends of the sequence.

    ``encoder_left`` / ``encoder_right``: samples before the frame's first sample
    (``f * hop``) and after its last (``f * hop + hop - 1``) that its latent (and so its
    codes) depend on; ``encoder_right`` is the encoder's look-ahead in samples.
    ``decoder_left`` / ``decoder_right``: latent frames before and after ``f`` that the ``hop``
    samples of frame ``f`` depend on; ``decoder_right`` is the decoder's look-ahead in frames.
    """

    hop: int
    sample_rate: int
    encoder_left: int
    encoder_right: int
    decoder_left: int
    decoder_right: int

    @property
    def encoder_left_frames(self) -> int:
        """Whole frames of left context the encoder reads (``ceil(encoder_left / hop)``)."""
        return -(-self.encoder_left // self.hop)

    @property
    def encoder_right_frames(self) -> int:
        """Whole frames of look-ahead of the encoder (``ceil(encoder_right / hop)``)."""
        return -(-self.encoder_right // self.hop)

    @property
    def encoder_latency_ms(self) -> float:
        """The encoder's look-ahead in milliseconds of audio."""
        return 1000.0 * self.encoder_right / self.sample_rate

    @property
    def decoder_latency_ms(self) -> float:
        """The decoder's look-ahead (``decoder_right`` frames) in milliseconds of audio."""
        return 1000.0 * self.decoder_right * self.hop / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "encoder_left_frames": self.encoder_left_frames,
                "encoder_right_frames": self.encoder_right_frames,
                "encoder_latency_ms": round(self.encoder_latency_ms, 3),
                "decoder_latency_ms": round(self.decoder_latency_ms, 3)}


def receptive_field(encoder: tuple[Geometry, ...], decoder: tuple[Geometry, ...], *, hop: int,
                    sample_rate: int) -> ReceptiveField:
    """The :class:`ReceptiveField` of an encoder plan (samples -> frames) and a decoder plan
    (frames -> samples) with ``hop`` samples per frame. Frame 0 stands for every frame (the
    maps are shift-equivariant); negative indices are the context before it."""
    first, last = needs(encoder, 0, 0)
    lo, hi = needs(decoder, 0, hop - 1)
    return ReceptiveField(hop=hop, sample_rate=sample_rate, encoder_left=-first,
                          encoder_right=last - (hop - 1), decoder_left=-lo, decoder_right=hi)
