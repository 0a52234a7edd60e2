"""The ``features(wav, layers=...)`` API shared by every SSL encoder, and its input checks.

Models implement ``hidden_states(inputs, upto=..., ...) -> list`` (index 0 = the input of the
first layer, ``i`` = the output of layer ``i``, as transformers' ``output_hidden_states``) and
``prepare(wav_16k) -> inputs``; this mixin handles the waveform boundary: numpy or MLX input,
``(T,)`` or ``(B, T)``, resampling to 16 kHz (soxr, :func:`mlx_speech.audio.io.resample`), layer
selection (only the layers up to the deepest requested one are run) and freezing (outputs carry
no gradient).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_speech.errors import AudioError
from mlx_speech.models.ssl.spec import SAMPLE_RATE


def as_waveform_batch(wav: Any, sample_rate: int) -> np.ndarray:
    """``(T,)`` / ``(B, T)`` numpy or MLX audio at ``sample_rate`` -> float32 ``(B, T)``, 16 kHz."""
    from mlx_speech.audio.io import _check_rate, resample  # noqa: PLC0415

    if isinstance(wav, mx.array):
        wav = np.array(wav.astype(mx.float32))
    try:
        x = np.asarray(wav, dtype=np.float32)
    except (TypeError, ValueError):
        raise AudioError(f"SSL features: audio must be a numeric array, "
                         f"got {type(wav).__name__}") from None
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise AudioError(f"SSL features: expected audio (T,) or (B, T), got shape {x.shape}")
    if x.shape[1] == 0 or x.shape[0] == 0:
        raise AudioError(f"SSL features: empty audio (shape {x.shape})")
    if not np.isfinite(x).all():
        raise AudioError("SSL features: audio contains NaN or Inf samples")
    sr = _check_rate(sample_rate, "SSL features")
    if sr != SAMPLE_RATE:
        x = resample(x, sr, SAMPLE_RATE)
    return np.ascontiguousarray(x, dtype=np.float32)


def resolve_layers(layers: int | Sequence[int] | None, num_states: int) -> list[int]:
    """Hidden-state indices (``0..num_states-1``; negatives count from the end) -> non-negative."""
    if layers is None:
        return list(range(num_states))
    if isinstance(layers, (int, np.integer)):
        layers = [int(layers)]
    if len(layers) == 0:
        raise ValueError("SSL features: no layers requested")
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ValueError(f"SSL features: layer indices must be ints, got {i!r}")
        if not -num_states <= i < num_states:
            raise ValueError(f"SSL features: layer {i} out of range; this model has hidden states "
                             f"0..{num_states - 1} (0 = input of the first layer)")
        out.append(int(i) % num_states)
    return out


class SSLFeatures:
    """Mixin: ``features()`` on top of ``hidden_states()`` / ``prepare()`` / ``num_layers``."""

    num_layers: int

    def prepare(self, wav: np.ndarray) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def hidden_states(self, *args: Any, upto: int | None = None, **kwargs: Any) -> list[mx.array]:
        raise NotImplementedError  # pragma: no cover - abstract

    def features(self, wav: Any, layers: int | Sequence[int] | None = None, *,
                 sample_rate: int = SAMPLE_RATE) -> list[mx.array]:
        """Hidden states ``(B, F, D)`` of the requested ``layers`` for waveform(s) ``wav``.

        ``wav``: ``(T,)`` or ``(B, T)`` float audio in [-1, 1] (numpy or MLX) at
        ``sample_rate`` (resampled to 16 kHz when different). ``layers``: indices into the
        ``num_layers + 1`` hidden states (0 = the input of the first layer, ``i`` = the output
        of layer ``i``; negatives count from the end; None = all). Returns one array per
        requested index, without gradient (the encoder is a frozen teacher here; call
        ``hidden_states`` directly where a loss needs gradients with respect to the audio).
        """
        idx = resolve_layers(layers, self.num_layers + 1)
        inputs = self.prepare(as_waveform_batch(wav, sample_rate))
        states = self.hidden_states(**inputs, upto=max(idx))
        out = [mx.stop_gradient(states[i]) for i in idx]
        mx.eval(out)
        return out
