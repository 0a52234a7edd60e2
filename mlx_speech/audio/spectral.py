"""STFT, inverse STFT and mel spectrograms in MLX.

Conventions (shared with ``torch_ref.audio.spectral`` and matching librosa / torch.stft):

- Waveforms are ``(T,)`` or ``(B, T)`` float32; spectra are ``(B, frames, n_fft // 2 + 1)``
  complex64, i.e. features are ``(B, F, D)`` with time before frequency (librosa and torch put
  frequency first).
- The analysis window is a periodic Hann of ``win_length`` zero-padded, centred, to ``n_fft``.
- ``center=True`` pads ``n_fft // 2`` samples on both sides so frame ``t`` is centred on
  sample ``t * hop_length``; ``frames = 1 + (T_padded - n_fft) // hop_length``.
- The inverse divides the overlap-added frames by the overlap-added squared window, so
  ``istft(stft(x)) == x`` wherever that sum is non-zero.
- Spectra are unnormalised: ``X[k] = sum_n w[n] x[n] exp(-2 pi i k n / n_fft)``.
"""

from __future__ import annotations

import numpy as np
import mlx.core as mx

from mlx_speech.audio.filters import check_frame_args, inverse_envelope, mel_filterbank, padded_window
from mlx_speech.errors import AudioError, SpecError

__all__ = ["stft", "istft", "magnitude", "mel_spectrogram", "log_mel"]

def _as_batch(x: mx.array, name: str) -> tuple[mx.array, bool]:
    if x.ndim == 1:
        return x[None], True
    if x.ndim == 2:
        return x, False
    raise AudioError(f"{name}: expected a waveform of shape (T,) or (B, T), got shape {tuple(x.shape)}")


def _pad(x: mx.array, pad: int, mode: str) -> mx.array:
    """Pad (B, T) by ``pad`` samples on both sides of the last axis."""
    if pad == 0:
        return x
    if mode == "constant":
        return mx.pad(x, [(0, 0), (pad, pad)])
    if mode == "reflect":
        T = x.shape[-1]
        if T <= pad:
            raise AudioError(
                f"stft: signal of {T} samples is too short for reflect padding of {pad} "
                f"(needs > n_fft // 2 samples); use pad_mode='constant' or a smaller n_fft"
            )
        # reflect excludes the edge sample: [x3 x2 x1 | x0 x1 x2 x3 ... ]
        left = x[:, pad:0:-1]
        right = x[:, T - 2 : T - 2 - pad : -1] if T - 2 - pad >= 0 else x[:, T - 2 :: -1]
        return mx.concatenate([left, x, right], axis=1)
    raise SpecError(f"stft: pad_mode must be 'reflect' or 'constant', got {mode!r}")


