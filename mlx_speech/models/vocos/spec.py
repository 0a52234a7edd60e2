"""Spec of the Vocos-style vocoder (Siuzdenko 2023): ConvNeXt backbone at the mel frame rate and
an inverse-STFT head, plus the head's fixed synthesis matrices (numpy, framework-free).

Why this design for our voices: every layer runs at the frame rate (86 frames/s at 22.05 kHz,
hop 256) rather than the sample rate, so a generator of HiFi-GAN V1's quality costs a small
fraction of its compute at synthesis time and per training step; the waveform comes out of an
inverse STFT whose magnitude and phase the network predicts.

Field names equal the constructor arguments of ``mlx_speech.models.vocos.model.VocosGenerator``
and its torch_ref twin. The inverse STFT is written as one matrix product per frame
(:func:`synthesis_basis`: the real inverse DFT of ``[Re, Im]`` with the synthesis window folded
in) and an overlap-add, identical in MLX and torch and differentiable in both, on any device.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class VocosSpec(Spec):
    """ConvNeXt backbone (``num_layers`` blocks of width ``dim``) + iSTFT head (``n_fft``, hop)."""

    n_mels: int = 80
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    kernel_size: int = 7
    n_fft: int = 1024
    hop_length: int = 256
    max_log_magnitude: float = 4.605170185988092  # log(100): Vocos clips the magnitude at 1e2

    def validate(self) -> None:
        w = type(self).__name__
        require(min(self.n_mels, self.dim, self.intermediate_dim, self.num_layers) > 0, w,
                "n_mels, dim, intermediate_dim and num_layers must be positive")
        require(self.kernel_size >= 1 and self.kernel_size % 2 == 1, w, "kernel_size must be odd")
        require(self.hop_length > 0 and self.n_fft % self.hop_length == 0 and self.n_fft % 2 == 0, w,
                f"n_fft {self.n_fft} must be even and a multiple of hop_length {self.hop_length}")
        require(self.n_fft >= 2 * self.hop_length, w, "n_fft must be >= 2 * hop_length (overlap-add)")

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def trim(self) -> int:
        """Samples dropped at each end of the overlap-add ("same" padding): T frames -> T * hop."""
        return (self.n_fft - self.hop_length) // 2


@VocosSpec.preset("base")
def vocos_base() -> VocosSpec:
    """The published Vocos mel model's backbone size (13.5 M parameters at 80 mels)."""
    return VocosSpec()


@VocosSpec.preset("small")
def vocos_small() -> VocosSpec:
    """The bundled voices' vocoder: 6 blocks of 256 (2.8 M parameters), trainable on a CPU."""
    return VocosSpec(dim=256, intermediate_dim=768, num_layers=6)


@VocosSpec.preset("tiny")
def vocos_tiny() -> VocosSpec:
    """Test size."""
    return VocosSpec(dim=32, intermediate_dim=64, num_layers=2)


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (torch's ``hann_window`` default)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float64)


@lru_cache(maxsize=8)
def synthesis_basis(n_fft: int) -> np.ndarray:
    """``(2 * (n_fft/2 + 1), n_fft)`` float32: ``[Re, Im] @ basis`` = ``irfft(Re + i Im) * window``.

    Row k of the real half is ``c_k cos(2 pi k n / N) / N``, of the imaginary half
    ``-c_k sin(2 pi k n / N) / N``, with ``c_k = 1`` at DC and Nyquist and 2 elsewhere (as
    ``irfft``, which ignores the imaginary parts of those two bins: their sine rows are 0)."""
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    c = np.full((n_fft // 2 + 1, 1), 2.0)
    c[0] = c[-1] = 1.0
    ang = 2 * np.pi * k * n / n_fft
    basis = np.concatenate([c * np.cos(ang), -c * np.sin(ang)], axis=0) / n_fft
    return (basis * hann(n_fft)[None, :]).astype(np.float32)


@lru_cache(maxsize=64)
def inverse_envelope(frames: int, n_fft: int, hop: int) -> np.ndarray:
    """``(frames * hop,)`` float32: 1 / (sum of the squared windows) over the trimmed output."""
    total = (frames - 1) * hop + n_fft
    env = np.zeros(total)
    w2 = hann(n_fft) ** 2
    for t in range(frames):
        env[t * hop:t * hop + n_fft] += w2
    trim = (n_fft - hop) // 2
    env = env[trim:trim + frames * hop]
    return (1.0 / np.maximum(env, 1e-11)).astype(np.float32)
