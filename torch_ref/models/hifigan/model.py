"""HiFi-GAN generator (torch mirror of ``mlx_speech/models/hifigan/model.py``; same names).

Boundary tensors as in MLX: ``mel (B, T, n_mels)`` -> ``(B, T * hop)``; inside ``(B, C, T)``.
With weight norm its state dict has the official generator's keys
(``conv_pre.weight_g``, ``ups.0.weight_v``, ``resblocks.3.convs1.2.bias`` ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.models.hifigan.spec import HiFiGANSpec
from torch_ref.layers.conv import Conv1d, ConvTranspose1d

LRELU_SLOPE = 0.1


class ResBlock1(nn.Module):
    def __init__(self, *, channels: int, kernel_size: int, dilations: list[int], weight_norm: bool) -> None:
        super().__init__()
        conv = dict(in_channels=channels, out_channels=channels, kernel_size=kernel_size, padding="same",
                    weight_norm=weight_norm)
        self.convs1 = nn.ModuleList(Conv1d(dilation=d, **conv) for d in dilations)
        self.convs2 = nn.ModuleList(Conv1d(dilation=1, **conv) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    def __init__(self, *, channels: int, kernel_size: int, dilations: list[int], weight_norm: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(Conv1d(in_channels=channels, out_channels=channels, kernel_size=kernel_size,
                                          dilation=d, padding="same", weight_norm=weight_norm)
                                   for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class HiFiGANGenerator(nn.Module):
    def __init__(self, spec: HiFiGANSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        self.num_kernels = len(spec.resblock_kernel_sizes)
        self.hop_length = 1
        for r in spec.upsample_rates:
            self.hop_length *= r
        C = spec.upsample_initial_channel
        self.conv_pre = Conv1d(in_channels=spec.n_mels, out_channels=C, kernel_size=7, padding=3,
                               weight_norm=spec.weight_norm)
        self.ups = nn.ModuleList(
            ConvTranspose1d(in_channels=C // 2**i, out_channels=C // 2**(i + 1), kernel_size=k, stride=u,
                            padding=(k - u) // 2, weight_norm=spec.weight_norm)
            for i, (u, k) in enumerate(zip(spec.upsample_rates, spec.upsample_kernel_sizes)))
        block = ResBlock1 if spec.resblock == "1" else ResBlock2
        self.resblocks = nn.ModuleList(
            block(channels=C // 2**(i + 1), kernel_size=k, dilations=list(d), weight_norm=spec.weight_norm)
            for i in range(len(self.ups)) for k, d in zip(spec.resblock_kernel_sizes, spec.resblock_dilation_sizes))
        self.conv_post = Conv1d(in_channels=C // 2**len(self.ups), out_channels=1, kernel_size=7,
                                padding=3, weight_norm=spec.weight_norm)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3:
            raise ValueError(f"HiFi-GAN expects mel (B, T, n_mels), got shape {tuple(mel.shape)}")
        x = self.conv_pre(mel.transpose(1, 2))
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            acc = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                acc = acc + self.resblocks[i * self.num_kernels + j](x)
            x = acc / self.num_kernels
        x = self.conv_post(F.leaky_relu(x, 0.01))
        return torch.tanh(x)[:, 0]

    def remove_weight_norm(self) -> None:
        for m in self.modules():
            if isinstance(m, (Conv1d, ConvTranspose1d)):
                m.remove_weight_norm()


def build_hifigan(spec: HiFiGANSpec | None = None) -> HiFiGANGenerator:
    return HiFiGANGenerator(spec or HiFiGANSpec())
