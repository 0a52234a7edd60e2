"""The audio boundary of restoration (framework-free, shared by MLX and torch_ref): any mono
waveform at any supported rate -> float32 16 kHz numpy for the backbone, with one clear
:class:`~mlx_speech.errors.AudioError` line for what cannot be restored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlx_speech.errors import AudioError
from mlx_speech.models.miipher2.spec import BACKBONE_RATE

MIN_SAMPLES = 800  # 50 ms at 16 kHz: a few backbone frames, below it there is nothing to restore


def input_16k(wav: Any, sample_rate: int, *, where: str = "restore") -> np.ndarray:
    """``(S,)`` or ``(1, S)`` float audio (numpy, MLX, CPU torch) at ``sample_rate`` -> ``(S',)``
    float32 at 16 kHz. Empty, NaN / Inf, multi-row or too short input is an AudioError."""
    from mlx_speech.audio.io import _check_rate, resample  # noqa: PLC0415

    if type(wav).__module__.startswith("mlx"):
        wav = np.array(wav.astype(wav.dtype if "float" in str(wav.dtype) else "float32"))
    elif hasattr(wav, "detach"):
        wav = wav.detach().cpu().numpy()
    try:
        x = np.asarray(wav, dtype=np.float32)
    except (TypeError, ValueError):
        raise AudioError(f"{where}: audio must be a numeric array, got "
                         f"{type(wav).__name__}") from None
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise AudioError(f"{where}: expected mono audio (S,) or (1, S), got shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{where}: empty audio")
    if not np.isfinite(x).all():
        raise AudioError(f"{where}: audio contains NaN or Inf samples")
    sr = _check_rate(sample_rate, where)
    if sr != BACKBONE_RATE:
        x = resample(x, sr, BACKBONE_RATE)
    if x.size < MIN_SAMPLES:
        raise AudioError(f"{where}: {x.size / BACKBONE_RATE * 1000:.0f} ms of audio is too short "
                         f"to restore (need at least {MIN_SAMPLES * 1000 // BACKBONE_RATE} ms)")
    return np.ascontiguousarray(x, dtype=np.float32)
