"""The one check of a mono waveform argument (numpy only): degradations, restoration and the
restoration metrics all take ``(T,)`` audio and answer bad input the same way, with one
:class:`~mlx_speech.errors.AudioError` line that names the caller."""

from __future__ import annotations

import numpy as np

from mlx_speech.errors import AudioError


def mono(wav: object, where: str) -> np.ndarray:
    """``wav`` as a new finite float32 ``(T,)`` array, or an AudioError starting ``where:``."""
    try:
        x = np.asarray(wav)
    except (TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise AudioError(f"{where}: audio is not a numeric array ({reason})") from None
    if x.dtype.kind not in "iuf":
        raise AudioError(f"{where}: audio must be a numeric array, got dtype {x.dtype}")
    if x.ndim != 1:
        raise AudioError(f"{where}: expected mono audio, a 1-D array (T,), got shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{where}: audio is empty (0 samples)")
    if not np.isfinite(x).all():
        raise AudioError(f"{where}: audio contains NaN or Inf samples")
    with np.errstate(over="ignore"):
        x = np.array(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise AudioError(f"{where}: audio has samples too large for float32")
    return x
