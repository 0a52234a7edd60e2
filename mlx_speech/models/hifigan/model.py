"""HiFi-GAN generator (Kong, Kim & Bae, 2020) in MLX: log-mel ``(B, T, n_mels)`` -> ``(B, T*hop)``.

Module tree (equal to the official generator's state dict, so its checkpoints map 1:1, see
``mlx_speech/models/hifigan/official.py``)::

    conv_pre                         Conv1d(n_mels -> C, k=7)
    ups.i                            ConvTranspose1d(C/2^i -> C/2^(i+1), k_i, stride u_i, pad (k_i-u_i)/2)
    resblocks.(i*K + j).convs1.m / convs2.m   ("1": dilated + plain conv pairs)
    resblocks.(i*K + j).convs.m               ("2": one dilated conv per dilation)
    conv_post                        Conv1d(C/2^n -> 1, k=7)

Weight norm is on every conv while training (``weight_g`` / ``weight_v``); fold it for
inference with :meth:`HiFiGANGenerator.remove_weight_norm`. Leaky ReLU slope 0.1 inside, and
the default 0.01 before ``conv_post`` as in the original; ``tanh`` output.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.conv import Conv1d, ConvTranspose1d
from mlx_speech.models.hifigan.spec import HiFiGANSpec

LRELU_SLOPE = 0.1


class ResBlock1(nn.Module):
    def __init__(self, *, channels: int, kernel_size: int, dilations: list[int], weight_norm: bool) -> None:
        super().__init__()
        conv = dict(in_channels=channels, out_channels=channels, kernel_size=kernel_size, padding="same",
                    weight_norm=weight_norm)
        self.convs1 = [Conv1d(dilation=d, **conv) for d in dilations]
        self.convs2 = [Conv1d(dilation=1, **conv) for _ in dilations]

    def __call__(self, x: mx.array) -> mx.array:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(nn.leaky_relu(c1(nn.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    def __init__(self, *, channels: int, kernel_size: int, dilations: list[int], weight_norm: bool) -> None:
        super().__init__()
        self.convs = [Conv1d(in_channels=channels, out_channels=channels, kernel_size=kernel_size,
                             dilation=d, padding="same", weight_norm=weight_norm) for d in dilations]

    def __call__(self, x: mx.array) -> mx.array:
        for c in self.convs:
            x = x + c(nn.leaky_relu(x, LRELU_SLOPE))
        return x


class HiFiGANGenerator(nn.Module):
    """See the module docstring; built as ``HiFiGANGenerator(spec)`` from a :class:`HiFiGANSpec`."""

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
        self.ups = [ConvTranspose1d(in_channels=C // 2**i, out_channels=C // 2**(i + 1), kernel_size=k,
                                    stride=u, padding=(k - u) // 2, weight_norm=spec.weight_norm)
                    for i, (u, k) in enumerate(zip(spec.upsample_rates, spec.upsample_kernel_sizes))]
        block = ResBlock1 if spec.resblock == "1" else ResBlock2
        self.resblocks = [block(channels=C // 2**(i + 1), kernel_size=k, dilations=list(d),
                                weight_norm=spec.weight_norm)
                          for i in range(len(self.ups))
                          for k, d in zip(spec.resblock_kernel_sizes, spec.resblock_dilation_sizes)]
        self.conv_post = Conv1d(in_channels=C // 2**len(self.ups), out_channels=1, kernel_size=7,
                                padding=3, weight_norm=spec.weight_norm)

    def __call__(self, mel: mx.array) -> mx.array:
        """``mel (B, T, n_mels)`` natural-log mel -> waveform ``(B, T * hop_length)``."""
        if mel.ndim != 3:
            raise ValueError(f"HiFi-GAN expects mel (B, T, n_mels), got shape {mel.shape}")
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(nn.leaky_relu(x, LRELU_SLOPE))
            acc = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                acc = acc + self.resblocks[i * self.num_kernels + j](x)
            x = acc / self.num_kernels
        x = self.conv_post(nn.leaky_relu(x, 0.01))
        return mx.tanh(x)[..., 0]

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights everywhere (exact)."""
        for _, m in self.named_modules():
            if isinstance(m, (Conv1d, ConvTranspose1d)):
                m.remove_weight_norm()


def build_hifigan(spec: HiFiGANSpec | None = None) -> HiFiGANGenerator:
    return HiFiGANGenerator(spec or HiFiGANSpec())
