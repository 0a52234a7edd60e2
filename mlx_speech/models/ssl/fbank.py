"""w2v-BERT 2.0's front end in MLX: 80-bin Kaldi log-mel filterbank, normalised, stacked to 160-d.

It reproduces transformers' ``SeamlessM4TFeatureExtractor`` (the ``preprocessor_config.json`` of
facebook/w2v-bert-2.0) step by step, per utterance:

1. scale to 16-bit integer range (``* 32768``), frames of 400 samples every 160 (25 / 10 ms, no
   centring: ``1 + (N - 400) // 160`` frames);
2. per frame: remove the DC offset, pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]`` with
   ``y[0] = 0.03 x[0]``, Povey window (``hann(400, symmetric) ** 0.85``);
3. ``|rfft(frame, 512)|^2``, an 80-filter bank on the Kaldi mel scale (``1127 ln(1 + f/700)``,
   20 Hz .. 8 kHz, triangles in mel space, no area normalisation), floor ``1.1920929e-07``,
   natural log;
4. each mel bin normalised over the utterance's frames: ``(x - mean) / sqrt(var + 1e-7)`` with
   the unbiased (``ddof=1``) variance;
5. batching pads with zeros to the longest utterance and to an even frame count; groups of
   ``stride`` (2) frames are stacked into 160-d vectors; a stacked frame is valid where frame
   ``index % stride == 1`` (its second) is real, so an odd-length utterance's last stacked
   frame is masked, as upstream.

The filterbank, window, constants and batch layout are numpy
(:mod:`mlx_speech.models.ssl.tables`, shared with torch_ref). Upstream computes steps 1-3 in
float64 numpy; this is float32 MLX (FFT included), which agrees to ~1e-4 after normalisation
on speech (tested); the model's hidden states are compared on the same features.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import numpy as np

from mlx_speech.models.ssl.tables import (FFT_LENGTH, FRAME_LENGTH, HOP_LENGTH, INT16_SCALE,
                                          MEL_FLOOR, NORM_EPS, PREEMPHASIS, fbank_batch_layout,
                                          fbank_frames, kaldi_mel, kaldi_mel_filters,
                                          povey_window)

__all__ = ["FFT_LENGTH", "FRAME_LENGTH", "HOP_LENGTH", "INT16_SCALE", "KaldiFbank", "MEL_FLOOR",
           "NORM_EPS", "PREEMPHASIS", "kaldi_mel", "kaldi_mel_filters", "povey_window"]


class KaldiFbank:
    """Log-mel filterbank ``(T,)`` -> ``(F, num_mel_bins)`` and the stacked, padded batch."""

    def __init__(self, *, num_mel_bins: int = 80, stride: int = 2,
                 sample_rate: int = 16000) -> None:
        self.num_mel_bins, self.stride, self.sample_rate = num_mel_bins, stride, sample_rate
        self._filters = mx.array(kaldi_mel_filters(num_mel_bins=num_mel_bins,
                                                   sample_rate=sample_rate).astype(np.float32))
        self._window = mx.array(povey_window().astype(np.float32))

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return fbank_frames(num_samples)

    def log_mel(self, wav: mx.array) -> mx.array:
        """``(B, N)`` float waveform(s) in [-1, 1] -> ``(B, F, num_mel_bins)`` log-mel (float32)."""
        F = self.num_frames(wav.shape[-1])
        if F == 0:
            raise ValueError(f"fbank: need at least {FRAME_LENGTH} samples, got {wav.shape[-1]}")
        x = wav.astype(mx.float32) * INT16_SCALE
        idx = mx.arange(F)[:, None] * HOP_LENGTH + mx.arange(FRAME_LENGTH)[None, :]
        frames = x[:, idx]  # (B, F, 400)
        frames = frames - mx.mean(frames, axis=-1, keepdims=True)
        frames = mx.concatenate([frames[..., :1] * (1.0 - PREEMPHASIS),
                                 frames[..., 1:] - PREEMPHASIS * frames[..., :-1]], axis=-1)
        spec = mx.fft.rfft(frames * self._window, n=FFT_LENGTH)
        power = mx.real(spec) ** 2 + mx.imag(spec) ** 2
        return mx.log(mx.maximum(power @ self._filters, MEL_FLOOR))

    @staticmethod
    def normalize(feats: mx.array) -> mx.array:
        """Per mel bin over the frames, unbiased variance: ``(B, F, M)`` -> ``(B, F, M)``."""
        mean = mx.mean(feats, axis=1, keepdims=True)
        var = mx.var(feats, axis=1, keepdims=True, ddof=1)
        return (feats - mean) / mx.sqrt(var + NORM_EPS)

    def __call__(self, wavs: Sequence[np.ndarray] | np.ndarray | mx.array
                 ) -> tuple[mx.array, mx.array]:
        """Waveform(s) -> ``(input_features (B, F', M * stride), mask (B, F') bool)``.

        ``wavs``: ``(T,)``, ``(B, T)`` or a list of ``(T_b,)`` arrays of different lengths.
        """
        if isinstance(wavs, (np.ndarray, mx.array)) and wavs.ndim in (1, 2):
            rows = [wavs] if wavs.ndim == 1 else [wavs[b] for b in range(wavs.shape[0])]
        else:
            rows = list(wavs)
        feats = []
        for row in rows:
            row = row if isinstance(row, mx.array) else mx.array(np.asarray(row, np.float32))
            feats.append(self.normalize(self.log_mel(row[None]))[0])
        padded_len, total, mask = fbank_batch_layout([f.shape[0] for f in feats], self.stride)
        padded = mx.stack([mx.pad(f, [(0, padded_len - f.shape[0]), (0, 0)])[:total]
                           for f in feats])
        B = padded.shape[0]
        stacked = padded.reshape(B, total // self.stride, self.num_mel_bins * self.stride)
        return stacked, mx.array(mask)
