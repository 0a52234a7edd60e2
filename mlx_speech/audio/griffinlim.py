"""Phase reconstruction in MLX: fast Griffin-Lim and mel -> linear spectrogram inversion.

Fast Griffin-Lim (Perraudin, Balazs & Sondergaard, 2013) alternates between the set of
spectra with the target magnitude and the set of consistent spectra (STFTs of some signal),
extrapolating the consistent estimate by ``momentum / (1 + momentum)`` of its previous value;
``momentum = 0`` is classic Griffin-Lim (Griffin & Lim, 1984).

The mel inversion solves ``min ||S M^T - mel||^2 s.t. S >= 0`` per frame, starting from the
clamped pseudo-inverse and refining with projected gradient steps (a small NNLS solver).
``torch_ref.audio.griffinlim`` mirrors both with the same arithmetic, and the random phase
init comes from numpy so both back ends start from identical phases.
"""

from __future__ import annotations

import mlx.core as mx

from mlx_speech.audio.filters import check_gl_args, initial_phase, nnls_operators
from mlx_speech.audio.spectral import istft, stft
from mlx_speech.errors import AudioError, SpecError

__all__ = ["griffin_lim", "mel_to_linear", "mel_to_audio"]


def griffin_lim(
    magnitude: mx.array,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_iter: int = 32,
    momentum: float = 0.99,
    length: int | None = None,
    init: str = "zeros",
    seed: int = 0,
) -> mx.array:
    """Estimate a waveform whose STFT magnitude matches ``magnitude`` (fast Griffin-Lim).

    Uses :func:`~mlx_speech.audio.spectral.stft` conventions with ``center=True``.

    Args:
        magnitude: ``(B, frames, n_fft // 2 + 1)`` or ``(frames, n_fft // 2 + 1)``, >= 0.
        n_iter: projection rounds. momentum: in [0, 1); 0 gives classic Griffin-Lim.
        length: output samples; default ``hop_length * (frames - 1)``.
        init: ``"zeros"`` (zero phase) or ``"random"`` (uniform phase from ``seed``).

    Returns:
        ``(B, T)`` float32, or ``(T,)`` for a 2-D ``magnitude``.
    """
    mag = magnitude if isinstance(magnitude, mx.array) else mx.array(magnitude)
    length = check_gl_args(
        mag.shape, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
        n_iter=n_iter, momentum=momentum, length=length,
    )
    squeeze = mag.ndim == 2
    mag = (mag[None] if squeeze else mag).astype(mx.float32)
    frame = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length)
    angles = mx.array(initial_phase(tuple(mag.shape), init=init, seed=seed))
    beta = momentum / (1.0 + momentum)
    prev = None
    for _ in range(n_iter):
        rebuilt = stft(istft(mag * angles, length=length, **frame), **frame)
        angles = rebuilt if prev is None else rebuilt - beta * prev
        angles = angles / (mx.abs(angles) + 1e-16)
        prev = rebuilt
        mx.eval(angles, prev)  # keep the lazy graph one iteration deep
    y = istft(mag * angles, length=length, **frame)
    return y[0] if squeeze else y


def mel_to_linear(
    mel: mx.array,
    *,
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
    power: float = 1.0,
    n_iter: int = 16,
) -> mx.array:
    """Approximate the linear spectrogram behind a (non-log) mel spectrogram.

    Args:
        mel: ``(B, frames, n_mels)`` or ``(frames, n_mels)`` mel of ``|X| ** power``.
        n_iter: projected-gradient NNLS refinements after the clamped pseudo-inverse (0 keeps
            the clamped pseudo-inverse).
        Filterbank arguments must match the ones that produced ``mel``.

    Returns:
        ``(B, frames, n_fft // 2 + 1)`` (or 2-D) non-negative magnitude ``|X|`` (the
        ``1 / power`` root is taken).
    """
    mel = mel if isinstance(mel, mx.array) else mx.array(mel)
    if mel.ndim not in (2, 3) or mel.shape[-1] != n_mels:
        raise AudioError(f"mel_to_linear: expected (B, frames, {n_mels}) mel, got shape {tuple(mel.shape)}")
    if power <= 0:
        raise SpecError(f"mel_to_linear: power must be > 0, got {power}")
    fb_t, pinv_t, fb, step = nnls_operators(
        sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max, htk=htk, norm=norm
    )
    mel = mel.astype(mx.float32)
    fb_t, fb = mx.array(fb_t), mx.array(fb)
    spec = mx.maximum(mel @ mx.array(pinv_t), 0.0)
    for _ in range(n_iter):
        grad = (spec @ fb_t - mel) @ fb
        spec = mx.maximum(spec - step * grad, 0.0)
    return spec if power == 1.0 else spec ** (1.0 / power)


def mel_to_audio(
    mel: mx.array,
    *,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
    power: float = 1.0,
    log_input: bool = False,
    nnls_iter: int = 16,
    n_iter: int = 32,
    momentum: float = 0.99,
    length: int | None = None,
    init: str = "zeros",
    seed: int = 0,
) -> mx.array:
    """Mel spectrogram -> waveform: :func:`mel_to_linear` then :func:`griffin_lim`.

    Args:
        mel: ``(B, frames, n_mels)`` or ``(frames, n_mels)``; natural-log mel if
            ``log_input`` (as from :func:`~mlx_speech.audio.spectral.log_mel`).

    Returns:
        ``(B, T)`` float32, or ``(T,)`` for 2-D input.
    """
    mel = mel if isinstance(mel, mx.array) else mx.array(mel)
    if log_input:
        mel = mx.exp(mel)
    mag = mel_to_linear(
        mel, sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max,
        htk=htk, norm=norm, power=power, n_iter=nnls_iter,
    )
    return griffin_lim(
        mag, n_fft=n_fft, hop_length=hop_length, win_length=win_length, n_iter=n_iter,
        momentum=momentum, length=length, init=init, seed=seed,
    )
