"""BSQ-ViT's mel discriminator in MLX: a PatchGAN (pix2pix's ``NLayerDiscriminator``, Isola et
al., 2017, as taming-transformers' VQGAN uses it) over the tokenizer's log-mel.

The conv stack, its channel widths and map sizes are :class:`~mlx_speech.models.bsq_vit.gan_spec.PatchGANSpec`'s
(module docstring there). Mirrored in ``torch_ref.train.bsq_vit_discriminator`` with the same
attribute names, so the state-dict keys are equal::

    convs.0 .. convs.{layers}     Conv2d, each followed by LeakyReLU(slope)
    out                           Conv2d to one channel, no activation: the patch scores

No BatchNorm (pix2pix has it after every conv but the first and last): the BSQ-ViT trainer
scores real and reconstructed mels in ONE forward (concatenated along the batch), and batch
statistics would mix the two, letting the discriminator tell them apart by the batch they sit
in and making a sample's score depend on the rest of the batch. Weight norm (on by default)
takes BatchNorm's place as the conditioning of the convs; every conv keeps its bias.

Call, ``mel (B, T, n_mels)`` -> ``(scores, features)`` (the same input layout in torch_ref):

* the mel is one image of height ``T``, width ``n_mels``, one channel;
* ``scores (B, H', W')``: one real-vs-fake logit per patch, ``H' = spec.output_size(T)``,
  ``W' = spec.output_size(n_mels)``; the same array in both frameworks;
* ``features``: the ``layers + 1`` hidden activations (after each LeakyReLU, in order; the
  scores are not among them), channels-last ``(B, H_i, W_i, C_i)`` here and channels-first
  ``(B, C_i, H_i, W_i)`` in torch_ref (each framework's natural conv layout; the same numbers
  once permuted).

A mel smaller than ``spec.min_input_size()`` along either axis is an
:class:`~mlx_speech.errors.AudioError` (a ``ValueError``) naming that minimum.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.conv2d import Conv2d
from mlx_speech.models.bsq_vit.gan_spec import PADDING, PatchGANSpec

__all__ = ["PatchGANDiscriminator"]


class PatchGANDiscriminator(nn.Module):
    """PatchGAN on a mel batch: ``(B, T, n_mels)`` -> ``(scores (B, H', W'), features)``.

    ``spec`` defaults to the ``"default"`` preset and is validated here (a dataclass built
    directly is not).
    """

    def __init__(self, spec: PatchGANSpec | None = None) -> None:
        super().__init__()
        spec = spec or PatchGANSpec()
        spec.validate()
        self.spec = spec
        *hidden, (c_in, c_out, stride) = spec.conv_plan()
        self.convs = [Conv2d(in_channels=i, out_channels=o, kernel_size=spec.kernel, stride=s,
                             padding=PADDING, weight_norm=spec.weight_norm) for i, o, s in hidden]
        self.out = Conv2d(in_channels=c_in, out_channels=c_out, kernel_size=spec.kernel, stride=stride,
                          padding=PADDING, weight_norm=spec.weight_norm)

    def __call__(self, mel: mx.array) -> tuple[mx.array, list[mx.array]]:
        self.spec.check_input(tuple(mel.shape), type(self).__name__)
        h = mel[..., None]  # (B, T, n_mels, 1): one channel, channels-last
        features: list[mx.array] = []
        for conv in self.convs:
            h = nn.leaky_relu(conv(h), self.spec.slope)
            features.append(h)
        return self.out(h)[..., 0], features
