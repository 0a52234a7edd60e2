"""w2v-BERT 2.0's front end in torch: 80-bin Kaldi log-mel filterbank, normalised, stacked to
160-d (mirror of ``mlx_speech/models/ssl/fbank.py``; see its docstring for the five steps of
transformers' ``SeamlessM4TFeatureExtractor`` it reproduces).

The filterbank, the Povey window, the constants and the batch padding / stacking layout are the
framework-free ones of :mod:`mlx_speech.models.ssl.tables`; the per-utterance maths is float32
torch (``torch.fft.rfft``), as the MLX side computes it in float32 MLX, so the two agree to
float32 rounding while both sit ~1e-4 from upstream's float64 numpy after normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mlx_speech.models.ssl.tables import (FFT_LENGTH, FRAME_LENGTH, HOP_LENGTH, INT16_SCALE,
                                          MEL_FLOOR, NORM_EPS, PREEMPHASIS, fbank_batch_layout,
                                          fbank_frames, kaldi_mel_filters, povey_window)

__all__ = ["KaldiFbank"]


class KaldiFbank:
    """Log-mel filterbank ``(T,)`` -> ``(F, num_mel_bins)`` and the stacked, padded batch.

    Not an ``nn.Module``: it has no weights (its tables are constants), as on the MLX side.
    """

    def __init__(self, *, num_mel_bins: int = 80, stride: int = 2,
                 sample_rate: int = 16000) -> None:
        self.num_mel_bins, self.stride, self.sample_rate = num_mel_bins, stride, sample_rate
        self._filters = torch.from_numpy(kaldi_mel_filters(
            num_mel_bins=num_mel_bins, sample_rate=sample_rate).astype(np.float32))
        self._window = torch.from_numpy(povey_window().astype(np.float32))

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return fbank_frames(num_samples)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` float waveform(s) in [-1, 1] -> ``(B, F, num_mel_bins)`` log-mel (float32)."""
        if self.num_frames(wav.shape[-1]) == 0:
            raise ValueError(f"fbank: need at least {FRAME_LENGTH} samples, got {wav.shape[-1]}")
        x = wav.to(torch.float32) * INT16_SCALE
        frames = x.unfold(-1, FRAME_LENGTH, HOP_LENGTH)  # (B, F, 400)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        frames = torch.cat([frames[..., :1] * (1.0 - PREEMPHASIS),
                            frames[..., 1:] - PREEMPHASIS * frames[..., :-1]], dim=-1)
        spec = torch.fft.rfft(frames * self._window.to(frames.device), n=FFT_LENGTH)
        power = spec.real ** 2 + spec.imag ** 2
        return torch.log(torch.clamp(power @ self._filters.to(power.device), min=MEL_FLOOR))

    @staticmethod
    def normalize(feats: torch.Tensor) -> torch.Tensor:
        """Per mel bin over the frames, unbiased variance: ``(B, F, M)`` -> ``(B, F, M)``."""
        mean = feats.mean(dim=1, keepdim=True)
        var = feats.var(dim=1, keepdim=True, correction=1)
        return (feats - mean) / torch.sqrt(var + NORM_EPS)

    def __call__(self, wavs: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveform(s) -> ``(input_features (B, F', M * stride), mask (B, F') bool)``.

        ``wavs``: ``(T,)``, ``(B, T)`` or a list of ``(T_b,)`` arrays of different lengths;
        numpy rows are computed on ``device`` (default CPU).
        """
        if isinstance(wavs, (np.ndarray, torch.Tensor)) and wavs.ndim in (1, 2):
            rows = [wavs] if wavs.ndim == 1 else [wavs[b] for b in range(wavs.shape[0])]
        else:
            rows = list(wavs)
        feats = []
        for row in rows:
            if not isinstance(row, torch.Tensor):
                row = torch.from_numpy(np.asarray(row, np.float32)).to(device or "cpu")
            feats.append(self.normalize(self.log_mel(row[None]))[0])
        padded_len, total, mask = fbank_batch_layout([f.shape[0] for f in feats], self.stride)
        padded = torch.stack([torch.nn.functional.pad(f, (0, 0, 0, padded_len - f.shape[0]))[:total]
                              for f in feats])
        B = padded.shape[0]
        stacked = padded.reshape(B, total // self.stride, self.num_mel_bins * self.stride)
        return stacked, torch.from_numpy(mask).to(stacked.device)
