"""FastSpeech2-style acoustic model (MLX): phones -> durations, pitch, energy -> log-mel frames.

Module tree (identical names in ``torch_ref.models.tts.fastspeech``)::

    embed, speaker_embed, language_embed
    encoder.layers.N.{norm1, self_attn.{q,k,v,out}_proj, norm2, ffn.{conv1, conv2}}, encoder.norm
    duration_predictor / pitch_predictor / energy_predictor.{conv1, norm1, conv2, norm2, proj}
    pitch_embed, energy_embed            Conv1d(1 -> dim, k=3)
    decoder (as encoder), mel_proj
    aligner.{text_conv1, text_conv2, mel_conv1, mel_conv2}   (learned alignment, aligner_dim > 0)

Choices: pre-norm FFT blocks (self-attention with RoPE, so no positional table, + a
convolutional feed-forward); pitch and energy are phone-level (averaged over each phone's
frames, FastPitch style) and normalised (log-F0 by the voice's ``pitch_mean`` / ``pitch_std``);
durations are predicted as ``log(1 + frames)``. The length regulator is a 0/1 alignment matrix
times the phone features, so batches need no Python loop. The aligner scores every (frame,
phone) pair by negative squared distance between a text and a mel embedding; with a
beta-binomial prior it trains by the forward-sum loss and monotonic alignment search
(:mod:`mlx_speech.train.tts_align`) turns it into durations.

Tensors: ``ids (B, N)`` int32, ``durations (B, N)`` int32 frames, ``pitch / energy (B, N)``,
``mel (B, T, n_mels)``; ``speaker / language (B,)`` int32.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.attention import MultiHeadAttention
from mlx_speech.layers.conv import Conv1d
from mlx_speech.layers.norms import LayerNorm
from mlx_speech.models.tts.spec import FastSpeechSpec


def sequence_mask(lengths: mx.array, T: int) -> mx.array:
    """``(B,)`` lengths -> ``(B, T)`` bool, True on real steps."""
    return mx.arange(T)[None, :] < lengths[:, None]


def alignment_matrix(durations: mx.array, T: int) -> mx.array:
    """``(B, N)`` int durations -> ``(B, T, N)`` float 0/1: frame t belongs to phone n."""
    ends = mx.cumsum(durations, axis=1)
    starts = ends - durations
    t = mx.arange(T)[None, :, None]
    return ((t >= starts[:, None, :]) & (t < ends[:, None, :])).astype(mx.float32)


class ConvFFN(nn.Module):
    def __init__(self, *, dim: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = Conv1d(in_channels=dim, out_channels=hidden, kernel_size=kernel, padding="same")
        self.conv2 = Conv1d(in_channels=hidden, out_channels=dim, kernel_size=1, padding="same")

    def __call__(self, x: mx.array) -> mx.array:
        return self.conv2(nn.relu(self.conv1(x)))


class FFTBlock(nn.Module):
    """Pre-norm: ``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``; padded steps kept at zero."""

    def __init__(self, *, dim: int, num_heads: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim=dim)
        self.self_attn = MultiHeadAttention(dim=dim, num_heads=num_heads, bias=True, rope=True,
                                            causal=False)
        self.norm2 = LayerNorm(dim=dim)
        self.ffn = ConvFFN(dim=dim, hidden=hidden, kernel=kernel)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        m = mask[..., None].astype(x.dtype)
        x = x + self.self_attn(self.norm1(x), mask=mask)
        x = (x + self.ffn(self.norm2(x) * m)) * m
        return x


class FFTStack(nn.Module):
    def __init__(self, *, num_layers: int, dim: int, num_heads: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.layers = [FFTBlock(dim=dim, num_heads=num_heads, hidden=hidden, kernel=kernel)
                       for _ in range(num_layers)]
        self.norm = LayerNorm(dim=dim)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) * mask[..., None].astype(x.dtype)


class VariancePredictor(nn.Module):
    """Two conv + ReLU + LayerNorm layers and a linear head: ``(B, N, D) -> (B, N)``."""

    def __init__(self, *, dim: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = Conv1d(in_channels=dim, out_channels=hidden, kernel_size=kernel, padding="same")
        self.norm1 = LayerNorm(dim=hidden)
        self.conv2 = Conv1d(in_channels=hidden, out_channels=hidden, kernel_size=kernel, padding="same")
        self.norm2 = LayerNorm(dim=hidden)
        self.proj = nn.Linear(hidden, 1)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        m = mask[..., None].astype(x.dtype)
        h = self.norm1(nn.relu(self.conv1(x * m)))
        h = self.norm2(nn.relu(self.conv2(h * m)))
        return self.proj(h)[..., 0] * mask.astype(x.dtype)


class Aligner(nn.Module):
    """Soft alignment scores ``(B, T, N)``: ``-||text_n - mel_t||^2`` of two small conv encoders."""

    def __init__(self, *, dim: int, n_mels: int, hidden: int) -> None:
        super().__init__()
        self.text_conv1 = Conv1d(in_channels=dim, out_channels=2 * hidden, kernel_size=3, padding="same")
        self.text_conv2 = Conv1d(in_channels=2 * hidden, out_channels=hidden, kernel_size=1, padding="same")
        self.mel_conv1 = Conv1d(in_channels=n_mels, out_channels=2 * hidden, kernel_size=3, padding="same")
        self.mel_conv2 = Conv1d(in_channels=2 * hidden, out_channels=hidden, kernel_size=1, padding="same")

    def __call__(self, text: mx.array, mel: mx.array) -> mx.array:
        k = self.text_conv2(nn.relu(self.text_conv1(text)))          # (B, N, H)
        q = self.mel_conv2(nn.relu(self.mel_conv1(mel)))             # (B, T, H)
        d = (mx.sum(q * q, -1)[:, :, None] - 2 * (q @ k.transpose(0, 2, 1))
             + mx.sum(k * k, -1)[:, None, :])
        return -0.0005 * d


class FastSpeech2(nn.Module):
    """See the module docstring; built as ``FastSpeech2(spec)`` from a :class:`FastSpeechSpec`."""

    def __init__(self, spec: FastSpeechSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        self.n_mels, self.pitch_mean, self.pitch_std = spec.n_mels, spec.pitch_mean, spec.pitch_std
        self.n_speakers, self.n_languages, self.n_symbols = spec.n_speakers, spec.n_languages, spec.n_symbols
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
        self.embed.weight = self.embed.weight * (spec.dim ** -0.5)

    # --- pieces ---------------------------------------------------------------------------------
    def encode(self, ids: mx.array, lengths: mx.array, speaker: mx.array,
               language: mx.array) -> tuple[mx.array, mx.array]:
        """``(B, N)`` ids -> phone features ``(B, N, D)`` (with speaker/language) and mask."""
        mask = sequence_mask(lengths, ids.shape[1])
        x = self.embed(ids) + self.language_embed(language)[:, None, :]
        h = self.encoder(x, mask)
        h = h + (self.speaker_embed(speaker) + self.language_embed(language))[:, None, :]
        return h * mask[..., None].astype(h.dtype), mask

    def add_variance(self, h: mx.array, pitch: mx.array, energy: mx.array) -> mx.array:
        return h + self.pitch_embed(pitch[..., None]) + self.energy_embed(energy[..., None])

    def decode(self, h: mx.array, durations: mx.array, frames: int | None = None) -> tuple[mx.array, mx.array]:
        """Length-regulate ``h`` by ``durations`` and decode: ``(mel (B, T, M), frame mask)``."""
        total = mx.sum(durations, axis=1)
        T = int(mx.max(total).item()) if frames is None else frames
        A = alignment_matrix(durations, max(T, 1))
        mask = sequence_mask(total, max(T, 1))
        y = self.decoder(A @ h, mask)
        return self.mel_proj(y) * mask[..., None].astype(y.dtype), mask

    def alignment_scores(self, ids: mx.array, lengths: mx.array, mel: mx.array,
                         language: mx.array) -> mx.array:
        """Aligner scores ``(B, T, N)`` of phones vs mel frames (before the prior / softmax)."""
        if "aligner" not in self:
            raise ValueError("this model was built without an aligner (aligner_dim=0)")
        mask = sequence_mask(lengths, ids.shape[1])
        x = (self.embed(ids) + self.language_embed(language)[:, None, :]) * mask[..., None]
        return self.aligner(x, mel)

    # --- training and inference ---------------------------------------------------------------
    def __call__(self, ids: mx.array, lengths: mx.array, durations: mx.array, pitch: mx.array,
                 energy: mx.array, speaker: mx.array, language: mx.array,
                 frames: int | None = None) -> dict[str, mx.array]:
        """Teacher-forced pass (targets for durations / normalised pitch / energy).

        Returns ``mel (B, T, M)``, ``frame_mask (B, T)``, ``phone_mask (B, N)`` and the
        predictions ``log_duration``, ``pitch``, ``energy`` (each ``(B, N)``)."""
        h, pmask = self.encode(ids, lengths, speaker, language)
        out = {"log_duration": self.duration_predictor(h, pmask),
               "pitch": self.pitch_predictor(h, pmask),
               "energy": self.energy_predictor(h, pmask), "phone_mask": pmask}
        mel, fmask = self.decode(self.add_variance(h, pitch, energy), durations, frames)
        out.update(mel=mel, frame_mask=fmask)
        return out

    def predict_durations(self, h: mx.array, mask: mx.array, speed: float = 1.0) -> mx.array:
        """Frames per phone ``(B, N)`` int32 from the duration predictor, divided by ``speed``."""
        d = (mx.exp(self.duration_predictor(h, mask)) - 1.0) / speed
        d = mx.maximum(mx.round(d), 0.0) * mask
        return d.astype(mx.int32)

    def synthesize(self, ids: mx.array, lengths: mx.array | None = None, speaker: mx.array | None = None,
                   language: mx.array | None = None, *, speed: float = 1.0, pitch_shift: float = 0.0,
                   energy_scale: float = 1.0) -> tuple[mx.array, mx.array]:
        """Phones -> ``(mel (B, T, M), durations (B, N))``.

        ``speed`` > 1 speaks faster; ``pitch_shift`` in semitones; ``energy_scale`` multiplies
        the predicted (normalised) energy around its mean."""
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        B, N = ids.shape
        lengths = mx.full((B,), N, dtype=mx.int32) if lengths is None else lengths
        speaker = mx.zeros((B,), dtype=mx.int32) if speaker is None else speaker
        language = mx.zeros((B,), dtype=mx.int32) if language is None else language
        h, mask = self.encode(ids, lengths, speaker, language)
        shift = pitch_shift * math.log(2.0) / 12.0 / self.pitch_std
        pitch = (self.pitch_predictor(h, mask) + shift) * mask
        energy = self.energy_predictor(h, mask) * energy_scale
        durations = self.predict_durations(h, mask, speed)
        mel, _ = self.decode(self.add_variance(h, pitch, energy), durations)
        return mel, durations


def build_fastspeech(spec: FastSpeechSpec | None = None) -> FastSpeech2:
    return FastSpeech2(spec or FastSpeechSpec())
