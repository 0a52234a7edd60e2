"""PyTorch mirror of :mod:`mlx_speech.audio.spectral` (same names, signatures and outputs).

Layouts are the project's, not torch.stft's: spectra are ``(B, frames, n_fft // 2 + 1)``
complex64 (time before frequency). Windows, filterbanks and the inverse window envelope come
from the numpy module :mod:`mlx_speech.audio.filters`, shared with the MLX side; this module
never imports mlx.
"""

from __future__ import annotations

import numpy as np
import torch

from mlx_speech.audio.filters import check_frame_args, inverse_envelope, mel_filterbank, padded_window
from mlx_speech.errors import AudioError, SpecError

__all__ = ["stft", "istft", "magnitude", "mel_spectrogram", "log_mel"]


def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 1:
        return x[None]
    if x.ndim == 2:
        return x
    raise AudioError(f"{name}: expected a waveform of shape (T,) or (B, T), got shape {tuple(x.shape)}")


def _pad(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """Pad (B, T) by ``pad`` samples on both sides of the last axis."""
    if pad == 0:
        return x
    if mode == "constant":
        return torch.nn.functional.pad(x, (pad, pad))
    if mode == "reflect":
        T = x.shape[-1]
        if T <= pad:
            raise AudioError(
                f"stft: signal of {T} samples is too short for reflect padding of {pad} "
                f"(needs > n_fft // 2 samples); use pad_mode='constant' or a smaller n_fft"
            )
        # reflect excludes the edge sample: [x3 x2 x1 | x0 x1 x2 x3 ... ]
        left = x[:, 1 : pad + 1].flip(-1)
        right = x[:, T - 1 - pad : T - 1].flip(-1)
        return torch.cat([left, x, right], dim=1)
    raise SpecError(f"stft: pad_mode must be 'reflect' or 'constant', got {mode!r}")


def _window(n_fft: int, win_length: int | None, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(padded_window(n_fft, win_length)).to(like.device)


def stft(
    x: torch.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
) -> torch.Tensor:
    """Short-time Fourier transform with a periodic Hann window.

    Args:
        x: ``(T,)`` or ``(B, T)`` real waveform.

    Returns:
        ``(B, frames, n_fft // 2 + 1)`` complex64 (``B = 1`` for 1-D input).
    """
    check_frame_args(n_fft, hop_length, win_length)
    x = _as_batch(torch.as_tensor(x), "stft").to(torch.float32)
    if center:
        x = _pad(x, n_fft // 2, pad_mode)
    if x.shape[-1] < n_fft:
        raise AudioError(f"stft: signal of {x.shape[-1]} samples is shorter than n_fft={n_fft} (center=False)")
    frames = x.unfold(-1, n_fft, hop_length)  # (B, frames, n_fft) view
    return torch.fft.rfft(frames * _window(n_fft, win_length, x), dim=-1)


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, N, L) frames -> (B, L + hop * (N - 1)) summed with frame t starting at t * hop."""
    B, N, L = frames.shape
    # fold is torch's col2im: it sums the (L, N) columns into a 1 x (L + hop (N - 1)) image.
    out = torch.nn.functional.fold(
        frames.transpose(1, 2), output_size=(1, L + hop * (N - 1)), kernel_size=(1, L), stride=(1, hop)
    )
    return out.reshape(B, -1)


def istft(
    spec: torch.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    center: bool = True,
    length: int | None = None,
) -> torch.Tensor:
    """Inverse of :func:`stft` by weighted overlap-add with window-square-sum normalisation.

    Args:
        spec: ``(B, frames, n_fft // 2 + 1)`` or ``(frames, n_fft // 2 + 1)`` complex.
        length: output length; default ``hop_length * (frames - 1)`` when ``center`` else
            ``n_fft + hop_length * (frames - 1)``. Shorter output is zero-padded.

    Returns:
        ``(B, T)`` float32, or ``(T,)`` for a 2-D ``spec``.
    """
    check_frame_args(n_fft, hop_length, win_length)
    squeeze = spec.ndim == 2
    if squeeze:
        spec = spec[None]
    if spec.ndim != 3 or spec.shape[-1] != n_fft // 2 + 1:
        raise AudioError(
            f"istft: expected (B, frames, {n_fft // 2 + 1}) for n_fft={n_fft}, got shape {tuple(spec.shape)}"
        )
    N = spec.shape[1]
    frames = torch.fft.irfft(spec, n=n_fft, dim=-1) * _window(n_fft, win_length, spec)
    y = _overlap_add(frames, hop_length)
    inv = inverse_envelope(N, n_fft=n_fft, hop_length=hop_length, win_length=win_length)
    y = y * torch.from_numpy(inv.copy()).to(y.device)

    start = n_fft // 2 if center else 0
    stop = y.shape[1] - (n_fft // 2 if center else 0) if length is None else start + int(length)
    y = y[:, start : min(stop, y.shape[1])]
    if length is not None and y.shape[1] < length:
        y = torch.nn.functional.pad(y, (0, int(length) - y.shape[1]))
    return y[0] if squeeze else y


def magnitude(spec: torch.Tensor) -> torch.Tensor:
    """``|spec|`` as float32, same shape as ``spec``."""
    return spec.abs()


def _power_spec(spec: torch.Tensor, power: float) -> torch.Tensor:
    if power == 1.0:
        return spec.abs()
    if power == 2.0:
        return spec.real * spec.real + spec.imag * spec.imag
    return spec.abs() ** power


def mel_spectrogram(
    x: torch.Tensor,
    *,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    power: float = 1.0,
    center: bool = True,
    pad_mode: str = "reflect",
    htk: bool = False,
    norm: str | float | None = "slaney",
) -> torch.Tensor:
    """Mel spectrogram ``|STFT(x)| ** power @ mel_filterbank.T``: ``(B, frames, n_mels)`` float32."""
    spec = stft(x, n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=center, pad_mode=pad_mode)
    fb = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max, htk=htk, norm=norm)
    return _power_spec(spec, power) @ torch.from_numpy(np.ascontiguousarray(fb.T)).to(spec.device)


def log_mel(
    x: torch.Tensor,
    *,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    power: float = 1.0,
    center: bool = True,
    pad_mode: str = "reflect",
    htk: bool = False,
    norm: str | float | None = "slaney",
    floor: float = 1e-5,
) -> torch.Tensor:
    """Natural-log mel spectrogram ``log(max(mel, floor))``: ``(B, frames, n_mels)`` float32."""
    mel = mel_spectrogram(
        x, sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
        n_mels=n_mels, f_min=f_min, f_max=f_max, power=power, center=center, pad_mode=pad_mode,
        htk=htk, norm=norm,
    )
    return torch.log(torch.clamp(mel, min=floor))
