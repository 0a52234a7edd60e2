"""FastSpeech2-style acoustic model (torch mirror of ``mlx_speech/models/tts/fastspeech.py``).

Same class, attribute and parameter names as the MLX model (see its docstring for the
design). Tensors at the boundary are ``(B, N)`` / ``(B, T, n_mels)`` as in MLX; the shared
``Conv1d`` is ``(B, C, T)`` so the conv wrappers transpose around it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.models.tts.spec import FastSpeechSpec
from torch_ref.layers.attention import MultiHeadAttention
from torch_ref.layers.conv import Conv1d
from torch_ref.layers.norms import LayerNorm


def sequence_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def alignment_matrix(durations: torch.Tensor, T: int) -> torch.Tensor:
    ends = torch.cumsum(durations, dim=1)
    starts = ends - durations
    t = torch.arange(T, device=durations.device)[None, :, None]
    return ((t >= starts[:, None, :]) & (t < ends[:, None, :])).float()


def _conv(conv: Conv1d, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C')
    return conv(x.transpose(1, 2)).transpose(1, 2)


class ConvFFN(nn.Module):
    def __init__(self, *, dim: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = Conv1d(in_channels=dim, out_channels=hidden, kernel_size=kernel, padding="same")
        self.conv2 = Conv1d(in_channels=hidden, out_channels=dim, kernel_size=1, padding="same")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv(self.conv2, F.relu(_conv(self.conv1, x)))


class FFTBlock(nn.Module):
    def __init__(self, *, dim: int, num_heads: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim=dim)
        self.self_attn = MultiHeadAttention(dim=dim, num_heads=num_heads, bias=True, rope=True,
                                            causal=False)
        self.norm2 = LayerNorm(dim=dim)
        self.ffn = ConvFFN(dim=dim, hidden=hidden, kernel=kernel)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(x.dtype)
        x = x + self.self_attn(self.norm1(x), mask=mask)
        return (x + self.ffn(self.norm2(x) * m)) * m


class FFTStack(nn.Module):
    def __init__(self, *, num_layers: int, dim: int, num_heads: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(FFTBlock(dim=dim, num_heads=num_heads, hidden=hidden, kernel=kernel)
                                    for _ in range(num_layers))
        self.norm = LayerNorm(dim=dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) * mask[..., None].to(x.dtype)


class VariancePredictor(nn.Module):
    def __init__(self, *, dim: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = Conv1d(in_channels=dim, out_channels=hidden, kernel_size=kernel, padding="same")
        self.norm1 = LayerNorm(dim=hidden)
        self.conv2 = Conv1d(in_channels=hidden, out_channels=hidden, kernel_size=kernel, padding="same")
        self.norm2 = LayerNorm(dim=hidden)
        self.proj = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(x.dtype)
        h = self.norm1(F.relu(_conv(self.conv1, x * m)))
        h = self.norm2(F.relu(_conv(self.conv2, h * m)))
        return self.proj(h)[..., 0] * mask.to(x.dtype)


class Aligner(nn.Module):
    def __init__(self, *, dim: int, n_mels: int, hidden: int) -> None:
        super().__init__()
        self.text_conv1 = Conv1d(in_channels=dim, out_channels=2 * hidden, kernel_size=3, padding="same")
        self.text_conv2 = Conv1d(in_channels=2 * hidden, out_channels=hidden, kernel_size=1, padding="same")
        self.mel_conv1 = Conv1d(in_channels=n_mels, out_channels=2 * hidden, kernel_size=3, padding="same")
        self.mel_conv2 = Conv1d(in_channels=2 * hidden, out_channels=hidden, kernel_size=1, padding="same")

    def forward(self, text: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        k = _conv(self.text_conv2, F.relu(_conv(self.text_conv1, text)))
        q = _conv(self.mel_conv2, F.relu(_conv(self.mel_conv1, mel)))
        d = ((q * q).sum(-1)[:, :, None] - 2 * (q @ k.transpose(1, 2)) + (k * k).sum(-1)[:, None, :])
        return -0.0005 * d


class FastSpeech2(nn.Module):
    def __init__(self, spec: FastSpeechSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        self.n_mels, self.pitch_mean, self.pitch_std = spec.n_mels, spec.pitch_mean, spec.pitch_std
        self.embed = nn.Embedding(spec.n_symbols, spec.dim)
        self.speaker_embed = nn.Embedding(spec.n_speakers, spec.dim)
        self.language_embed = nn.Embedding(spec.n_languages, spec.dim)
        stack = dict(dim=spec.dim, num_heads=spec.num_heads, hidden=spec.ffn_dim, kernel=spec.ffn_kernel)
        self.encoder = FFTStack(num_layers=spec.encoder_layers, **stack)
        pred = dict(dim=spec.dim, hidden=spec.predictor_dim, kernel=spec.predictor_kernel)
        self.duration_predictor = VariancePredictor(**pred)
        self.pitch_predictor = VariancePredictor(**pred)
        self.energy_predictor = VariancePredictor(**pred)
        self.pitch_embed = Conv1d(in_channels=1, out_channels=spec.dim, kernel_size=3, padding="same")
        self.energy_embed = Conv1d(in_channels=1, out_channels=spec.dim, kernel_size=3, padding="same")
        self.decoder = FFTStack(num_layers=spec.decoder_layers, **stack)
        self.mel_proj = nn.Linear(spec.dim, spec.n_mels)
        if spec.aligner_dim > 0:
            self.aligner = Aligner(dim=spec.dim, n_mels=spec.n_mels, hidden=spec.aligner_dim)
        with torch.no_grad():
            self.embed.weight.mul_(spec.dim ** -0.5)

    def encode(self, ids, lengths, speaker, language):
        mask = sequence_mask(lengths, ids.shape[1])
        x = self.embed(ids) + self.language_embed(language)[:, None, :]
        h = self.encoder(x, mask)
        h = h + (self.speaker_embed(speaker) + self.language_embed(language))[:, None, :]
        return h * mask[..., None].to(h.dtype), mask

    def add_variance(self, h, pitch, energy):
        return h + _conv(self.pitch_embed, pitch[..., None]) + _conv(self.energy_embed, energy[..., None])

    def decode(self, h, durations, frames: int | None = None):
        total = durations.sum(1)
        T = int(total.max().item()) if frames is None else frames
        A = alignment_matrix(durations, max(T, 1))
        mask = sequence_mask(total, max(T, 1))
        y = self.decoder(A @ h, mask)
        return self.mel_proj(y) * mask[..., None].to(y.dtype), mask

    def alignment_scores(self, ids, lengths, mel, language):
        if not hasattr(self, "aligner"):
            raise ValueError("this model was built without an aligner (aligner_dim=0)")
        mask = sequence_mask(lengths, ids.shape[1])
        x = (self.embed(ids) + self.language_embed(language)[:, None, :]) * mask[..., None]
        return self.aligner(x, mel)

    def forward(self, ids, lengths, durations, pitch, energy, speaker, language, frames=None):
        h, pmask = self.encode(ids, lengths, speaker, language)
        out = {"log_duration": self.duration_predictor(h, pmask),
               "pitch": self.pitch_predictor(h, pmask),
               "energy": self.energy_predictor(h, pmask), "phone_mask": pmask}
        mel, fmask = self.decode(self.add_variance(h, pitch, energy), durations, frames)
        out.update(mel=mel, frame_mask=fmask)
        return out

    def predict_durations(self, h, mask, speed: float = 1.0):
        d = (torch.exp(self.duration_predictor(h, mask)) - 1.0) / speed
        return (torch.clamp(torch.round(d), min=0.0) * mask).to(torch.int32)

    @torch.no_grad()
    def synthesize(self, ids, lengths=None, speaker=None, language=None, *, speed: float = 1.0,
                   pitch_shift: float = 0.0, energy_scale: float = 1.0):
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        B, N = ids.shape
        lengths = torch.full((B,), N, dtype=torch.int32) if lengths is None else lengths
        speaker = torch.zeros((B,), dtype=torch.long) if speaker is None else speaker
        language = torch.zeros((B,), dtype=torch.long) if language is None else language
        h, mask = self.encode(ids, lengths, speaker, language)
        shift = pitch_shift * math.log(2.0) / 12.0 / self.pitch_std
        pitch = (self.pitch_predictor(h, mask) + shift) * mask
        energy = self.energy_predictor(h, mask) * energy_scale
        durations = self.predict_durations(h, mask, speed)
        mel, _ = self.decode(self.add_variance(h, pitch, energy), durations)
        return mel, durations


def build_fastspeech(spec: FastSpeechSpec | None = None) -> FastSpeech2:
    return FastSpeech2(spec or FastSpeechSpec())
