"""Deterministic synthetic test signals (numpy only): no downloads, no TTS engine needed."""

from __future__ import annotations

import numpy as np


def speechlike(sr: int = 16000, seconds: float = 1.0, f0: float = 120.0, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like signal: a glottal pulse train with moving formants plus noise."""
    r = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0_t = f0 * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0_t) / sr
    x = np.zeros_like(t)
    for h in range(1, 30):
        fh = h * f0_t
        amp = np.exp(-((fh - 700 - 300 * np.sin(2 * np.pi * 2 * t)) ** 2) / (2 * 300**2))
        amp += 0.5 * np.exp(-((fh - 1800) ** 2) / (2 * 400**2)) + 0.05
        x += np.where(fh < sr / 2, amp * np.sin(h * phase) / h, 0)
    x += 0.01 * r.standard_normal(t.shape)
    env = 0.5 * (1 - np.cos(2 * np.pi * np.minimum(t / 0.05, 1) / 2))
    return (0.5 * x / np.abs(x).max() * env).astype(np.float32)
