"""PyTorch mirror of :mod:`mlx_speech.audio` DSP: STFT / iSTFT / mel and Griffin-Lim.

Same function names and keyword signatures as the MLX side, torch tensors in and out. File
I/O, filters and metrics are numpy and shared: use :mod:`mlx_speech.audio.io`,
:mod:`mlx_speech.audio.filters` and :mod:`mlx_speech.audio.metrics` directly (none imports mlx).
"""

from torch_ref.audio.griffinlim import griffin_lim, mel_to_audio, mel_to_linear
from torch_ref.audio.spectral import istft, log_mel, magnitude, mel_spectrogram, stft

__all__ = ["stft", "istft", "magnitude", "mel_spectrogram", "log_mel", "griffin_lim", "mel_to_linear", "mel_to_audio"]
