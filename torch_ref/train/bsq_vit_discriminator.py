"""PyTorch mirror of :mod:`mlx_speech.train.bsq_vit_discriminator` (same names, state-dict
keys, scores; the module docstring there states the contract, including why there is no
BatchNorm).

The input is the same ``mel (B, T, n_mels)`` as the MLX side and the scores the same
``(B, H', W')``; the hidden features are channels-first ``(B, C_i, H_i, W_i)`` (the MLX side's
are channels-last). Parameters are :class:`torch_ref.layers.conv2d.Conv2d`'s: ``weight``
``(O, I, k, k)`` or ``weight_g (O, 1, 1, 1)`` + ``weight_v``. Never imports mlx.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.models.bsq_vit.gan_spec import PADDING, PatchGANSpec
from torch_ref.layers.conv2d import Conv2d

__all__ = ["PatchGANDiscriminator"]


class PatchGANDiscriminator(nn.Module):
    """PatchGAN on a mel batch: ``(B, T, n_mels)`` -> ``(scores (B, H', W'), features)``."""

    def __init__(self, spec: PatchGANSpec | None = None) -> None:
        super().__init__()
        spec = spec or PatchGANSpec()
        spec.validate()
        self.spec = spec
        *hidden, (c_in, c_out, stride) = spec.conv_plan()
        self.convs = nn.ModuleList(
            Conv2d(in_channels=i, out_channels=o, kernel_size=spec.kernel, stride=s, padding=PADDING,
                   weight_norm=spec.weight_norm) for i, o, s in hidden)
        self.out = Conv2d(in_channels=c_in, out_channels=c_out, kernel_size=spec.kernel, stride=stride,
                          padding=PADDING, weight_norm=spec.weight_norm)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.spec.check_input(tuple(mel.shape), type(self).__name__)
        h = mel[:, None]  # (B, 1, T, n_mels): one channel, channels-first
        features: list[torch.Tensor] = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), self.spec.slope)
            features.append(h)
        return self.out(h)[:, 0], features
