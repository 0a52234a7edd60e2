"""Vocos-style vocoder in MLX: log-mel ``(B, T, n_mels)`` -> waveform ``(B, T * hop)``.

Module tree (the published Vocos layout's names; torch_ref mirrors it key for key)::

    backbone.embed                   Conv1d(n_mels -> dim, k)
    backbone.norm                    LayerNorm (eps 1e-6)
    backbone.convnext.i.dwconv       depthwise Conv1d(dim, k, groups=dim)
    backbone.convnext.i.norm         LayerNorm
    backbone.convnext.i.pwconv1/2    Linear(dim -> intermediate -> dim), GELU between
    backbone.convnext.i.gamma        layer scale (dim,), 1 / num_layers at init
    backbone.final_layer_norm        LayerNorm
    head.out                         Linear(dim -> n_fft + 2): log-magnitude and phase per bin

The head turns frame t's ``(log|S|, phase)`` into ``|S| (cos p + i sin p)`` (``|S|`` clipped at
``exp(max_log_magnitude)``), inverts it with the windowed real inverse DFT as one matrix product
(:func:`~mlx_speech.models.vocos.spec.synthesis_basis`), overlap-adds, divides by the summed
squared window and trims ``(n_fft - hop) / 2`` samples at each end ("same" padding), so T frames
give exactly ``T * hop`` samples, as HiFi-GAN's generator does.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import gelu
from mlx_speech.layers.conv import Conv1d
from mlx_speech.layers.linear import Linear
from mlx_speech.layers.norms import LayerNorm
from mlx_speech.models.vocos.spec import VocosSpec, inverse_envelope, synthesis_basis

INIT_STD = 0.02  # Vocos / ConvNeXt: truncated-normal weights, zero biases


class ConvNeXtBlock(nn.Module):
    def __init__(self, *, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = Conv1d(in_channels=dim, out_channels=dim, kernel_size=kernel_size, groups=dim,
                             padding="same")
        self.norm = LayerNorm(dim=dim, eps=1e-6)
        self.pwconv1 = Linear(dim, intermediate_dim)
        self.pwconv2 = Linear(intermediate_dim, dim)
        self.gamma = mx.full((dim,), layer_scale)

    def __call__(self, x: mx.array) -> mx.array:
        y = self.pwconv2(gelu(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.gamma * y


class Backbone(nn.Module):
    def __init__(self, spec: VocosSpec) -> None:
        super().__init__()
        self.embed = Conv1d(in_channels=spec.n_mels, out_channels=spec.dim, kernel_size=spec.kernel_size,
                            padding="same")
        self.norm = LayerNorm(dim=spec.dim, eps=1e-6)
        self.convnext = [ConvNeXtBlock(dim=spec.dim, intermediate_dim=spec.intermediate_dim,
                                       kernel_size=spec.kernel_size, layer_scale=1.0 / spec.num_layers)
                         for _ in range(spec.num_layers)]
        self.final_layer_norm = LayerNorm(dim=spec.dim, eps=1e-6)

    def __call__(self, mel: mx.array) -> mx.array:
        x = self.norm(self.embed(mel))
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x)


class ISTFTHead(nn.Module):
    def __init__(self, spec: VocosSpec) -> None:
        super().__init__()
        self.spec = spec
        self.out = Linear(spec.dim, spec.n_fft + 2)
        self._basis = mx.array(synthesis_basis(spec.n_fft))

    def __call__(self, x: mx.array) -> mx.array:
        s = self.spec
        B, T, _ = x.shape
        h = self.out(x).astype(mx.float32)
        log_mag, phase = h[..., :s.n_bins], h[..., s.n_bins:]
        mag = mx.exp(mx.minimum(log_mag, s.max_log_magnitude))
        spec = mx.concatenate([mag * mx.cos(phase), mag * mx.sin(phase)], axis=-1)
        frames = (spec @ self._basis).reshape(B, T, s.n_fft // s.hop_length, s.hop_length)
        r = s.n_fft // s.hop_length
        out = mx.pad(frames[:, :, 0], [(0, 0), (0, r - 1), (0, 0)])
        for j in range(1, r):
            out = out + mx.pad(frames[:, :, j], [(0, 0), (j, r - 1 - j), (0, 0)])
        wav = out.reshape(B, (T + r - 1) * s.hop_length)[:, s.trim:s.trim + T * s.hop_length]
        return wav * mx.array(inverse_envelope(T, s.n_fft, s.hop_length))


class VocosGenerator(nn.Module):
    """See the module docstring; built as ``VocosGenerator(spec)`` from a :class:`VocosSpec`."""

    def __init__(self, spec: VocosSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        self.hop_length = spec.hop_length
        self.backbone = Backbone(spec)
        self.head = ISTFTHead(spec)
        self._init_weights()

    def _init_weights(self) -> None:
        for _, m in self.named_modules():
            if isinstance(m, (Conv1d, nn.Linear)):
                m.weight = mx.random.truncated_normal(-2.0, 2.0, m.weight.shape) * INIT_STD
                m.bias = mx.zeros(m.bias.shape)

    def __call__(self, mel: mx.array) -> mx.array:
        """``mel (B, T, n_mels)`` natural-log mel -> waveform ``(B, T * hop_length)`` float32."""
        if mel.ndim != 3 or mel.shape[-1] != self.spec.n_mels:
            raise ValueError(f"Vocos expects mel (B, T, {self.spec.n_mels}), got shape {mel.shape}")
        return self.head(self.backbone(mel))

    def remove_weight_norm(self) -> None:
        """No weight norm here (the synthesis path calls this on every vocoder)."""


def build_vocos(spec: VocosSpec | None = None) -> VocosGenerator:
    return VocosGenerator(spec or VocosSpec())
