"""The ``features(wav, layers=...)`` API shared by every SSL encoder (torch mirror of
``mlx_speech/models/ssl/base.py``).

Models implement ``hidden_states(inputs, upto=..., adapters=..., ...) -> list`` (index 0 = the
input of the first layer, ``i`` = the output of layer ``i``) and ``prepare(wav_16k) -> inputs``;
this mixin handles the waveform boundary: numpy or torch input, ``(T,)`` or ``(B, T)``,
resampling to 16 kHz, layer selection (only the layers up to the deepest requested one run) and
freezing (outputs are computed without autograd). The checks are the framework-free ones of
:mod:`mlx_speech.models.ssl.inputs`, so both frameworks refuse bad input with the same message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlx_speech.models.ssl.inputs import resolve_layers, waveform_batch
from mlx_speech.models.ssl.spec import SAMPLE_RATE

__all__ = ["SSLFeatures", "as_waveform_batch", "resolve_layers"]


def as_waveform_batch(wav: Any, sample_rate: int) -> np.ndarray:
    """``(T,)`` / ``(B, T)`` numpy or torch audio at ``sample_rate`` -> float32 ``(B, T)`` at
    16 kHz."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().to("cpu", torch.float32).numpy()
    return waveform_batch(wav, sample_rate)


class SSLFeatures:
    """Mixin: ``features()`` on top of ``hidden_states()`` / ``prepare()`` / ``num_layers``."""

    num_layers: int

    def prepare(self, wav: np.ndarray) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def hidden_states(self, *args: Any, upto: int | None = None,
                      adapters: Sequence[Any] | None = None,
                      **kwargs: Any) -> list[torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _device(self) -> torch.device:
        """Where the model's weights are (its inputs are built there)."""
        for p in self.parameters():  # type: ignore[attr-defined]  (an nn.Module in practice)
            return p.device
        return torch.device("cpu")

    def features(self, wav: Any, layers: int | Sequence[int] | None = None, *,
                 sample_rate: int = SAMPLE_RATE) -> list[torch.Tensor]:
        """Hidden states ``(B, F, D)`` of the requested ``layers`` for waveform(s) ``wav``.

        ``wav``: ``(T,)`` or ``(B, T)`` float audio in [-1, 1] (numpy or torch) at
        ``sample_rate`` (resampled to 16 kHz when different). ``layers``: indices into the
        ``num_layers + 1`` hidden states (0 = the input of the first layer, ``i`` = the output
        of layer ``i``; negatives count from the end; None = all). Returns one tensor per
        requested index, computed without autograd (the encoder is a frozen teacher here; call
        ``hidden_states`` directly where a loss needs gradients with respect to the audio).
        """
        idx = resolve_layers(layers, self.num_layers + 1)
        inputs = self.prepare(as_waveform_batch(wav, sample_rate))
        with torch.no_grad():
            states = self.hidden_states(**inputs, upto=max(idx))
        return [states[i] for i in idx]
