"""Input checks of the SSL encoders' public API, shared by MLX and torch_ref (numpy only).

Both frameworks convert their own array types to numpy first and then call these, so a bad
waveform, layer index or adapter list gives the same one-line error in either framework:

* :func:`waveform_batch`: ``(T,)`` / ``(B, T)`` float audio at any supported rate -> float32
  ``(B, T)`` at 16 kHz (soxr resampling, :func:`mlx_speech.audio.io.resample`);
* :func:`resolve_layers`: hidden-state indices (negatives count from the end) -> non-negative;
* :func:`normalize_waveform`: the wav2vec 2.0 feature extractor's per-utterance normalisation;
* :func:`layer_adapters`: the ``adapters=`` argument of ``hidden_states`` -> one entry per layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from mlx_speech.errors import AudioError
from mlx_speech.models.ssl.spec import SAMPLE_RATE


def waveform_batch(wav: Any, sample_rate: int, *, where: str = "SSL features") -> np.ndarray:
    """``(T,)`` / ``(B, T)`` numeric audio at ``sample_rate`` -> float32 ``(B, T)``, 16 kHz;
    an AudioError starting ``where:`` for anything else."""
    from mlx_speech.audio.io import _check_rate, resample  # noqa: PLC0415

    try:
        x = np.asarray(wav, dtype=np.float32)
    except (TypeError, ValueError):
        raise AudioError(f"{where}: audio must be a numeric array, "
                         f"got {type(wav).__name__}") from None
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise AudioError(f"{where}: expected audio (T,) or (B, T), got shape {x.shape}")
    if x.shape[1] == 0 or x.shape[0] == 0:
        raise AudioError(f"{where}: empty audio (shape {x.shape})")
    if not np.isfinite(x).all():
        raise AudioError(f"{where}: audio contains NaN or Inf samples")
    sr = _check_rate(sample_rate, where)
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


def normalize_waveform(wav: np.ndarray) -> np.ndarray:
    """Per row ``(x - mean) / sqrt(var + 1e-7)`` in float32 (wav2vec 2.0's ``do_normalize``)."""
    out = (wav - wav.mean(axis=1, keepdims=True)) / np.sqrt(wav.var(axis=1, keepdims=True) + 1e-7)
    return out.astype(np.float32)


def layer_adapters(adapters: Iterable[Callable[[Any], Any] | None] | None,
                   num_layers: int) -> list[Callable[[Any], Any] | None]:
    """``adapters`` -> exactly ``num_layers`` entries (None = no adapter beside that layer).

    The encoders run ``x_next = layer_i(x) + adapters[i](x)``: each adapter reads the input of
    its layer and its output is added to the layer's output (a parallel adapter, as Miipher-2
    inserts beside a frozen backbone). A shorter sequence leaves the deeper layers without one.
    """
    if adapters is None:
        return [None] * num_layers
    try:  # a list, a tuple, a torch nn.ModuleList (not a collections.abc.Sequence) ...
        if isinstance(adapters, (str, bytes, dict)):
            raise TypeError
        adapters = list(adapters)
    except TypeError:
        raise TypeError(f"SSL hidden_states: adapters must be a sequence of callables or None, "
                        f"got {type(adapters).__name__}") from None
    if len(adapters) > num_layers:
        raise ValueError(f"SSL hidden_states: {len(adapters)} adapters for {num_layers} layers")
    for i, a in enumerate(adapters):
        if a is not None and not callable(a):
            raise TypeError(f"SSL hidden_states: adapters[{i}] is not callable "
                            f"({type(a).__name__})")
    return [*adapters, *([None] * (num_layers - len(adapters)))]
