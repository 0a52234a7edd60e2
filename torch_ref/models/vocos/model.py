"""Vocos-style vocoder (torch mirror of ``mlx_speech/models/vocos/model.py``; same names).

Boundary tensors as in MLX: ``mel (B, T, n_mels)`` -> ``(B, T * hop)``; the convolutions run
channels-first inside. The inverse STFT is the same matrix product + overlap-add as MLX's (not
``torch.istft``), so both frameworks compute the same sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.models.vocos.spec import VocosSpec, inverse_envelope, synthesis_basis
from torch_ref.layers.conv import Conv1d
from torch_ref.layers.norms import LayerNorm

INIT_STD = 0.02


class ConvNeXtBlock(nn.Module):
    def __init__(self, *, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = Conv1d(in_channels=dim, out_channels=dim, kernel_size=kernel_size, groups=dim,
                             padding="same")
        self.norm = LayerNorm(dim=dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T, dim)``."""
        y = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + self.gamma * y


class Backbone(nn.Module):
    def __init__(self, spec: VocosSpec) -> None:
        super().__init__()
        self.embed = Conv1d(in_channels=spec.n_mels, out_channels=spec.dim, kernel_size=spec.kernel_size,
                            padding="same")
        self.norm = LayerNorm(dim=spec.dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(dim=spec.dim, intermediate_dim=spec.intermediate_dim, kernel_size=spec.kernel_size,
                          layer_scale=1.0 / spec.num_layers) for _ in range(spec.num_layers))
        self.final_layer_norm = LayerNorm(dim=spec.dim, eps=1e-6)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(mel.transpose(1, 2)).transpose(1, 2))
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x)


class ISTFTHead(nn.Module):
    def __init__(self, spec: VocosSpec) -> None:
        super().__init__()
        self.spec = spec
        self.out = nn.Linear(spec.dim, spec.n_fft + 2)
        self.register_buffer("basis", torch.from_numpy(synthesis_basis(spec.n_fft).copy()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        B, T, _ = x.shape
        h = self.out(x).float()
        log_mag, phase = h[..., :s.n_bins], h[..., s.n_bins:]
        mag = torch.exp(torch.clamp(log_mag, max=s.max_log_magnitude))
        spec = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=-1)
        r = s.n_fft // s.hop_length
        frames = (spec @ self.basis).reshape(B, T, r, s.hop_length)
        out = F.pad(frames[:, :, 0], (0, 0, 0, r - 1))
        for j in range(1, r):
            out = out + F.pad(frames[:, :, j], (0, 0, j, r - 1 - j))
        wav = out.reshape(B, (T + r - 1) * s.hop_length)[:, s.trim:s.trim + T * s.hop_length]
        env = torch.from_numpy(inverse_envelope(T, s.n_fft, s.hop_length)).to(wav.device)
        return wav * env


class VocosGenerator(nn.Module):
    """See the MLX twin; built as ``VocosGenerator(spec)``."""

    def __init__(self, spec: VocosSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        self.hop_length = spec.hop_length
        self.backbone = Backbone(spec)
        self.head = ISTFTHead(spec)
        for m in self.modules():
            if isinstance(m, (Conv1d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
                nn.init.zeros_(m.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.ndim != 3 or mel.shape[-1] != self.spec.n_mels:
            raise ValueError(f"Vocos expects mel (B, T, {self.spec.n_mels}), got shape {tuple(mel.shape)}")
        return self.head(self.backbone(mel))

    def remove_weight_norm(self) -> None:
        """No weight norm here."""