def stft(
    x: mx.array,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
) -> mx.array:
    """Short-time Fourier transform with a periodic Hann window.

    Args:
        x: ``(T,)`` or ``(B, T)`` real waveform.
        n_fft: FFT size. hop_length: frame step. win_length: Hann length (<= n_fft).
        center: pad ``n_fft // 2`` on both sides (``pad_mode`` "reflect" or "constant").

    Returns:
        ``(B, frames, n_fft // 2 + 1)`` complex64 (``B = 1`` for 1-D input).
    """
    check_frame_args(n_fft, hop_length, win_length)
    x, _ = _as_batch(mx.array(x) if not isinstance(x, mx.array) else x, "stft")
    x = x.astype(mx.float32)
    if center:
        x = _pad(x, n_fft // 2, pad_mode)
    B, T = x.shape
    if T < n_fft:
        raise AudioError(f"stft: signal of {T} samples is shorter than n_fft={n_fft} (center=False)")
    n = 1 + (T - n_fft) // hop_length
    # Frames as a strided view (B, n, n_fft) of the padded signal: no copy, no Python loop.
    # as_strided makes its input contiguous first, so the strides below are in elements of x.
    frames = mx.as_strided(x, (B, n, n_fft), (T, hop_length, 1))
    window = mx.array(padded_window(n_fft, win_length))
    return mx.fft.rfft(frames * window, axis=-1)


def _overlap_add(frames: mx.array, hop: int) -> mx.array:
    """(B, N, L) frames -> (B, L + hop * (N - 1)) summed with frame t starting at t * hop.

    Frames are cut into r = ceil(L / hop) hop-sized pieces; piece j of every frame lands on
    a contiguous, non-overlapping run of the output once shifted by j * hop, so the sum needs
    r shifted adds instead of a loop over frames.
    """
    B, N, L = frames.shape
    r = -(-L // hop)
    if r * hop != L:
        frames = mx.pad(frames, [(0, 0), (0, 0), (0, r * hop - L)])
    pieces = frames.reshape(B, N, r, hop)
    out = None
    for j in range(r):
        seg = pieces[:, :, j, :].reshape(B, N * hop)
        seg = mx.pad(seg, [(0, 0), (j * hop, (r - 1 - j) * hop)])
        out = seg if out is None else out + seg
    return out[:, : L + hop * (N - 1)]


def istft(
    spec: mx.array,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    center: bool = True,
    length: int | None = None,
) -> mx.array:
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
    B, N, _ = spec.shape
    window = mx.array(padded_window(n_fft, win_length))
    frames = mx.fft.irfft(spec, n=n_fft, axis=-1) * window
    y = _overlap_add(frames, hop_length)
    y = y * mx.array(inverse_envelope(N, n_fft=n_fft, hop_length=hop_length, win_length=win_length))

    start = n_fft // 2 if center else 0
    if length is None:
        stop = y.shape[1] - (n_fft // 2 if center else 0)
    else:
        stop = start + int(length)
    y = y[:, start : min(stop, y.shape[1])]
    if length is not None and y.shape[1] < length:
        y = mx.pad(y, [(0, 0), (0, int(length) - y.shape[1])])
    return y[0] if squeeze else y


def magnitude(spec: mx.array) -> mx.array:
    """``|spec|`` as float32, same shape as ``spec``."""
    return mx.abs(spec)


def _power_spec(spec: mx.array, power: float) -> mx.array:
    # sqrt(re^2 + im^2), not mx.abs: MLX's complex abs is a scalar libm hypotf per element on
    # the CPU; this fuses into one vectorised kernel (docs/performance.md, "Spectral / DSP").
    # Same value to float32 rounding (1.2e-7 relative) for any |X| < 1e19.
    re, im = mx.real(spec), mx.imag(spec)
    pw = re * re + im * im
    if power == 2.0:
        return pw
    return mx.sqrt(pw) if power == 1.0 else pw ** (0.5 * power)


def mel_spectrogram(
    x: mx.array,
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
) -> mx.array:
    """Mel spectrogram ``|STFT(x)| ** power @ mel_filterbank.T``.

    Args:
        x: ``(T,)`` or ``(B, T)`` waveform.
        power: 1 for magnitude, 2 for power.
        Other arguments as in :func:`stft` and :func:`mlx_speech.audio.filters.mel_filterbank`.

    Returns:
        ``(B, frames, n_mels)`` float32.
    """
    spec = stft(x, n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=center, pad_mode=pad_mode)
    fb = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max, htk=htk, norm=norm)
    return _power_spec(spec, power) @ mx.array(np.ascontiguousarray(fb.T))


def log_mel(
    x: mx.array,
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
) -> mx.array:
    """Natural-log mel spectrogram ``log(max(mel, floor))``: ``(B, frames, n_mels)`` float32.

    Arguments as in :func:`mel_spectrogram`.
    """
    mel = mel_spectrogram(
        x, sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
        n_mels=n_mels, f_min=f_min, f_max=f_max, power=power, center=center, pad_mode=pad_mode,
        htk=htk, norm=norm,
    )
    return mx.log(mx.maximum(mel, floor))
