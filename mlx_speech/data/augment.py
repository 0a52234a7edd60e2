"""Training-time augmentation drawn in numpy: SpecAugment masks, additive noise at an SNR.

Framework-neutral. The random draws happen here, from the trainer's checkpointed numpy
generator, so the MLX and torch_ref tasks apply identical masks / noise (each framework only
multiplies or adds the arrays).
"""

from __future__ import annotations

import numpy as np


def spec_augment_masks(rng: np.random.Generator, batch: int, frames: int, bins: int, *,
                       time_masks: int, time_width: int, freq_masks: int,
                       freq_width: int) -> tuple[np.ndarray, np.ndarray]:
    """SpecAugment keep-masks: ``time (B, frames)`` and ``freq (B, bins)``, float32 of 0/1.

    Each row gets ``time_masks`` spans of ``w ~ U{0..time_width}`` frames starting at
    ``U{0..frames - w}`` (and likewise ``freq_masks`` bands over the bins), set to 0. Apply as
    ``feats * time[:, :, None] * freq[:, None, :]`` on ``(B, frames, bins)`` features.
    """
    t_keep = np.ones((batch, frames), dtype=np.float32)
    f_keep = np.ones((batch, bins), dtype=np.float32)
    for keep, n_masks, width, size in ((t_keep, time_masks, time_width, frames),
                                       (f_keep, freq_masks, freq_width, bins)):
        for b in range(batch):
            for _ in range(n_masks):
                w = int(rng.integers(0, min(width, size) + 1))
                s = int(rng.integers(0, size - w + 1))
                keep[b, s:s + w] = 0.0
    return t_keep, f_keep


def white_noise_at_snr(rng: np.random.Generator, wav: np.ndarray, lengths: np.ndarray,
                       snr_db: tuple[float, float]) -> np.ndarray:
    """White Gaussian noise ``(B, T)`` float32 to add to ``wav`` for a per-row SNR drawn
    uniformly from ``snr_db`` (signal power measured over the row's valid samples; zero
    beyond ``lengths``)."""
    B, T = wav.shape
    snr = rng.uniform(snr_db[0], snr_db[1], size=B)
    noise = rng.standard_normal((B, T)).astype(np.float32)
    valid = np.arange(T)[None, :] < lengths[:, None]
    power = (np.square(wav) * valid).sum(axis=1) / np.maximum(lengths, 1)
    scale = np.sqrt(np.maximum(power, 1e-10) / 10.0 ** (snr / 10.0)).astype(np.float32)
    return noise * scale[:, None] * valid


def frame_lengths(lengths: np.ndarray, *, hop_length: int, center: bool, n_fft: int) -> np.ndarray:
    """Frames of each row's valid samples (``center=True``: ``1 + n // hop``)."""
    n = np.asarray(lengths, dtype=np.int64)
    if center:
        return (1 + n // hop_length).astype(np.int32)
    return np.maximum(0, 1 + (n - n_fft) // hop_length).astype(np.int32)
