"""The audio boundary of restoration (framework-free, shared by MLX and torch_ref): any mono
waveform at any supported rate -> float32 16 kHz numpy for the backbone, with one clear
:class:`~mlx_speech.errors.AudioError` line for what cannot be restored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlx_speech.errors import AudioError
from mlx_speech.models.miipher2.spec import BACKBONE_RATE
from mlx_speech.models.ssl.inputs import waveform_batch

MIN_SAMPLES = 800  # 50 ms at 16 kHz: a few backbone frames, below it there is nothing to restore


def input_16k(wav: Any, sample_rate: int, *, where: str = "restore") -> np.ndarray:
    """``(S,)`` or ``(1, S)`` float audio (numpy, MLX, CPU torch) at ``sample_rate`` -> ``(S',)``
    float32 at 16 kHz. Empty, NaN / Inf, multi-row or too short input is an AudioError."""
    if hasattr(wav, "detach"):  # a torch tensor (MLX arrays convert through the buffer protocol)
        wav = wav.detach().cpu().numpy()
    x = waveform_batch(wav, sample_rate, where=where)
    if x.shape[0] != 1:
        raise AudioError(f"{where}: expected mono audio (S,) or (1, S), got {x.shape[0]} rows")
    x = x[0]
    if x.size < MIN_SAMPLES:
        raise AudioError(f"{where}: {x.size / BACKBONE_RATE * 1000:.0f} ms of audio is too short "
                         f"to restore (need at least {MIN_SAMPLES * 1000 // BACKBONE_RATE} ms)")
    return np.ascontiguousarray(x, dtype=np.float32)
