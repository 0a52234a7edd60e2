"""Audio: file I/O, STFT / iSTFT / mel, Griffin-Lim and quality metrics.

Submodules:

- :mod:`~mlx_speech.audio.io` (numpy + soundfile + soxr): ``load``, ``save``, ``info``, ``convert``.
- :mod:`~mlx_speech.audio.filters` (numpy): mel scales, ``mel_filterbank``, ``hann_window``.
- :mod:`~mlx_speech.audio.spectral` (MLX): ``stft``, ``istft``, ``magnitude``,
  ``mel_spectrogram``, ``log_mel``.
- :mod:`~mlx_speech.audio.griffinlim` (MLX): ``griffin_lim``, ``mel_to_linear``, ``mel_to_audio``.
- :mod:`~mlx_speech.audio.metrics` (numpy): ``snr``, ``si_sdr``, ``log_spectral_distance``,
  ``mel_distance``, ``spectral_convergence``, ``pesq_score``, ``stoi_score``.

Importing this package imports neither mlx nor soundfile: the names above are resolved on
first access (PEP 562), so torch_ref can use the numpy submodules without pulling in MLX.
"""

import importlib as _importlib

_EXPORTS = {
    "io": ("load", "save", "info", "convert"),
    "filters": ("hz_to_mel", "mel_to_hz", "mel_filterbank", "hann_window"),
    "spectral": ("stft", "istft", "magnitude", "mel_spectrogram", "log_mel"),
    "griffinlim": ("griffin_lim", "mel_to_linear", "mel_to_audio"),
    "metrics": (
        "snr", "si_sdr", "log_spectral_distance", "mel_distance", "spectral_convergence",
        "pesq_score", "stoi_score",
    ),
    "synth": ("speechlike",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mlx_speech.audio' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({n for n in globals() if not n.startswith("_")} | set(_WHERE))
