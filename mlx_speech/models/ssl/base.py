"""The ``features(wav, layers=...)`` API shared by every SSL encoder, and its input checks.

Models implement ``hidden_states(inputs, upto=..., ...) -> list`` (index 0 = the input of the
first layer, ``i`` = the output of layer ``i``, as transformers' ``output_hidden_states``) and
``prepare(wav_16k) -> inputs``; this mixin handles the waveform boundary: numpy or MLX input,
``(T,)`` or ``(B, T)``, resampling to 16 kHz (soxr, :func:`mlx_speech.audio.io.resample`), layer
selection (only the layers up to the deepest requested one are run) and freezing (outputs carry
no gradient). The numpy checks themselves live in :mod:`mlx_speech.models.ssl.inputs`, shared
with the torch_ref mirror.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_speech.models.ssl.inputs import resolve_layers, waveform_batch
from mlx_speech.models.ssl.spec import SAMPLE_RATE

__all__ = ["SSLFeatures", "as_waveform_batch", "resolve_layers"]


def as_waveform_batch(wav: Any, sample_rate: int) -> np.ndarray:
    """``(T,)`` / ``(B, T)`` numpy or MLX audio at ``sample_rate`` -> float32 ``(B, T)``, 16 kHz."""
    if isinstance(wav, mx.array):
        wav = np.array(wav.astype(mx.float32))
    return waveform_batch(wav, sample_rate)


class SSLFeatures:
    """Mixin: ``features()`` on top of ``hidden_states()`` / ``prepare()`` / ``num_layers``."""

    num_layers: int

    def prepare(self, wav: np.ndarray) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def hidden_states(self, *args: Any, upto: int | None = None,
                      adapters: Sequence[Any] | None = None, **kwargs: Any) -> list[mx.array]:
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
